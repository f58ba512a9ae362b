"""What both intake views share: refusing a request, and reading a body within a limit.

``Refusal(status, error, message, **extra)`` ends a request with a JSON answer
(``{"error", "message", **extra}``); a 503 tells the sender when to retry (``Retry-After``).
``read_body(limit)`` reads the raw body, refusing one over ``limit`` bytes with 413, also when it
comes chunked without a Content-Length.
"""

from flask import jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

RETRY_AFTER_SECONDS = 10
_CHUNK = 64 * 1024


class Refusal(Exception):
    """A request the receiver answers with an error (``status``, ``error`` code, message)."""

    def __init__(self, status, error, message, **extra):
        super().__init__(message)
        self.status = status
        self.error = error
        self.extra = extra

    def response(self):
        response = jsonify({"error": self.error, "message": str(self), **self.extra})
        response.status_code = self.status
        if self.status == 503:
            response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response


def read_body(limit):
    """The raw request body; ``Refusal`` 413 when it exceeds ``limit`` bytes.

    The stream is read up to one byte past the limit, so a chunked body (no Content-Length,
    which Werkzeug would otherwise cut off at the limit without a word) is refused too.
    """
    too_large = Refusal(413, "payload_too_large", f"Body exceeds {limit} bytes.")
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    chunks, size = [], 0
    try:
        while size <= limit:
            chunk = request.stream.read(min(_CHUNK, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except RequestEntityTooLarge:
        raise too_large from None
    if size > limit:
        raise too_large
    return b"".join(chunks)
