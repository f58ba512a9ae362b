"""The sandbox store: orders, REST server, webhook sender and control API, wired together."""

import secrets
import threading
import uuid
from dataclasses import asdict
from datetime import datetime

from magsync.sandbox.magento import scenario as scenarios
from magsync.sandbox.magento.generator import OrderGenerator
from magsync.sandbox.magento.oauth import Integration, OAuthGate
from magsync.sandbox.magento.orders import TIME_FORMAT, OrderBook, SaveClock
from magsync.sandbox.magento.search import PAST_END
from magsync.sandbox.magento.server import StoreServer
from magsync.sandbox.magento.webhooks import AdobeKeys, Chaos, RetryPolicy, Sender, Target

SETTING_NAMES = (
    "MAGENTO_BASE_URL",
    "MAGENTO_CONSUMER_KEY",
    "MAGENTO_CONSUMER_SECRET",
    "MAGENTO_ACCESS_TOKEN",
    "MAGENTO_ACCESS_TOKEN_SECRET",
    "MAGENTO_WEBHOOK_SECRET",
)


class SandboxStore:
    """A local Magento 2 store: REST API with OAuth 1.0a, webhooks on every save, control API.

    ``port`` 0 picks a free port. ``webhook_url`` None sends no webhooks (until
    :meth:`set_webhook`); ``webhook_secret`` None generates one. ``envelope`` is ``"seed"`` or
    ``"adobe"``. ``seed`` makes the generated orders (and chaos draws) reproducible.

    Keyword-only extras: ``integration`` (an :class:`Integration`; random secrets by default),
    ``retry`` (:class:`RetryPolicy` or its fields as a dict), ``chaos`` (:class:`Chaos` or a
    dict), ``senders`` (sender threads), ``clock`` (callable returning an aware UTC datetime),
    ``customers`` (size of the registered-customer pool), ``adobe_client_id`` (the I/O
    project the Adobe envelope is addressed to; random by default), ``past_end`` (what a search
    page past the last one holds: ``"last_page"``, the default, as Magento 2.3 and older answer,
    or ``"empty"``, as 2.4 does; see :meth:`set_paging`).

    Orders returned by the methods are copies in REST shape; lifecycle methods raise
    :class:`~magsync.sandbox.magento.errors.MagentoError` (400) when Magento would refuse the
    action and (404) for an unknown ``entity_id``.
    """

    def __init__(
        self,
        host="127.0.0.1",
        port=0,
        webhook_url=None,
        webhook_secret=None,
        envelope="seed",
        seed=1,
        *,
        integration=None,
        retry=None,
        chaos=None,
        senders=8,
        clock=None,
        customers=250,
        adobe_client_id=None,
        past_end="last_page",
    ):
        self.host = host
        self.port = port
        self.integration = integration or Integration()
        self.oauth = OAuthGate(self.integration)
        generator = OrderGenerator(seed=seed, customers=customers)
        self.store_codes = frozenset(
            [store["code"] for store in generator.stores.values()] + ["all"]
        )
        self._views = [
            {
                "id": store_id,
                "code": store["code"],
                "name": store["name"].rsplit("\n", 1)[-1],
                "website_id": store["website_id"],
                "store_group_id": store["group_id"],
                "is_active": 1,
            }
            for store_id, store in sorted(generator.stores.items())
        ]
        self.past_end = "last_page"
        self.set_paging(past_end)
        self._rest_log = []
        self._rest_log_lock = threading.Lock()
        self.adobe_keys = AdobeKeys()
        context = self.adobe_context = {
            "provider_id": str(uuid.uuid4()),
            "recipient_client_id": adobe_client_id or secrets.token_hex(16),
            "instance": "magsync-sandbox.Stage",
            "stores": {
                store_id: (store["website_id"], store["group_id"])
                for store_id, store in generator.stores.items()
            },
        }
        if isinstance(retry, dict):
            retry = RetryPolicy(**retry)
        if isinstance(chaos, dict):
            chaos = Chaos(**chaos)
        self.sender = Sender(
            target=Target(
                url=webhook_url or None,
                secret=webhook_secret if webhook_secret is not None else secrets.token_hex(32),
                envelope=envelope,
            ),
            policy=retry,
            chaos=chaos,
            workers=senders,
            seed=seed,
            context=context,
            keys=self.adobe_keys,
        )
        self.book = OrderBook(generator, SaveClock(clock), on_save=self.sender.submit)
        self.scenarios = {}
        self._server = None
        self._thread = None
        self._lock = threading.Lock()

    # -- running -----------------------------------------------------------------------------

    def start(self):
        """Serve in background threads and start delivering webhooks; returns self."""
        with self._lock:
            if self._server is None:
                self._server = StoreServer((self.host, self.port), self)
                self.port = self._server.server_address[1]
                self._thread = threading.Thread(
                    target=self._server.serve_forever,
                    kwargs={"poll_interval": 0.1},
                    name="magento-sandbox-http",
                    daemon=True,
                )
                self._thread.start()
                self.sender.start()
        return self

    def stop(self):
        """Stop serving and sending (queued webhooks are abandoned); idempotent."""
        with self._lock:
            server, self._server = self._server, None
            thread, self._thread = self._thread, None
        if server is not None:
            server.close()
            thread.join(5)
        self.sender.stop()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info):
        self.stop()

    @property
    def url(self):
        """``http://host:port``, the ``MAGENTO_BASE_URL`` (REST lives under ``/rest``)."""
        host = "127.0.0.1" if self.host in ("", "0.0.0.0") else self.host  # noqa: S104
        return f"http://{host}:{self.port}"

    def settings(self):
        """What magsync needs to reach this store, by environment variable name."""
        values = (
            self.url,
            self.integration.consumer_key,
            self.integration.consumer_secret,
            self.integration.access_token,
            self.integration.access_token_secret,
            self.sender.target.secret,
        )
        return dict(zip(SETTING_NAMES, values, strict=True))

    def adobe_settings(self):
        """What magsync's ``/adobe/events`` needs to accept this store's Adobe deliveries."""
        return {
            "ADOBE_IO_CLIENT_ID": self.adobe_context["recipient_client_id"],
            "ADOBE_IO_PUBLIC_KEY_BASE_URL": self.url,
        }

    def rotate_adobe_key(self, number=1):
        """Replace Adobe key ``number`` (1 or 2) with a new key at the same path; its path."""
        if number not in (1, 2):
            raise ValueError("Adobe keys are numbered 1 and 2")
        return self.adobe_keys.rotate(number - 1)

    # -- orders ------------------------------------------------------------------------------

    def place_order(self, kind=None, **overrides):
        """Place an order; ``overrides`` pin fields (see ``OrderGenerator.new_order``)."""
        return self.book.place(kind=kind, **overrides)

    def act(self, entity_id, action, **params):
        """Run a lifecycle action by name (``invoice``, ``ship``, ... see ``orders.ACTIONS``)."""
        return self.book.apply(entity_id, action, **params)

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
        """Admin edit: returns the new ``<increment_id>-<n>`` order; the original is canceled."""
        return self.act(entity_id, "edit", **overrides)

    def comment(self, entity_id, comment, notify=False):
        return self.act(entity_id, "comment", comment=comment, notify=notify)

    def create_orders(self, count, kind=None, steps=(), at=None, **overrides):
        """Place ``count`` orders and take each through ``steps``; returns them (final state).

        ``at`` (``YYYY-MM-DD HH:MM:SS``) places every order at that second: its ``created_at``
        and first ``updated_at``, so many orders can share one ``updated_at`` (later steps are
        saves, stamped by the store's clock).
        """
        steps = scenarios.normalise_steps(steps)
        if at is not None:
            overrides["created_at"] = datetime.strptime(at, TIME_FORMAT).strftime(TIME_FORMAT)
        result = []
        for _ in range(int(count)):
            order = self.place_order(kind=kind, **overrides)
            for step in steps:
                order = self.act(order["entity_id"], step)
            result.append(order)
        return result

    def run_scenario(self, background=False, **params):
        """Run a scenario (see :mod:`.scenario`); returns its result, or its run if background."""
        run = scenarios.ScenarioRun(params)
        scenarios.normalise_steps(params.get("steps", ("invoice", "ship")))
        self.scenarios[run.id] = run
        if not background:
            try:
                run.result = scenarios.run(self, run, **params)
            finally:
                run.finished.set()
            return run.result

        def target():
            try:
                run.result = scenarios.run(self, run, **params)
            except Exception as exc:
                run.error = f"{type(exc).__name__}: {exc}"
            finally:
                run.finished.set()

        run.thread = threading.Thread(target=target, name=f"magento-{run.id}", daemon=True)
        run.thread.start()
        return run

    def order(self, entity_id):
        """The current truth of one order."""
        return self.book.get(entity_id)

    def truth(self):
        """The current truth of every order: what Salesforce should end up holding."""
        return self.book.truth()

    def store_views(self):
        """``GET /V1/store/storeViews``: the admin view (id 0) and every store view."""
        admin = {
            "id": 0,
            "code": "admin",
            "name": "Admin",
            "website_id": 0,
            "store_group_id": 0,
            "is_active": 1,
        }
        return [admin, *(dict(view) for view in self._views)]

    # -- REST behaviour ----------------------------------------------------------------------

    def set_paging(self, past_end):
        """What a search page past the last one holds: ``"last_page"`` again or ``"empty"``."""
        if past_end not in PAST_END:
            raise ValueError(f"past_end must be one of {', '.join(PAST_END)}, not {past_end!r}")
        self.past_end = past_end
        return {"past_end": self.past_end}

    def record_request(self, method, path, query, status):
        """Add one REST request (answered with ``status``) to the request log."""
        with self._rest_log_lock:
            self._rest_log.append(
                {
                    "seq": len(self._rest_log),
                    "method": method,
                    "path": path,
                    "query": query,
                    "status": status,
                }
            )

    def requests(self, since=0):
        """The REST request log from entry ``since``: method, path, raw query and status."""
        with self._rest_log_lock:
            return [dict(entry) for entry in self._rest_log[since:]]

    # -- webhooks ----------------------------------------------------------------------------

    def deliveries(self, since=0):
        """The delivery log, one entry per attempt (and per dropped delivery), from ``since``."""
        return self.sender.log(since)

    def wait_idle(self, timeout=None):
        """Block until every queued webhook is delivered, refused, given up or dropped."""
        return self.sender.wait_idle(timeout)

    def set_webhook(self, url=None, secret=None, envelope=None):
        """Retarget webhooks; None leaves a value as it is, ``url=""`` stops sending."""
        changes = {}
        if url is not None:
            changes["url"] = url or None
        if secret is not None:
            changes["secret"] = secret
        if envelope is not None:
            changes["envelope"] = envelope
        return asdict(self.sender.set_target(**changes))

    def verify_webhook(self, timeout=10.0):
        """Adobe's registration challenge against the current URL (see ``Sender.challenge``)."""
        return self.sender.challenge(timeout)

    def set_chaos(self, duplicate=0.0, reorder_window=0.0, drop=0.0, burst_every=0.0):
        """Replace the chaos settings (everything not given is off)."""
        chaos = Chaos(
            duplicate=float(duplicate),
            reorder_window=float(reorder_window),
            drop=float(drop),
            burst_every=float(burst_every),
        )
        return asdict(self.sender.set_chaos(**asdict(chaos)))

    def pause_delivery(self):
        self.sender.pause()

    def resume_delivery(self):
        self.sender.resume()

    def status(self):
        """Order count, HTTP connections served to the end, delivery counters and queue state,
        running scenarios."""
        server = self._server
        return {
            "url": self.url,
            "orders": len(self.book),
            "connections_handled": server.handled if server is not None else 0,
            "delivery": self.sender.status(),
            "scenarios": {
                run_id: {"finished": run.finished.is_set(), "done": run.done_ops}
                for run_id, run in list(self.scenarios.items())
            },
        }

    def __repr__(self):
        return f"<SandboxStore {self.url} orders={len(self.book)}>"
