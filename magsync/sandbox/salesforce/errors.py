"""Salesforce-shaped failures raised anywhere in the sandbox org and answered by the server.

A REST error body is a JSON *list* of ``{"message", "errorCode", "fields"?}``; inside sObject
Collections results the same error carries ``statusCode`` instead of ``errorCode`` and always has
``fields``. OAuth errors are a different shape (``{"error", "error_description"}``) and live in
``auth.py``.
"""

INVALID_SESSION = "Session expired or invalid"
NOT_FOUND_MESSAGE = "The requested resource does not exist"


class SalesforceError(Exception):
    """One or more REST errors answered with ``status``; ``errors`` are ``(code, message, fields)``.

    ``fields`` is None when Salesforce leaves the key out (NOT_FOUND, INVALID_SESSION_ID, ...).
    """

    def __init__(self, status, code, message, fields=None, headers=None):
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.errors = [(code, message, fields)]
        self.headers = headers or {}

    @property
    def code(self):
        return self.errors[0][0]

    def body(self):
        """The REST error list."""
        out = []
        for code, message, fields in self.errors:
            item = {"message": message, "errorCode": code}
            if fields is not None:
                item["fields"] = list(fields)
            out.append(item)
        return out

    def record_errors(self):
        """The errors as sObject Collections report them (``statusCode``, ``fields`` always)."""
        return [
            {"statusCode": code, "message": message, "fields": list(fields or [])}
            for code, message, fields in self.errors
        ]


def not_found(message=NOT_FOUND_MESSAGE):
    return SalesforceError(404, "NOT_FOUND", message)


def bad_request(code, message, fields=None):
    return SalesforceError(400, code, message, fields)


def invalid_session():
    # Salesforce adds this header to every 401 of the REST API.
    return SalesforceError(
        401, "INVALID_SESSION_ID", INVALID_SESSION, headers={"WWW-Authenticate": "Token"}
    )


def request_limit(which):
    """403 REQUEST_LIMIT_EXCEEDED; ``which`` is ``TotalRequests`` or ``ConcurrentPerOrgLongTxn``."""
    return SalesforceError(403, "REQUEST_LIMIT_EXCEEDED", f"{which} Limit exceeded.")


def json_parser_error(message):
    return SalesforceError(400, "JSON_PARSER_ERROR", message)
