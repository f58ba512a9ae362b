"""The control API (``/_sandbox/...``) that drives a running store, and a client for it.

Plain JSON in and out, no credentials (the store is a local stand-in). Errors come back as
``{"message": ...}`` with status 400 (bad input or a refused lifecycle action) or 404.

=======  ==========================================  ==============================================
method   path                                        what
=======  ==========================================  ==============================================
GET      ``/_sandbox/settings``                      the ``MAGENTO_*`` settings magsync needs
GET      ``/_sandbox/status``                        order count, delivery counters, queue state
POST     ``/_sandbox/orders``                        place one order; body: overrides (+ ``kind``)
POST     ``/_sandbox/orders/batch``                  body ``{"count", "kind", "steps", "at",
                                                     "overrides"}``: N orders (``at``: all placed
                                                     at that second)
GET      ``/_sandbox/orders``                        the truth: every order (``?summary=1``: short)
GET      ``/_sandbox/orders/{entity_id}``            one order's truth
POST     ``/_sandbox/orders/{entity_id}/{action}``   invoice, ship, refund, cancel, hold, unhold,
                                                     edit (body: overrides), comment (``comment``)
POST     ``/_sandbox/scenarios``                     run a scenario (``"background": true`` → 202)
GET      ``/_sandbox/scenarios/{id}``                a background scenario's progress and result
GET      ``/_sandbox/deliveries?since=N``            delivery log from entry N: ``{entries, next}``
GET/PUT  ``/_sandbox/chaos``                         chaos knobs (PUT replaces them all)
GET/PUT  ``/_sandbox/webhook``                       target: ``url`` (``""`` = none), ``secret``,
                                                     ``envelope``; PUT changes the given keys
POST     ``/_sandbox/webhook/challenge``             Adobe's registration check against the URL
GET/PUT  ``/_sandbox/retry``                         retry policy; PUT changes the given keys
POST     ``/_sandbox/delivery/pause``                hold all deliveries
POST     ``/_sandbox/delivery/resume``               release them
GET      ``/_sandbox/idle?timeout=S``                wait up to S seconds for an empty queue
GET      ``/_sandbox/adobe``                         Adobe I/O: client id, key paths, key base URL
POST     ``/_sandbox/adobe/keys/{1,2}/rotate``       replace a signing key (same path)
GET/PUT  ``/_sandbox/paging``                        ``past_end``: what a search page past the
                                                     last one holds, ``last_page`` or ``empty``
GET      ``/_sandbox/requests?since=N``              REST request log from entry N:
                                                     ``{entries, next}``
=======  ==========================================  ==============================================
"""

import json
import re
from dataclasses import asdict, dataclass
from urllib.parse import parse_qs

import requests

from magsync.sandbox.magento.errors import MagentoError

SUMMARY_FIELDS = (
    "entity_id",
    "increment_id",
    "store_id",
    "state",
    "status",
    "created_at",
    "updated_at",
    "grand_total",
    "order_currency_code",
    "customer_email",
    "customer_is_guest",
    "relation_parent_id",
    "relation_child_id",
)


@dataclass(frozen=True)
class Raw:
    """A non-JSON answer (an Adobe public key)."""

    content: bytes
    content_type: str


def _first(query, name, default=None):
    values = parse_qs(query).get(name)
    return values[0] if values else default


def _summary(order):
    return {key: order[key] for key in SUMMARY_FIELDS if key in order}


def settings(store, match, query, body):
    return 200, store.settings()


def status(store, match, query, body):
    return 200, store.status()


def place(store, match, query, body):
    return 201, store.place_order(**body)


def batch(store, match, query, body):
    overrides = body.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ValueError("overrides must be a JSON object")
    orders = store.create_orders(
        int(body.get("count", 1)),
        kind=body.get("kind"),
        steps=body.get("steps", ()),
        at=body.get("at"),
        **overrides,
    )
    return 201, {
        "count": len(orders),
        "entity_ids": [order["entity_id"] for order in orders],
        "increment_ids": [order["increment_id"] for order in orders],
    }


def truth(store, match, query, body):
    if _first(query, "summary") in ("1", "true"):
        return 200, [_summary(order) for order in store.book.snapshots()]
    return 200, store.book.snapshots()


def one_order(store, match, query, body):
    return 200, store.book.snapshot(int(match.group("id")))


def action(store, match, query, body):
    return 200, store.act(int(match.group("id")), match.group("action"), **body)


def start_scenario(store, match, query, body):
    params = dict(body)
    if params.pop("background", False):
        run = store.run_scenario(background=True, **params)
        return 202, run.describe()
    return 200, store.run_scenario(**params)


def scenario_state(store, match, query, body):
    run = store.scenarios.get(match.group("id"))
    if run is None:
        raise MagentoError(404, "No scenario with that id.")
    return 200, run.describe()


