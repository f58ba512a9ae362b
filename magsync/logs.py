"""Logging: constant messages with structured context, one line per record.

``log.info("opportunity upserted", extra={"order": ..., "sf_id": ...})`` prints
``2026-01-01T10:00:00Z INFO magsync.sync.pipeline opportunity upserted order=000000123``
``sf_id=006...``.
Only what callers put in ``extra`` is printed: never tokens, keys or secrets. Every record, the
libraries' and Celery's own included, passes through ``magsync.redact.redact`` (secrets, and the
buyer's email, phone, street and names) and has its control characters escaped, so a value
cannot forge a log line or drive a terminal (ESC sequences, carriage returns, bidi controls).
"""

import logging
import re
import sys
import time

from magsync.redact import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
# C0 and C1 controls, and the format characters that reorder or hide text.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_CONTROL_BUT_NEWLINE = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]"
)


def _escaped(match):
    return match.group().encode("unicode_escape").decode("ascii")


def escape(text, keep_newlines=False):
    """``text`` with control characters written as escapes (``\\x1b``, ``\\n``, ``\\u202e``)."""
    pattern = _CONTROL_BUT_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(_escaped, text)


class KeyValueFormatter(logging.Formatter):
    converter = time.gmtime

    def format(self, record):
        base = (
            f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%SZ')} {record.levelname} "
            f"{record.name} {record.getMessage()}"
        )
        context = " ".join(
            f"{key}={_quote(value)}"
            for key, value in vars(record).items()
            if key not in _STANDARD and not key.startswith("_")
        )
        text = escape(redact(f"{base} {context}" if context else base))
        if record.exc_info:
            # A traceback keeps its lines; anything else that could forge one is escaped.
            text += "\n" + escape(redact(self.formatException(record.exc_info)), True)
        return text


class LineHandler(logging.StreamHandler):
    """A ``StreamHandler`` that formats a record on the logging thread before taking its lock,
    which then covers the write alone: formatting (redaction included) never makes the worker's
    other threads, its consumer loop among them, wait for the lock."""

    def handle(self, record):
        if not self.filter(record):
            return False
        try:
            line = self.format(record) + self.terminator
        except Exception:
            self.handleError(record)
            return True
        with self.lock:
            try:
                self.stream.write(line)
                self.flush()
            except Exception:
                self.handleError(record)
        return True


def _quote(value):
    text = str(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


def _logging_is_configured(**kwargs):
    """Celery's ``setup_logging`` signal: magsync configured logging already (``configure``)."""


def configure(level="INFO"):
    """Send magsync's logs (and the libraries') to stderr in the key=value format.

    Celery is told that logging is configured, so a worker adds no handler of its own (its
    task loggers included): every record goes through this formatter.
    """
    from celery import signals

    handler = LineHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 would log every request URL at DEBUG, including signed query strings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    signals.setup_logging.connect(_logging_is_configured, weak=False)
