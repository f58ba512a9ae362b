"""Injected faults and latency: what a real org and the network in front of it do to clients.

A fault rule is a dict (JSON over the control API, keyword arguments in Python)::

    {"kind": "unavailable",        # see KINDS below
     "method": "PATCH",            # or "*" (default)
     "path": "/services/data/",    # path prefix (default "/"), or
     "path_regex": "^/services/data/v[0-9.]+/sobjects/Opportunity/",   # re.search
     "after": 2,                   # let this many matching requests through first (default 0)
     "count": 3,                   # fire this many times, then retire (default: unlimited)
     "probability": 0.5,           # chance to fire on each matching request (default 1)
     "status": 503, "body": ..., "content_type": ..., "headers": {...},   # override the kind's
     "seconds": 5.0,               # hang: how long to hold the request
     "then": "close"}              # hang: then "close" (default), "respond" or "proceed"

Kinds and what the client sees:

- ``unavailable``: 503 with an HTML body (Salesforce's maintenance page).
- ``unknown_exception``: 500 ``UNKNOWN_EXCEPTION``.
- ``unable_to_lock_row``: 400 ``UNABLE_TO_LOCK_ROW``.
- ``throttled``: 429 (not documented for the REST API, but seen behind proxies).
- ``request_limit``: 403 ``REQUEST_LIMIT_EXCEEDED`` (``"limit": "ConcurrentPerOrgLongTxn"`` for
  the concurrency variant; TotalRequests by default).
- ``status``: any ``status`` with ``body`` (JSON value or text) and ``content_type``.
- ``hang``: hold the request ``seconds`` (past the client's timeout), then close the connection
  without answering, answer ``status``/``body`` (``then: respond``), or process the request
  normally (``then: proceed``: the write lands although the client gave up).
- ``drop``: close the connection without answering.

Rules are checked in the order they were added; the first rule that matches and fires applies.
Faults apply before authentication and limits (they stand for the network and Salesforce's front
door), so they can target the token endpoint too; an injected answer is not counted as an API
call. The control API (``/_sandbox/``) is never faulted.
"""

import itertools
import json
import random
import re
import threading

UNAVAILABLE_HTML = (
    "<!DOCTYPE html>\n<html><head><title>Service Unavailable</title></head><body>"
    "<h1>Service Unavailable</h1><p>This Salesforce instance is temporarily unavailable "
    "because of maintenance. Please try again later.</p></body></html>\n"
)

KINDS = {
    "unavailable": {
        "status": 503,
        "body": UNAVAILABLE_HTML,
        "content_type": "text/html;charset=UTF-8",
    },
    "unknown_exception": {
        "status": 500,
        "body": [
            {
                "message": "An unexpected error occurred. Please include this ErrorId if you "
                "contact support: 1372868331-48226 (-1269787429)",
                "errorCode": "UNKNOWN_EXCEPTION",
            }
        ],
    },
    "unable_to_lock_row": {
        "status": 400,
        "body": [
            {
                "message": "unable to obtain exclusive access to this record or 1 records",
                "errorCode": "UNABLE_TO_LOCK_ROW",
                "fields": [],
            }
        ],
    },
    "throttled": {
        "status": 429,
        "body": [{"message": "Too Many Requests", "errorCode": "REQUEST_LIMIT_EXCEEDED"}],
        "headers": {"Retry-After": "1"},
    },
    "request_limit": {"status": 403, "body": None},
    "status": {"status": 500, "body": None},
    "hang": {"status": 504, "body": None},
    "drop": {},
}
THEN = ("close", "respond", "proceed")


class FaultError(ValueError):
    """A fault rule that cannot be used; the message says why."""