def deliveries(store, match, query, body):
    since = int(_first(query, "since", "0"))
    entries = store.deliveries(since)
    return 200, {"entries": entries, "next": since + len(entries)}


def get_chaos(store, match, query, body):
    return 200, asdict(store.sender.chaos)


def put_chaos(store, match, query, body):
    store.set_chaos(**body)
    return get_chaos(store, match, query, body)


def get_webhook(store, match, query, body):
    target = store.sender.target
    return 200, {"url": target.url, "secret": target.secret, "envelope": target.envelope}


def put_webhook(store, match, query, body):
    store.set_webhook(**body)
    return get_webhook(store, match, query, body)


def challenge(store, match, query, body):
    return 200, store.verify_webhook(float(body.get("timeout", 10)))


def get_retry(store, match, query, body):
    return 200, asdict(store.sender.policy)


def put_retry(store, match, query, body):
    store.sender.set_policy(**body)
    return get_retry(store, match, query, body)


def pause(store, match, query, body):
    store.pause_delivery()
    return 200, store.status()["delivery"]


def resume(store, match, query, body):
    store.resume_delivery()
    return 200, store.status()["delivery"]


def idle(store, match, query, body):
    timeout = float(_first(query, "timeout", "0"))
    reached = store.wait_idle(timeout)
    return 200, {"idle": reached, **store.status()["delivery"]}


def adobe(store, match, query, body):
    return 200, {**store.adobe_settings(), "key_paths": list(store.adobe_keys.paths)}


def rotate_adobe_key(store, match, query, body):
    path = store.rotate_adobe_key(int(match.group("n")))
    return 200, {"rotated": int(match.group("n")), "path": path}


def get_paging(store, match, query, body):
    return 200, {"past_end": store.past_end}


def put_paging(store, match, query, body):
    return 200, store.set_paging(body.get("past_end", store.past_end))


def rest_requests(store, match, query, body):
    since = int(_first(query, "since", "0"))
    entries = store.requests(since)
    return 200, {"entries": entries, "next": since + len(entries)}


ROUTES = [
    ("GET", r"/_sandbox/settings", settings),
    ("GET", r"/_sandbox/status", status),
    ("POST", r"/_sandbox/orders", place),
    ("POST", r"/_sandbox/orders/batch", batch),
    ("GET", r"/_sandbox/orders", truth),
    ("GET", r"/_sandbox/truth", truth),
    ("GET", r"/_sandbox/orders/(?P<id>\d+)", one_order),
    ("POST", r"/_sandbox/orders/(?P<id>\d+)/(?P<action>[a-z_]+)", action),
    ("POST", r"/_sandbox/scenarios", start_scenario),
    ("GET", r"/_sandbox/scenarios/(?P<id>[\w-]+)", scenario_state),
    ("GET", r"/_sandbox/deliveries", deliveries),
    ("GET", r"/_sandbox/chaos", get_chaos),
    ("PUT", r"/_sandbox/chaos", put_chaos),
    ("GET", r"/_sandbox/webhook", get_webhook),
    ("PUT", r"/_sandbox/webhook", put_webhook),
    ("POST", r"/_sandbox/webhook/challenge", challenge),
    ("GET", r"/_sandbox/retry", get_retry),
    ("PUT", r"/_sandbox/retry", put_retry),
    ("POST", r"/_sandbox/delivery/pause", pause),
    ("POST", r"/_sandbox/delivery/resume", resume),
    ("GET", r"/_sandbox/idle", idle),
    ("GET", r"/_sandbox/adobe", adobe),
    ("POST", r"/_sandbox/adobe/keys/(?P<n>[12])/rotate", rotate_adobe_key),
    ("GET", r"/_sandbox/paging", get_paging),
    ("PUT", r"/_sandbox/paging", put_paging),
    ("GET", r"/_sandbox/requests", rest_requests),
]
"""Control routes: (method, path pattern, handler(store, match, query, body) -> (status, doc))."""

_COMPILED = [(method, re.compile(pattern + "$"), handler) for method, pattern, handler in ROUTES]


def dispatch(store, method, path, query, raw_body):
    """Answer one control request: ``(status, document)``."""
    body = {}
    if raw_body:
        try:
            body = json.loads(raw_body)
        except ValueError:
            return 400, {"message": "The request body is not valid JSON."}
        if not isinstance(body, dict):
            return 400, {"message": "The request body must be a JSON object."}
    for route_method, pattern, handler in _COMPILED:
        match = pattern.match(path)
        if match and route_method == method:
            try:
                return handler(store, match, query, body)
            except MagentoError:
                raise
            except (ValueError, TypeError) as exc:
                return 400, {"message": str(exc)}
    return 404, {"message": "No such control route."}


