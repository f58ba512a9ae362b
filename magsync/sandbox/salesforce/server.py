"""The HTTPS transport: TLS, HTTP/1.1 keep-alive, and the path of each request through the org.

Requests go, by path prefix (``PREFIXES``):

- ``/_sandbox/...``: the control API (``control.py``), never faulted, delayed or limited.
- ``/services/oauth2/...``: faults, latency, then the token endpoint (``auth.py``); counted by
  grant type, never against the daily allowance.
- ``/services/data/``: the version list (no session needed, not counted).
- ``/services/data/vXX.X/...``: faults, the in-flight cap (403 ConcurrentPerOrgLongTxn), latency,
  the session (401 INVALID_SESSION_ID), the route (404 / 405), the daily allowance (403
  TotalRequests, else counted), then the handler (``api.py``). Every answer carries
  ``Sforce-Limit-Info: api-usage=N/M``.
- anything else: 404 NOT_FOUND.

Malformed HTTP, bodies over ``api.max_body()`` (413) and URIs over 16384 bytes (414, Salesforce's
documented limit) get Salesforce-shaped JSON errors. A bug in a handler answers 500
UNKNOWN_EXCEPTION (and is logged); clients that disconnect are not an error.

Each connection is served on its own thread; TLS is negotiated on that thread so a client that
never completes its handshake cannot block others.
"""

import contextlib
import email.utils
import http.server
import json
import logging
import secrets
import selectors
import socket
import socketserver
import ssl
import threading
from urllib.parse import urlsplit

from magsync.sandbox.salesforce import api, auth, control
from magsync.sandbox.salesforce.calls import Answer, Call
from magsync.sandbox.salesforce.errors import (
    SalesforceError,
    invalid_session,
    not_found,
    request_limit,
)

log = logging.getLogger("magsync.sandbox.salesforce")

MAX_URI = 16384
# Bodies up to this size are read and discarded before answering 413, so that the client sees
# the answer instead of a reset; larger ones are refused and the connection closed.
DRAIN_LIMIT = 64 * 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0
IDLE_TIMEOUT = 120.0
JSON_TYPE = "application/json;charset=UTF-8"


def _reason(code):
    try:
        return http.HTTPStatus(code).phrase
    except ValueError:
        return "Unknown"


class _BodyTooLarge(Exception):
    def __init__(self, drained, limit):
        self.drained = drained
        self.limit = limit


