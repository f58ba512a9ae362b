"""Stand-ins for Adobe's side in tests of ``/adobe/events``: its key host, the registration
validation host ``csm.adobe.io`` (HTTPS), signed deliveries, and a publisher that records."""

import json
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from magsync.messaging.broker import BrokerUnavailable
from magsync.sandbox.magento.webhooks import AdobeKeys
from tests.helpers import load_fixture

CLIENT_ID = "5c3431a2e2f34a4ab9b1cdbd3d3c7a31"


class _Server:
    """A threaded HTTP(S) server on 127.0.0.1 recording each request's method and path."""

    def __init__(self, answer, context=None):
        self.requests = []
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self):
                with server._lock:
                    server.requests.append((self.command, self.path))
                status, content_type, payload = answer(self.path)
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_HEAD = _handle

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        if context is not None:
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    def paths(self):
        with self._lock:
            return [path for _, path in self.requests]

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


class KeyHost(_Server):
    """Adobe's key host: serves the public keys of ``keys`` at their paths. ``status`` set to an
    HTTP status makes every answer that status (a failing host)."""

    def __init__(self, keys=None):
        self.keys = keys or AdobeKeys()
        self.status = None
        super().__init__(self._answer)
        self.url = f"http://127.0.0.1:{self.port}"

    def _answer(self, path):
        if self.status is not None:
            return self.status, "text/plain", b"unavailable"
        pem = self.keys.pem_at(path)
        if pem is None:
            return 404, "text/plain", b"not found"
        return 200, "application/x-pem-file", pem


class ValidationHost(_Server):
    """``csm.adobe.io`` over HTTPS with a certificate of the sandbox org's CA, for 127.0.0.1."""

    def __init__(self, identity):
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(identity.server_cert_path, identity.server_key_path)
        super().__init__(lambda path: (200, "application/json", b'{"status":"validated"}'), context)
        self.host = f"127.0.0.1:{self.port}"
        self.ca_bundle = str(identity.ca_path)


def event_document(event_id="3d7e1f0a-6b2c-4d8e-9f10-a1b2c3d4e5f6", recipient=CLIENT_ID, **changes):
    """The recorded Adobe CloudEvent, with its event id and recipient (new names) set."""
    document = load_fixture("adobe_io_event.json")
    document.update(eventid=event_id, recipientclientid=recipient)
    document.update(changes)
    return document


def delivery(document, keys, content_type="application/json", event_id_header=True):
    """``(body, headers)`` of a delivery of ``document`` signed with both of ``keys``."""
    body = json.dumps(document).encode()
    headers = {"Content-Type": content_type, **keys.headers(body)}
    if event_id_header and isinstance(document, dict) and document.get("eventid"):
        headers["x-adobe-event-id"] = document["eventid"]
    return body, headers


class RecordingPublisher:
    """Records what would be published; fails from the ``fail_at``-th publish on, if given."""

    def __init__(self, fail_at=None):
        self.published = []
        self.fail_at = fail_at

    def publish(self, event, task_id):
        if self.fail_at is not None and len(self.published) >= self.fail_at:
            raise BrokerUnavailable("ConnectionRefusedError: broker down")
        self.published.append((event, task_id))
        return task_id

    def publish_all(self, events):
        return [self.publish(event, task_id) for event, task_id in events]

    def close(self):
        pass