class ControlError(Exception):
    """A control request the store refused: ``status`` and the store's ``body``."""

    def __init__(self, status, body):
        super().__init__(f"{status}: {body.get('message', body)}")
        self.status = status
        self.body = body


class ControlClient:
    """Drives a store running in another process through its control API.

    ``url`` is the store's base URL (``MAGENTO_BASE_URL``). Methods mirror
    :class:`~magsync.sandbox.magento.SandboxStore`; orders come back as dicts in REST shape.
    """

    def __init__(self, url, timeout=60.0):
        self.url = url.rstrip("/")
        self.timeout = timeout
        self._session = requests.Session()

    def close(self):
        self._session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.close()

    def _call(self, method, path, body=None, params=None, timeout=None):
        response = self._session.request(
            method,
            f"{self.url}/_sandbox/{path}",
            json=body,
            params=params,
            timeout=timeout or self.timeout,
        )
        with response:
            document = response.json() if response.content else None
            if response.status_code >= 400:
                raise ControlError(response.status_code, document or {})
            return document

    def settings(self):
        return self._call("GET", "settings")

    def status(self):
        return self._call("GET", "status")

    def place_order(self, kind=None, **overrides):
        body = dict(overrides)
        if kind is not None:
            body["kind"] = kind
        return self._call("POST", "orders", body)

    def create_orders(self, count, kind=None, steps=(), at=None, **overrides):
        """Place ``count`` orders (``at``: all at that ``YYYY-MM-DD HH:MM:SS`` second)."""
        body = {"count": count, "kind": kind, "steps": list(steps), "overrides": overrides}
        if at is not None:
            body["at"] = at
        return self._call("POST", "orders/batch", body)

    def order(self, entity_id):
        return self._call("GET", f"orders/{entity_id}")

    def truth(self, summary=False):
        return self._call("GET", "orders", params={"summary": "1"} if summary else None)

    def act(self, entity_id, action, **params):
        return self._call("POST", f"orders/{entity_id}/{action}", params)

    def invoice(self, entity_id):
        return self.act(entity_id, "invoice")

    def ship(self, entity_id):
        return self.act(entity_id, "ship")

    def refund(self, entity_id):
        return self.act(entity_id, "refund")

    def cancel(self, entity_id):
        return self.act(entity_id, "cancel")

    def hold(self, entity_id):
        return self.act(entity_id, "hold")

    def unhold(self, entity_id):
        return self.act(entity_id, "unhold")

    def edit(self, entity_id, **overrides):
        return self.act(entity_id, "edit", **overrides)

    def comment(self, entity_id, comment, notify=False):
        return self.act(entity_id, "comment", comment=comment, notify=notify)

    def run_scenario(self, background=False, **params):
        return self._call("POST", "scenarios", {**params, "background": background})

    def scenario(self, scenario_id):
        return self._call("GET", f"scenarios/{scenario_id}")

    def deliveries(self, since=0):
        """Log entries from position ``since``; the answer's ``next`` is where to go on."""
        return self._call("GET", "deliveries", params={"since": since})

    def chaos(self):
        return self._call("GET", "chaos")

    def set_chaos(self, **knobs):
        return self._call("PUT", "chaos", knobs)

    def webhook(self):
        return self._call("GET", "webhook")

    def set_webhook(self, **changes):
        return self._call("PUT", "webhook", changes)

    def verify_webhook(self, timeout=10.0):
        return self._call("POST", "webhook/challenge", {"timeout": timeout})

    def adobe(self):
        """The Adobe I/O settings magsync needs, and the key paths."""
        return self._call("GET", "adobe")

    def rotate_adobe_key(self, number=1):
        return self._call("POST", f"adobe/keys/{number}/rotate")

    def retry_policy(self):
        return self._call("GET", "retry")

    def set_retry_policy(self, **changes):
        return self._call("PUT", "retry", changes)

    def pause(self):
        return self._call("POST", "delivery/pause")

    def resume(self):
        return self._call("POST", "delivery/resume")

    def paging(self):
        return self._call("GET", "paging")

    def set_paging(self, past_end):
        """``"last_page"`` (Magento 2.3 and older) or ``"empty"`` (2.4) past the last page."""
        return self._call("PUT", "paging", {"past_end": past_end})

    def requests(self, since=0):
        """REST request log entries from position ``since``; ``next`` is where to go on."""
        return self._call("GET", "requests", params={"since": since})

    def wait_idle(self, timeout=30.0):
        """True when the store's delivery queue emptied within ``timeout`` seconds."""
        answer = self._call(
            "GET", "idle", params={"timeout": timeout}, timeout=timeout + self.timeout
        )
        return answer["idle"]
