"""The sandbox Magento store: a local Magento 2 REST API and ``sales_order_save_after`` sender.

It stands in for the merchant's store in tests, the local demo, chaos runs and benchmarks::

    from magsync.sandbox.magento import SandboxStore

    with SandboxStore(webhook_url="http://127.0.0.1:5000/webhooks/magento") as store:
        order = store.place_order()                  # new / pending, one webhook
        store.invoice(order["entity_id"])            # processing, one webhook
        store.ship(order["entity_id"])               # complete, one webhook
        store.wait_idle(10)
        store.settings()                             # MAGENTO_* for magsync

or as a process: ``magsync sandbox magento --port 8081 --webhook-url URL`` prints the
``KEY=value`` settings and serves until SIGTERM/SIGINT.

REST (OAuth 1.0a, HMAC-SHA256, :mod:`.oauth`)
    ``GET /rest/V1/orders/{entity_id}``, ``GET /rest/V1/orders?searchCriteria[...]``
    (:mod:`.search`; a page past the last one holds the last page again, as Magento 2.3 and
    older answer, or nothing, as 2.4 does: ``past_end``) and ``GET /rest/V1/store/storeViews``,
    also under ``/rest/<store_code>/V1/`` (``default``, ``fr``, ``de``, ``uk``, ``jp``,
    ``all``); errors as ``{"message", "parameters"}`` (:mod:`.errors`); every request is
    logged (``requests()``).

Orders (:mod:`.generator`, :mod:`.orders`)
    Seeded, realistic orders in the shape of the REST API; lifecycle actions invoice, ship,
    refund, cancel, hold, unhold, edit and comment. Every save stamps ``updated_at`` (strictly
    increasing per order: a second later than the previous save when the wall clock has not
    moved on) and emits one webhook.

Webhooks (:mod:`.webhooks`)
    Seed envelope ``{"event": "sales_order_save_after", "order": {...}}`` signed
    ``X-Magento-Signature: sha256=<hex>``, or the Adobe I/O Events CloudEvent; per-order
    ordered delivery, retries with backoff and jitter, chaos (duplicate, drop, reorder, bursts)
    and a delivery log.

Control API (:mod:`.control`, no credentials)
    ``GET /_sandbox/settings`` · ``GET /_sandbox/status`` · ``POST /_sandbox/orders`` (one
    order, body = overrides) · ``POST /_sandbox/orders/batch`` (``{"count", "kind", "steps",
    "at", "overrides"}``; ``at`` places them all at one second)
    · ``GET /_sandbox/orders`` (the truth; ``?summary=1``) · ``GET /_sandbox/orders/{id}`` ·
    ``POST /_sandbox/orders/{id}/{action}`` · ``POST /_sandbox/scenarios`` (``"background":
    true`` answers 202) · ``GET /_sandbox/scenarios/{id}`` · ``GET /_sandbox/deliveries?since=N``
    · ``GET|PUT /_sandbox/chaos`` · ``GET|PUT /_sandbox/webhook`` ·
    ``POST /_sandbox/webhook/challenge`` · ``GET|PUT /_sandbox/retry``
    · ``POST /_sandbox/delivery/pause`` · ``POST /_sandbox/delivery/resume`` ·
    ``GET /_sandbox/idle?timeout=S`` · ``GET|PUT /_sandbox/paging`` ·
    ``GET /_sandbox/requests?since=N`` · ``GET /_sandbox/adobe/keys/pub-key-{1,2}.pem``.
    :class:`~magsync.sandbox.magento.control.ControlClient` drives it from another process.
"""

from magsync.sandbox.magento.control import ControlClient, ControlError
from magsync.sandbox.magento.errors import MagentoError
from magsync.sandbox.magento.oauth import Integration
from magsync.sandbox.magento.store import SandboxStore
from magsync.sandbox.magento.webhooks import Chaos, RetryPolicy

__all__ = [
    "Chaos",
    "ControlClient",
    "ControlError",
    "Integration",
    "MagentoError",
    "RetryPolicy",
    "SandboxStore",
]
