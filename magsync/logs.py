"""Logging: constant messages with structured context, one line per record.

``log.info("opportunity upserted", extra={"order": ..., "sf_id": ...})`` prints
``2026-01-01T10:00:00Z INFO magsync.sync.pipeline opportunity upserted order=000000123``
``sf_id=006...``.
Only what callers put in ``extra`` is printed: never tokens, keys or secrets.
"""

import logging
import sys
import time

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


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
        text = f"{base} {context}" if context else base
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def _quote(value):
    text = str(value)
    return repr(text) if (not text or any(c.isspace() for c in text)) else text


def configure(level="INFO"):
    """Send magsync's logs (and the libraries') to stderr in the key=value format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(KeyValueFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # urllib3 would log every request URL at DEBUG, including signed query strings.
    logging.getLogger("urllib3").setLevel(logging.WARNING)
