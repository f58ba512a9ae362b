"""What a handler of the data API receives and returns: a ``Call`` in, an ``Answer`` out.

The REST handlers (``api.py``) and the Bulk API 2.0 handlers (``bulk.py``) share this contract;
the server and Composite build the ``Call`` and send the ``Answer``.
"""

import json
from dataclasses import dataclass, field

from magsync.sandbox.salesforce.errors import SalesforceError, json_parser_error


@dataclass
class Answer:
    """A response: ``body`` is JSON-able (None for no body), or text sent as ``content_type``."""

    status: int
    body: object = None
    headers: dict = field(default_factory=dict)
    content_type: str | None = None


@dataclass
class Call:
    """One data request (or Composite subrequest) as the handlers see it."""

    org: object
    method: str
    version: str
    segments: list
    query: dict
    headers: dict
    body: bytes = b""
    parsed: object = None
    subrequest: bool = False
    all_or_none: bool = False

    @property
    def store(self):
        return self.org.store

    @property
    def schema(self):
        return self.org.schema

    def param(self, name):
        values = self.query.get(name)
        return values[-1] if values else None

    @property
    def text(self):
        return self.body.decode("utf-8", errors="replace") if self.body else ""

    def json(self):
        """The JSON body (Composite subrequests carry it already parsed)."""
        if self.subrequest:
            if self.parsed is None:
                raise json_parser_error(
                    "The HTTP entity body is required, but this request has no entity body."
                )
            return self.parsed
        return parse_json(self.body, self.headers.get("content-type"))


def parse_json(body, content_type):
    """The parsed JSON request body, or the error Salesforce answers for it."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json":
        raise SalesforceError(
            415, "UNSUPPORTED_MEDIA_TYPE", f"Content type '{media or 'none'}' not supported"
        )
    if not body or not body.strip():
        raise json_parser_error(
            "The HTTP entity body is required, but this request has no entity body."
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise json_parser_error("Invalid UTF-8 in the request body") from None

    def refuse_constant(name):
        raise json.JSONDecodeError(f"Non-standard token '{name}'", text, text.find(name))

    try:
        return json.loads(text, parse_constant=refuse_constant)
    except json.JSONDecodeError as exc:
        char = text[exc.pos] if exc.pos < len(text) else None
        where = f"at [line:{exc.lineno}, column:{exc.colno}]"
        if char is None:
            detail = f"Unexpected end-of-input {where}"
        else:
            detail = (
                f"Unexpected character ('{char}' (code {ord(char)})): expected a valid value "
                f"(JSON String, Number, Array, Object or token 'null', 'true' or 'false') {where}"
            )
        raise json_parser_error(detail) from None