class FaultRule:
    """One rule; see the module docstring. ``fire()`` is thread-safe."""

    _ids = itertools.count(1)

    def __init__(self, spec):
        spec = dict(spec)
        kind = spec.pop("kind", "status")
        if kind not in KINDS:
            raise FaultError(f"unknown fault kind {kind!r}; one of {', '.join(KINDS)}")
        preset = KINDS[kind]
        self.kind = kind
        self.id = str(spec.pop("id", "") or f"fault-{next(self._ids)}")
        self.method = str(spec.pop("method", "*")).upper()
        self.path = spec.pop("path", "/")
        pattern = spec.pop("path_regex", None)
        try:
            self.path_regex = re.compile(pattern) if pattern else None
        except re.error as exc:
            raise FaultError(f"bad path_regex: {exc}") from None
        self.after = int(spec.pop("after", 0))
        self.count = spec.pop("count", None)
        self.count = None if self.count is None else int(self.count)
        self.probability = float(spec.pop("probability", 1.0))
        self.status = int(spec.pop("status", preset.get("status", 500)))
        self.content_type = spec.pop("content_type", preset.get("content_type"))
        self.headers = {**preset.get("headers", {}), **spec.pop("headers", {})}
        self.seconds = float(spec.pop("seconds", 0.0))
        self.then = spec.pop("then", "close")
        limit = spec.pop("limit", "TotalRequests")
        body = spec.pop("body", preset.get("body"))
        if body is None and kind == "request_limit":
            body = [{"message": f"{limit} Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}]
        elif body is None and kind in ("status", "hang"):
            body = [{"message": "injected fault", "errorCode": "UNKNOWN_EXCEPTION"}]
        self.body = body
        if spec:
            raise FaultError(f"unknown fault rule keys: {', '.join(sorted(spec))}")
        if self.then not in THEN:
            raise FaultError(f"then must be one of {', '.join(THEN)}")
        if not 0.0 <= self.probability <= 1.0:
            raise FaultError("probability must be between 0 and 1")
        self.fired = 0
        self.seen = 0
        self._lock = threading.Lock()

    def matches(self, method, path):
        if self.method not in ("*", method):
            return False
        if self.path_regex is not None:
            return self.path_regex.search(path) is not None
        return path.startswith(self.path)

    def fire(self, rng):
        """True when the rule applies to this request (and uses up one of its count)."""
        with self._lock:
            self.seen += 1
            if self.seen <= self.after:
                return False
            if self.count is not None and self.fired >= self.count:
                return False
            if self.probability < 1.0 and rng.random() >= self.probability:
                return False
            self.fired += 1
            return True

    @property
    def exhausted(self):
        return self.count is not None and self.fired >= self.count

    def describe(self):
        """The rule as the control API lists it."""
        out = {
            "id": self.id,
            "kind": self.kind,
            "method": self.method,
            "path": self.path,
            "path_regex": self.path_regex.pattern if self.path_regex else None,
            "after": self.after,
            "count": self.count,
            "probability": self.probability,
            "fired": self.fired,
        }
        if self.kind != "drop":
            out.update({"status": self.status, "body": self.body})
        if self.kind == "hang":
            out.update({"seconds": self.seconds, "then": self.then})
        return out


class Faults:
    """The org's fault rules and latency (thread-safe)."""

    def __init__(self, latency_ms=0.0, jitter_ms=0.0, seed=None):
        self._rules = []
        self._lock = threading.Lock()
        # Latency jitter and fault probabilities need repeatability, not secrecy.
        self.rng = random.Random(seed)  # noqa: S311
        self.latency_ms = float(latency_ms)
        self.jitter_ms = float(jitter_ms)
        self.fired_total = 0

    def add(self, spec):
        rule = spec if isinstance(spec, FaultRule) else FaultRule(spec)
        with self._lock:
            self._rules.append(rule)
        return rule

    def remove(self, rule_id):
        with self._lock:
            before = len(self._rules)
            self._rules = [rule for rule in self._rules if rule.id != rule_id]
            return len(self._rules) != before

    def clear(self):
        with self._lock:
            self._rules = []

    def rules(self):
        with self._lock:
            return list(self._rules)

    def match(self, method, path):
        """The rule that fires for this request, or None."""
        with self._lock:
            rules = list(self._rules)
        for rule in rules:
            if rule.matches(method, path) and rule.fire(self.rng):
                with self._lock:
                    self.fired_total += 1
                return rule
        return None

    def set_latency(self, latency_ms=0.0, jitter_ms=0.0):
        if latency_ms < 0 or jitter_ms < 0:
            raise FaultError("latency and jitter must not be negative")
        self.latency_ms = float(latency_ms)
        self.jitter_ms = float(jitter_ms)

    def delay(self):
        """Seconds to hold the next call: the fixed latency plus a uniform share of the jitter."""
        if not self.latency_ms and not self.jitter_ms:
            return 0.0
        return (self.latency_ms + self.rng.uniform(0, self.jitter_ms)) / 1000.0


def parse_spec(text):
    """A rule spec from the command line: JSON, or ``key=value`` words (``kind=hang seconds=5``).

    Numbers in ``key=value`` form are converted; ``body`` may be JSON (without spaces).
    """
    text = text.strip()
    if text.startswith("{"):
        try:
            return json.loads(text)
        except ValueError as exc:
            raise FaultError(f"bad fault JSON: {exc}") from None
    spec = {}
    for word in text.split():
        key, sep, value = word.partition("=")
        if not sep:
            raise FaultError(f"expected key=value, got {word!r}")
        spec[key] = _scalar(value)
    return spec


def _scalar(value):
    for convert in (int, float):
        try:
            return convert(value)
        except ValueError:
            pass
    if value[:1] in '[{"':
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value
