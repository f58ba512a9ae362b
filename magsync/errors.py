"""Failures named by what the caller should do, and the one place vendor errors map onto them.

Every error a sync can meet ends as one of three outcomes:

- ``RetryLater``: transient (throttling, outages, timeouts, row locks, expired sessions that could
  not be renewed); the order is retried with backoff, never dropped.
- ``DeadLetter``: permanent for this payload (validation errors, missing fields, ambiguous
  matches); retrying cannot help, so the order goes to the dead-letter queue with the reason.
- ``SessionExpired``: the access token is no longer valid; refresh it and repeat the call once.

``classify_salesforce(status, body, headers)`` is the only code that reads Salesforce status codes
and ``errorCode`` values; ``classify_magento`` does the same for the Magento REST API.
"""

import json
import re


class SyncError(Exception):
    """Base of magsync's failures. ``reason`` is a short code; ``errors`` the vendor's details;
    ``system`` the party that failed (``salesforce``, ``magento`` or ``magsync``)."""

    reason = "error"
    system = "salesforce"

    def __init__(self, message, *, reason=None, errors=None, status=None, system=None):
        super().__init__(message)
        if reason:
            self.reason = reason
        if system:
            self.system = system
        self.errors = errors or []
        self.status = status

    def describe(self):
        """A JSON-safe summary for logs and dead letters (never carries secrets)."""
        return {
            "error": type(self).__name__,
            "reason": self.reason,
            "system": self.system,
            "message": str(self),
            "status": self.status,
            "errors": self.errors,
        }


class RetryLater(SyncError):
    """Transient: retry with backoff. ``retry_after`` is the server's hint in seconds, if any."""

    reason = "transient"

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class Throttled(RetryLater):
    """The org's request limits were hit (403 REQUEST_LIMIT_EXCEEDED, 429)."""

    reason = "throttled"


class SessionExpired(RetryLater):
    """401 INVALID_SESSION_ID: refresh the token and repeat the call once."""

    reason = "INVALID_SESSION_ID"


class AuthenticationFailed(RetryLater):
    """No valid token could be obtained (bad key, revoked user, network); retried later."""

    reason = "authentication_failed"


class Deferred(SyncError):
    """Not attempted yet: the order waits ``wait`` seconds in the broker, its retry budget
    untouched (an earlier write of it may still land: ``pipeline.interrupted_write``)."""

    reason = "deferred"
    system = "magsync"

    def __init__(self, message, *, wait, **kwargs):
        super().__init__(message, **kwargs)
        self.wait = wait


def answered(error):
    """The call that failed with ``error`` was answered (it carries the HTTP status): nothing of
    it can land later. A timeout, a lost connection, a worker's own failure may leave a call in
    flight."""
    return getattr(error, "status", None) is not None


class DeadLetter(SyncError):
    """Permanent for this payload: dead-letter at once with the reason, no retry."""

    reason = "permanent"


class InvalidOrder(DeadLetter):
    """The Magento order does not pass magsync's inbound validation."""

    reason = "invalid_order"
    system = "magsync"


# -- Salesforce ---------------------------------------------------------------------------------

# Transient errorCodes that Salesforce returns with a 4xx status.
_SF_TRANSIENT_CODES = {"UNABLE_TO_LOCK_ROW", "SERVER_UNAVAILABLE", "REQUEST_RUNNING_TOO_LONG"}
_SF_TRANSIENT_STATUS = {500, 502, 503, 504}


_TAGS = re.compile(r"<[^>]*>")


def salesforce_errors(body):
    """Salesforce's error list from a response body (list, dict or text), normalised.

    Error items carry ``errorCode`` (REST) or ``statusCode`` (Collections results); both end as
    ``errorCode``. A body that is not Salesforce JSON (an HTML 503 page) yields one item with
    the text's first 200 characters.
    """
    if isinstance(body, (bytes, str)):
        try:
            body = json.loads(body)
        except ValueError:
            text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
            # An outage page is HTML: keep its words, not its markup.
            text = " ".join(_TAGS.sub(" ", text).split())
            return [{"errorCode": None, "message": text[:200]}]
    items = body if isinstance(body, list) else [body] if isinstance(body, dict) else []
    errors = []
    for item in items:
        if not isinstance(item, dict):
            errors.append({"errorCode": None, "message": str(item)[:200]})
            continue
        errors.append(
            {
                "errorCode": item.get("errorCode") or item.get("statusCode"),
                "message": item.get("message"),
                "fields": item.get("fields") or [],
            }
        )
    return errors


def _retry_after(headers):
    value = (headers or {}).get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def classify_salesforce(status, body, headers=None):
    """The outcome (an exception instance, not raised) of a failed Salesforce call."""
    errors = salesforce_errors(body)
    codes = {e["errorCode"] for e in errors}
    first = next(iter(errors), {})
    detail = " ".join(str(part) for part in (first.get("errorCode"), first.get("message")) if part)
    summary = f"Salesforce {status}: {detail}" if detail else f"Salesforce {status}"
    kwargs = {"errors": errors, "status": status}
    if status == 401:
        # Only INVALID_SESSION_ID is documented; any 401 means the session is not usable.
        return SessionExpired(summary, **kwargs)
    if status == 429 or (status == 403 and "REQUEST_LIMIT_EXCEEDED" in codes):
        return Throttled(summary, retry_after=_retry_after(headers), **kwargs)
    if status in _SF_TRANSIENT_STATUS or codes & _SF_TRANSIENT_CODES:
        return RetryLater(
            summary,
            retry_after=_retry_after(headers),
            reason=first.get("errorCode") or f"http_{status}",
            **kwargs,
        )
    if status == 300:
        return DeadLetter(summary, reason="MULTIPLE_RECORDS_MATCH", **kwargs)
    return DeadLetter(summary, reason=first.get("errorCode") or f"http_{status}", **kwargs)


# -- Magento ------------------------------------------------------------------------------------


def classify_magento(status, body, headers=None):
    """The outcome of a failed Magento REST call.

    401/403 mean the integration's secrets or permissions are wrong: an operator must fix them,
    and the order waits (retried) meanwhile rather than being dead-lettered. A 404 means the
    order does not exist in the store: no retry makes it appear.
    """
    message = body.get("message") if isinstance(body, dict) else str(body or "")[:200]
    summary = f"Magento {status}: {message}".strip()
    if status == 404:
        error = DeadLetter(summary, reason="magento_order_not_found", status=status)
    elif status in (401, 403):
        error = RetryLater(summary, reason="magento_unauthorized", status=status)
    elif status == 429 or status >= 500:
        error = RetryLater(
            summary, reason=f"magento_{status}", status=status, retry_after=_retry_after(headers)
        )
    else:
        error = DeadLetter(summary, reason=f"magento_{status}", status=status)
    error.system = "magento"
    return error