class Handler(http.server.BaseHTTPRequestHandler):
    """One connection's requests; see the module docstring for their path."""

    protocol_version = "HTTP/1.1"
    server_version = "SFDC"
    sys_version = ""
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT

    # -- http.server hooks ---------------------------------------------------------------------

    def log_message(self, format, *args):
        log.debug("%s " + format, self.address_string(), *args)

    def send_error(self, code, message=None, explain=None):
        """Malformed requests (bad request line, too long, unknown method) as Salesforce errors."""
        self.close_connection = True
        if code == 501:  # a method no route speaks
            code, error = 405, "METHOD_NOT_ALLOWED"
        else:
            error = {414: "URI_TOO_LONG", 431: "REQUEST_HEADER_FIELDS_TOO_LARGE"}.get(
                code, "BAD_REQUEST"
            )
        self._send(code, [{"message": message or _reason(code), "errorCode": error}])

    def do_GET(self):
        self._handle("GET")

    def do_HEAD(self):
        self._handle("HEAD")

    def do_POST(self):
        self._handle("POST")

    def do_PATCH(self):
        self._handle("PATCH")

    def do_PUT(self):
        self._handle("PUT")

    def do_DELETE(self):
        self._handle("DELETE")

    # -- writing -------------------------------------------------------------------------------

    def _send(self, status, body=None, headers=None, content_type=JSON_TYPE, head=False):
        """Write one complete response in a single send (headers and body together)."""
        if body is None or status == 204:
            payload = b""
        elif isinstance(body, bytes):
            payload = body
        elif isinstance(body, str):
            payload = body.encode("utf-8")
        else:
            payload = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        lines = [
            f"HTTP/1.1 {status} {_reason(status)}",
            f"Date: {email.utils.formatdate(usegmt=True)}",
        ]
        if status != 204:
            if payload:
                lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(payload)}")
        for key, value in (headers or {}).items():
            lines.append(f"{key}: {value}")
        if self.close_connection:
            lines.append("Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # Count before writing: a client may ask for stats as soon as it has the answer.
        self.server.org.note_status(status)
        self.wfile.write(head_bytes if head else head_bytes + payload)

    def _drop(self):
        """Close the connection without answering."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # -- reading -------------------------------------------------------------------------------

    def _read_body(self, limit):
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            return self._read_chunked(limit)
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        if not length.isdigit():
            raise SalesforceError(400, "BAD_REQUEST", "Invalid Content-Length")
        length = int(length)
        if length > limit:
            if length <= DRAIN_LIMIT:
                self._discard(length)
                raise _BodyTooLarge(True, limit)
            raise _BodyTooLarge(False, limit)
        body = self.rfile.read(length)
        if len(body) < length:
            raise ConnectionAbortedError("the client went away before sending its body")
        return body

    def _discard(self, length):
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 16))
            if not chunk:
                break
            length -= len(chunk)

    def _read_chunked(self, limit):
        parts, total = [], 0
        while True:
            line = self.rfile.readline(1024)
            size = int(line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass
                return b"".join(parts)
            total += size
            if total > limit:
                raise _BodyTooLarge(False, limit)
            parts.append(self.rfile.read(size))
            self.rfile.readline(1024)

    # -- dispatch ------------------------------------------------------------------------------

    def _handle(self, method):
        org = self.server.org
        parts = urlsplit(self.path)
        path, query = parts.path, parts.query
        data_path = path.startswith("/services/data")
        try:
            if len(self.path) > MAX_URI:
                self.close_connection = True
                raise SalesforceError(
                    414, "URI_TOO_LONG", f"The request URI exceeds {MAX_URI} bytes"
                )
            body = self._read_body(api.max_body(method, path))
        except _BodyTooLarge as exc:
            self.close_connection = not exc.drained
            error = SalesforceError(
                413,
                "REQUEST_ENTITY_TOO_LARGE",
                f"The request body exceeds the maximum size of {exc.limit} bytes",
            )
            self._send(413, error.body(), self._limit_headers(data_path))
            return
        except (SalesforceError, ValueError) as exc:
            error = (
                exc
                if isinstance(exc, SalesforceError)
                else SalesforceError(400, "BAD_REQUEST", "Malformed chunked body")
            )
            self.close_connection = True
            self._send(error.status, error.body(), self._limit_headers(data_path))
            return
        try:
            if path.startswith("/_sandbox/") or path == "/_sandbox":
                status, answer = control.handle(org, method, path, query, body)
                self._send(status, answer)
            elif path.startswith("/services/oauth2/"):
                self._oauth(method, path, query, body)
            elif data_path:
                self._data(method, path, query, body)
            else:
                self._send(404, not_found().body())
        except OSError:
            raise
        except Exception:
            error_id = f"{secrets.randbelow(10**10)}-{secrets.randbelow(10**5)}"
            log.exception(
                "sandbox org failed on a request", extra={"path": path, "error_id": error_id}
            )
            body = [
                {
                    "message": "An unexpected error occurred. Please include this ErrorId if you "
                    f"contact support: {error_id} (-{secrets.randbelow(10**9)})",
                    "errorCode": "UNKNOWN_EXCEPTION",
                }
            ]
            self._send(500, body, self._limit_headers(data_path))

    def _limit_headers(self, data_path):
        if not data_path:
            return {}
        used, limit = self.server.org.api_usage()
        return {"Sforce-Limit-Info": f"api-usage={used}/{limit}"}

    def _fault(self, method, path, data_path):
        """Apply the fault rule that fires for this request; True when it answered for it."""
        org = self.server.org
        rule = org.match_fault(method, path)
        if rule is None:
            return False
        if rule.kind == "drop":
            self._drop()
            return True
        if rule.kind == "hang":
            stopped = org.sleep(rule.seconds)
            if stopped or rule.then == "close":
                self._drop()
                return True
            if rule.then == "proceed":
                return False
        headers = dict(rule.headers)
        headers.update(self._limit_headers(data_path))
        body = rule.body
        content_type = rule.content_type or (
            JSON_TYPE if not isinstance(body, str) else "text/plain;charset=UTF-8"
        )
        self._send(rule.status, body, headers, content_type, head=method == "HEAD")
        return True

    def _oauth(self, method, path, query, body):
        org = self.server.org
        form = auth.token_form(query, body, self.headers.get("Content-Type"))
        if path.rstrip("/") == "/services/oauth2/token":
            org.count_token_request(form.get("grant_type"))
        if self._fault(method, path, False):
            return
        if org.sleep(org.delay()):
            self._drop()
            return
        if path.rstrip("/") != "/services/oauth2/token":
            self._send(404, not_found().body())
            return
        headers = {"Cache-Control": "no-cache,must-revalidate,max-age=0,no-store,private"}
        if method != "POST":
            self._send(
                400,
                {"error": "invalid_request", "error_description": "must use HTTP POST"},
                headers,
            )
            return
        status, answer = org.token_request(form)
        self._send(status, answer, headers)

    def _data(self, method, path, query, body):
        org = self.server.org
        segments = api.split_path(path)
        head = method == "HEAD"
        if len(segments) == 2:
            # The version list needs no session and is not counted.
            if method not in ("GET", "HEAD"):
                error = SalesforceError(
                    405,
                    "METHOD_NOT_ALLOWED",
                    f"HTTP Method '{method}' not allowed. Allowed are GET,HEAD",
                )
                self._send(405, error.body(), self._limit_headers(True))
                return
            self._send(200, api.versions(), self._limit_headers(True), head=head)
            return
        if self._fault(method, path, True):
            return
        if not org.enter_flight():
            self._send(
                403, request_limit("ConcurrentPerOrgLongTxn").body(), self._limit_headers(True)
            )
            return
        try:
            answer = self._run(method if not head else "GET", segments, query, body)
        finally:
            org.leave_flight()
        if answer is None:
            self._drop()
            return
        answer.headers.update(self._limit_headers(True))
        self._send(
            answer.status,
            answer.body,
            answer.headers,
            content_type=answer.content_type or JSON_TYPE,
            head=head,
        )

    def _run(self, method, segments, query, body):
        """The answer to an authorised data request, or None when the org is stopping."""
        org = self.server.org
        try:
            if org.sleep(org.delay()):
                return None
            token = self._bearer()
            if not org.sessions.valid(token):
                org.note_rejected("INVALID_SESSION_ID")
                raise invalid_session()
            version = api.parse_version(segments[2])
            if version is None:
                raise not_found()
            kind, handler, args = api.route(segments[3:], method)
            org.count_call(kind)
            call = Call(
                org=org,
                method=method,
                version=version,
                segments=segments[3:],
                query=api.query_params(query),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=body,
            )
            return handler(call, *args)
        except SalesforceError as exc:
            return Answer(exc.status, exc.body(), dict(exc.headers))

    def _bearer(self):
        value = self.headers.get("Authorization") or ""
        scheme, _, token = value.partition(" ")
        # Salesforce takes both "Bearer" and the older "OAuth" scheme.
        if scheme.lower() in ("bearer", "oauth"):
            return token.strip()
        if value:
            raise SalesforceError(
                401,
                "INVALID_AUTH_HEADER",
                "INVALID_HEADER_TYPE",
                headers={"WWW-Authenticate": "Token"},
            )
        return ""


class SandboxServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    """A threaded HTTPS server bound to ``(host, port)`` serving ``org``."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, org, address, context):
        self.org = org
        self.context = context
        self._lock = threading.Lock()
        self._connections = set()
        self._conn_threads = set()
        self._closing = False
        self._wake_reader, self._wake_writer = socket.socketpair()
        super().__init__(address, Handler)

    def serve(self):
        """Accept connections until ``stop_serving()``; returns promptly when told to."""
        # A client that resets its connection between select() and accept() leaves nothing to
        # accept: on a blocking socket accept() would then wait for the next client, and stop()
        # with it. Non-blocking, it fails at once and the loop goes back to select().
        self.socket.setblocking(False)
        with selectors.DefaultSelector() as selector:
            selector.register(self.socket, selectors.EVENT_READ)
            selector.register(self._wake_reader, selectors.EVENT_READ)
            while True:
                for key, _ in selector.select():
                    if key.fileobj is self._wake_reader:
                        return
                    try:
                        request, client_address = self.get_request()
                    except OSError:  # BlockingIOError included
                        continue
                    request.setblocking(True)
                    self.process_request(request, client_address)

    def stop_serving(self):
        self._wake_writer.send(b"x")

    def server_close(self):
        super().server_close()
        self._wake_reader.close()
        self._wake_writer.close()

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name (getfqdn), which can stall without DNS.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = host, port

    def process_request(self, request, client_address):
        thread = threading.Thread(
            target=self._serve,
            args=(request, client_address),
            daemon=True,
            name="sandbox-salesforce-conn",
        )
        with self._lock:
            self._conn_threads.add(thread)
        thread.start()

    def _serve(self, raw, address):
        conn = None
        try:
            raw.settimeout(HANDSHAKE_TIMEOUT)
            conn = self.context.wrap_socket(raw, server_side=True)
            with self._lock:
                if self._closing:
                    return
                self._connections.add(conn)
            Handler(conn, address, self)
        except OSError:
            pass  # handshake failures and clients that went away
        except Exception:
            log.exception("sandbox org connection failed", extra={"client": address[0]})
        finally:
            with self._lock:
                self._connections.discard(conn)
                self._conn_threads.discard(threading.current_thread())
            for sock in (conn, raw):
                if sock is not None:
                    with contextlib.suppress(OSError):
                        sock.close()

    def close_connections(self, timeout=5.0):
        """Shut every open connection and wait for their threads."""
        with self._lock:
            self._closing = True
            connections = list(self._connections)
            threads = list(self._conn_threads)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout)


def tls_context(identity):
    """The server's TLS context (TLS 1.2+, the org's certificate)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(identity.server_cert_path), str(identity.server_key_path))
    return context
