"""What the sandbox store's tests share besides fixtures: the recorded orders, a webhook receiver
that records requests and answers from a script, and OAuth 1.0a-signed REST calls."""

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from tests.helpers import wait_for

FIXTURES = Path(__file__).parent / "fixtures"
WEBHOOK_SECRET = "whsec-test-0123456789"
# Retries fast enough for tests, still exponential with jitter.
FAST_RETRY = {"base": 0.02, "max_delay": 0.1, "max_attempts": 4, "timeout": 1.0}


def load_order(kind):
    """One of the recorded orders: registered, guest, configurable, edited."""
    return json.loads((FIXTURES / f"order_{kind}.json").read_text("utf-8"))


class Receiver:
    """A local webhook endpoint recording every request; answers follow a script.

    ``script`` is a list of answers used in turn (then the last one repeats); an answer is a
    status code, ``(status, headers)``, or ``("sleep", seconds, status)`` to answer late.
    ``responder(body)``, when set, answers instead (returning None falls back to the script).
    ``finished`` counts the POSTs it is done with (answered, or failed to answer).
    ``challenges`` counts Adobe's registration checks (GET); ``echo_challenge`` False fails them.
    """

    def __init__(self):
        self.requests = []
        self.challenges = 0
        self.echo_challenge = True
        self.script = [200]
        self.responder = None
        self.finished = 0
        self._lock = threading.Lock()
        self._calls = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                try:
                    self._reply()
                finally:
                    with receiver._lock:
                        receiver.finished += 1

            def _reply(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                answer = receiver._answer(self.path, dict(self.headers), body)
                if answer[0] == "sleep":
                    time.sleep(answer[1])
                    answer = (answer[2], {})
                status, headers = answer
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self):
                # Adobe I/O Events' registration challenge: echo the token.
                with receiver._lock:
                    receiver.challenges += 1
                token = self.path.partition("challenge=")[2]
                payload = token.encode() if receiver.echo_challenge else b"nope"
                self.send_response(200)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/magento/webhook"

    def _answer(self, path, headers, body):
        with self._lock:
            self.requests.append(
                {"path": path, "headers": headers, "body": body, "time": time.monotonic()}
            )
            answer = self.responder(body) if self.responder else None
            if answer is None:
                answer = self.script[min(self._calls, len(self.script) - 1)]
                self._calls += 1
        if isinstance(answer, int):
            return answer, {}
        return answer

    def bodies(self):
        with self._lock:
            return [json.loads(request["body"]) for request in self.requests]

    def wait_for(self, count, timeout=10.0):
        """Wait until ``count`` requests arrived; returns them."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if len(self.requests) >= count:
                    return list(self.requests)
            time.sleep(0.01)
        raise AssertionError(f"{len(self.requests)} requests arrived, {count} expected")

    def wait_finished(self, timeout=10.0):
        """Wait until every request that arrived has been answered (late answers included)."""

        def done():
            with self._lock:
                return self.finished >= len(self.requests)

        wait_for(done, timeout, "the receiver to answer every request", interval=0.01)

    def close(self):
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def oauth_for(settings, **overrides):
    """requests' OAuth1 signer for a store's integration (HMAC-SHA256, Authorization header)."""
    keys = {
        "client_key": settings["MAGENTO_CONSUMER_KEY"],
        "client_secret": settings["MAGENTO_CONSUMER_SECRET"],
        "resource_owner_key": settings["MAGENTO_ACCESS_TOKEN"],
        "resource_owner_secret": settings["MAGENTO_ACCESS_TOKEN_SECRET"],
        "signature_method": SIGNATURE_HMAC_SHA256,
    }
    keys.update(overrides)
    return OAuth1(**keys)


class Rest:
    """Signed calls to a store's REST API."""

    def __init__(self, store):
        self.store = store
        self.session = requests.Session()
        self.auth = oauth_for(store.settings())

    def get(self, path, params=None, auth=None, **kwargs):
        return self.session.get(
            f"{self.store.url}/rest/{path}",
            params=params,
            auth=self.auth if auth is None else auth,
            timeout=10,
            **kwargs,
        )

    def close(self):
        self.session.close()
