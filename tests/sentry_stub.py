"""A local Sentry ingest endpoint for tests: sentry-sdk sends real envelopes to it over HTTP.

``SentryStub().start()`` listens on a free port; ``dsn`` is what ``SENTRY_DSN`` takes;
``events()`` returns the error/message events received so far, decoded.
"""

import gzip
import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def _decode(body, encoding):
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "br":
        import brotli  # pragma: no cover - only when sentry-sdk picks brotli

        return brotli.decompress(body)
    return body


def parse_envelope(raw):
    """The items of a Sentry envelope as ``(item_header, payload)`` pairs."""
    lines = raw.split(b"\n")
    items, index = [], 1
    while index < len(lines):
        if not lines[index].strip():
            index += 1
            continue
        header = json.loads(lines[index])
        length = header.get("length")
        if length is not None:
            rest = b"\n".join(lines[index + 1 :])
            payload, remainder = rest[:length], rest[length + 1 :]
            lines = [b"", *remainder.split(b"\n")]
            index = 1
        else:
            payload = lines[index + 1] if index + 1 < len(lines) else b""
            index += 2
        items.append((header, payload))
    return items


class SentryStub:
    def __init__(self):
        self._events = []
        self._raw = []
        self._lock = threading.Lock()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                raw = _decode(body, self.headers.get("Content-Encoding"))
                stub._receive(raw)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"{}")

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

    @property
    def dsn(self):
        return f"http://public@127.0.0.1:{self._server.server_address[1]}/1"

    def _receive(self, raw):
        with self._lock:
            self._raw.append(raw)
            for header, payload in parse_envelope(raw):
                if header.get("type") in ("event", "error"):
                    self._events.append(json.loads(payload))

    def events(self):
        with self._lock:
            return list(self._events)

    def raw(self):
        """Every envelope body received, decoded (to search for what must not be there)."""
        with self._lock:
            return list(self._raw)

    def wait_for(self, count, timeout=20.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.events()) >= count:
                return self.events()
            time.sleep(0.1)
        return self.events()
