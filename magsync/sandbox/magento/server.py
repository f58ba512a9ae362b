"""The store's HTTP server: Magento's REST API under ``/rest``, the control API under ``/_sandbox``,
and the public keys of the Adobe envelope's signatures under ``/prod/keys/`` (as Adobe's key host
serves them).

A threaded stdlib server speaking HTTP/1.1 with keep-alive. REST routes (:data:`REST_ROUTES`)
are matched first, as Magento's router does, so an unknown path is a 404 even without
credentials; a matched route then needs a valid OAuth 1.0a signature. ``/rest/V1/...``,
``/rest/<store_code>/V1/...`` and ``/rest/all/V1/...`` all reach the same routes (an unknown
store code is read as part of the path and matches nothing, as in Magento). REST answers are
serialised like PHP's ``json_encode``. Every REST request is logged with its answer's status
(``SandboxStore.requests``). The control API (see :mod:`.control`) takes and gives
plain JSON and needs no credentials.
"""

import contextlib
import json
import logging
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from magsync.sandbox.magento import control, search
from magsync.sandbox.magento.errors import MagentoError, internal_error, no_route
from magsync.sandbox.magento.webhooks import ADOBE_KEY_PREFIX, php_json

log = logging.getLogger(__name__)

_REST_PATH = re.compile(r"^/rest/(?:(?P<store>[A-Za-z0-9_]+)/)?V1/(?P<route>.*)$")


def list_orders(store, match, query):
    """``GET /V1/orders?searchCriteria[...]``."""
    criteria = search.parse(query)
    return search.response(store.book.snapshots(), criteria, store.past_end)


def get_order(store, match, query):
    """``GET /V1/orders/{id}`` by ``entity_id``."""
    raw = match.group("id")
    try:
        entity_id = int(raw)
    except ValueError:
        raise MagentoError(
            400,
            'The "%1" value\'s type is invalid. The "%2" type was expected. Verify and try again.',
            [raw, "int"],
        ) from None
    if entity_id == 0:
        raise MagentoError(400, "An ID is needed. Set the ID and try again.")
    return store.book.snapshot(entity_id)


def store_views(store, match, query):
    """``GET /V1/store/storeViews``: ids, codes and names of the store views."""
    return store.store_views()


REST_ROUTES = [
    ("GET", re.compile(r"^orders$"), list_orders),
    ("GET", re.compile(r"^orders/(?P<id>[^/]+)$"), get_order),
    ("GET", re.compile(r"^store/storeViews$"), store_views),
]
"""Magento web API routes the store serves: (method, path after ``V1/``, handler)."""


class StoreServer(ThreadingHTTPServer):
    """The listening server; tracks open connections so :meth:`close` ends them promptly, and
    counts the connections it is done with (``handled``)."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, store):
        self.store = store
        self.handled = 0
        self._connections = set()
        self._connections_changed = threading.Condition()
        super().__init__(address, Handler)

    def handle_error(self, request, client_address):
        # A client that hangs up is not the store's failure: no traceback on stderr for it.
        if isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
            return
        super().handle_error(request, client_address)

    def process_request_thread(self, request, client_address):
        with self._connections_changed:
            self._connections.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._connections_changed:
                self._connections.discard(request)
                self.handled += 1
                self._connections_changed.notify_all()

    def close(self, timeout=5.0):
        """Stop serving: end keep-alive connections, wait for their threads, close the socket."""
        self.shutdown()
        with self._connections_changed:
            for connection in list(self._connections):
                with contextlib.suppress(OSError):
                    connection.shutdown(socket.SHUT_RDWR)
            self._connections_changed.wait_for(lambda: not self._connections, timeout)
        self.server_close()


class Handler(BaseHTTPRequestHandler):
    """One connection; every method goes through :meth:`dispatch`."""

    protocol_version = "HTTP/1.1"
    server_version = "Apache"
    sys_version = ""
    # Idle keep-alive connections are closed after this many seconds.
    timeout = 60

    def do_GET(self):
        self.dispatch("GET")

    def do_HEAD(self):
        self.dispatch("GET")

    def do_POST(self):
        self.dispatch("POST")

    def do_PUT(self):
        self.dispatch("PUT")

    def do_DELETE(self):
        self.dispatch("DELETE")

    def do_PATCH(self):
        self.dispatch("PATCH")

    def log_message(self, format, *args):
        log.debug("http request", extra={"request": format % args})

    def dispatch(self, method):
        body = self._read_body()
        path, _, query = self.path.partition("?")
        store = self.server.store
        rest = not path.startswith("/_sandbox/")
        try:
            if path.startswith(ADOBE_KEY_PREFIX) and method == "GET":
                self._adobe_key(store, path)
                return
            if not rest:
                status, document = control.dispatch(store, method, path, query, body)
                self._send(status, document, php=False)
                return
            document = self._rest(store, method, path, query)
            store.record_request(method, path, query, 200)
            self._send(200, document, php=True)
        except MagentoError as error:
            if rest:
                store.record_request(method, path, query, error.status)
            self._send(error.status, error.body(), php=rest)
        except ConnectionError:
            # The client hung up mid-answer (a worker killed mid-call): nothing to answer.
            self.close_connection = True
        except Exception:
            log.exception("sandbox magento request failed", extra={"path": path})
            error = internal_error()
            if rest:
                store.record_request(method, path, query, error.status)
            self._send(error.status, error.body(), php=True)

    def _adobe_key(self, store, path):
        pem = store.adobe_keys.pem_at(path)
        if pem is None:
            self._send(404, control.Raw(b"Not Found", "text/plain"), php=False)
        else:
            self._send(200, control.Raw(pem, "application/x-pem-file"), php=False)

    def _rest(self, store, method, path, query):
        found = _REST_PATH.match(path)
        if not found:
            raise no_route()
        route = found.group("route")
        code = found.group("store")
        if code is not None and code not in store.store_codes:
            # Magento reads an unknown store code as the first path segment.
            route = f"{code}/V1/{route}"
        for route_method, pattern, handler in REST_ROUTES:
            match = pattern.match(route)
            if match and route_method == method:
                host = self.headers.get("Host") or "{}:{}".format(*self.server.server_address)
                store.oauth.check(method, f"http://{host}{self.path}", self.headers)
                document = handler(store, match, query)
                fields = dict(search.parse_query(query)).get("fields")
                if isinstance(fields, str) and fields:
                    document = search.select_fields(document, search.parse_fields(fields))
                return document
        raise no_route()

    def _read_body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _send(self, status, document, php):
        if isinstance(document, control.Raw):
            payload, content_type = document.content, document.content_type
        else:
            text = php_json(document) if php else json.dumps(document, ensure_ascii=False)
            payload, content_type = text.encode("utf-8"), "application/json; charset=utf-8"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
