"""Reconciliation: the store's recently updated orders, compared with the ledger, the rest synced.

Webhooks get lost (a module uninstalled, an Adobe registration disabled, a sender that gives
up), and a store may send none at all. A pass (``run_pass``) reads the store itself, so that
Salesforce converges on the store's truth whatever the webhooks did:

1. It holds the store's reconcile lock (``magsync.ledger.locks``, non-blocking): a second pass
   of the same store, from a second clock by mistake, finds it taken and skips.
2. It reads the store's watermark (``ledger_watermarks``: per base URL and store code), made
   the first time with ``first_run_at`` = now, so the very first pass starts from when magsync
   first ran, not from the store's beginning (history is the backfill's job).
3. It walks ``GET /V1/orders`` from the watermark less ``MAGSYNC_RECONCILE_OVERLAP`` (clock
   skew, late commits) in (``updated_at``, ``entity_id``) order (``magsync.magento.walk``),
   classifies each page with one ledger read (``magsync.sync.scan``: a version the ledger
   applied costs nothing, no message and no Salesforce call) and publishes the rest as
   ``magsync.sync_order`` tasks with source ``reconcile``, through the caller's ``publish``
   (confirmed by the broker, or it raises): the same worker path as a webhook, so the worker
   decides again under the order's lock.
4. Only when every publish of the pass was confirmed does the watermark move to the newest
   order the pass saw. A failed pass leaves it, and the next pass reads the same orders again.

A version published lately by this process and not applied yet (``RecentlyPublished``) is not
published again by the next pass; the worker's own checks make a repeat harmless anyway. Nor is
a version a worker dead-lettered: it would be dead-lettered (and alerted) again every pass.

Orders the ledger never saw (no worker ever received them), last saved more than
``MISSED_AFTER`` seconds ago while a webhook intake is configured, are webhooks that never
came: the pass logs a warning with their count, and ``MissedWebhooks`` sends one Sentry event
per hour while it goes on, for all processes (claimed in the store's watermark row). With no
webhook intake (polling only) new orders are what polling is for, and are not counted.

Reconciliation pauses while the org's API usage is above ``MAGSYNC_API_BUDGET``
(``magsync.sync.pacing.allow("reconcile")``): what it publishes would spend the allowance.
"""

import datetime as dt
import itertools
import logging
import threading
import time
from dataclasses import dataclass

from magsync import alerts
from magsync.ledger import LedgerUnavailable
from magsync.magento.walk import TIME_FORMAT, magento_time
from magsync.sync import pacing
from magsync.sync.scan import NEW, classify

log = logging.getLogger(__name__)

SOURCE = "reconcile"
LOCK_KIND = "reconcile"
# A new order found this long after its last save had a webhook that never came (a webhook
# still on its way, or waiting in the queue, is younger).
MISSED_AFTER = 120.0
# At most one Sentry event per process this often while webhooks keep going missing.
ALERT_INTERVAL = 3600.0


@dataclass
class PassResult:
    """What one pass did: orders scanned, published (of them new to the ledger, and missed
    webhooks), not published again because this process published that version lately
    (``in_flight``) or a worker dead-lettered it (``dead_lettered``), pages read, the watermark
    it left; ``skipped`` (``busy``, ``api_budget``) when it did nothing."""

    store_key: str
    since: str | None = None
    scanned: int = 0
    published: int = 0
    in_flight: int = 0
    dead_lettered: int = 0
    new: int = 0
    missed: int = 0
    pages: int = 0
    watermark: tuple | None = None
    skipped: str | None = None

    def summary(self):
        return {k: v for k, v in vars(self).items() if v is not None}


def reconcile_event(document):
    """The ``magsync.sync_order`` event for a walked order: the receiver's shape (``entity_id``,
    ``increment_id``, ``updated_at``, the order), with ``source`` ``reconcile``."""
    return {
        "event": "sales_order_save_after",
        "source": SOURCE,
        "entity_id": int(document["entity_id"]),
        "increment_id": document.get("increment_id"),
        "updated_at": document.get("updated_at"),
        "order": document,
    }


def reconcile_task_id(event):
    """``<order number>:reconcile-<updated_at>``: one task id per order version found."""
    number = event["increment_id"] or f"entity-{event['entity_id']}"
    version = str(event["updated_at"] or "").replace(" ", "T")
    return f"{number}:reconcile-{version}"


class MissedWebhooks:
    """Reports orders whose webhook never came: a warning per pass, one alert an interval.

    The alert is claimed in the ledger (the store's watermark row), so one goes out an interval
    whichever worker processes run the passes; while the ledger cannot be asked, the process
    keeps its own interval. ``clock`` gives epoch seconds.
    """

    def __init__(self, interval=ALERT_INTERVAL, clock=time.time):
        self.interval = interval
        self.clock = clock
        self.alerts = 0
        self._last = None
        self._lock = threading.Lock()

    def report(self, count, store_key, ledger=None):
        """Log ``count`` missed orders; True when this call also sent the Sentry event."""
        log.warning(
            "reconciliation found orders whose webhook never came: is the webhook intake "
            "broken (module uninstalled, Adobe registration disabled)?",
            extra={"missed": count, "store": store_key},
        )
        if not self._claim(store_key, ledger):
            return False
        with self._lock:
            self.alerts += 1
        alerts.capture_missed_webhooks(count, store_key)
        return True

    def _claim(self, store_key, ledger):
        now = self.clock()
        if ledger is not None:
            try:
                at = dt.datetime.fromtimestamp(now, dt.UTC).replace(tzinfo=None)
                return ledger.claim_missed_alert(store_key, at, self.interval)
            except LedgerUnavailable as exc:
                log.warning("missed-webhooks alert not claimed", extra={"cause": str(exc)})
        with self._lock:
            if self._last is not None and now - self._last < self.interval:
                return False
            self._last = now
            return True


MISSED = MissedWebhooks()


class RecentlyPublished:
    """The order versions this process published (and the broker confirmed) lately.

    A pass that meets such a version again, because the worker has not applied it yet (a queue
    to work through, Salesforce away and the order retried), does not publish it a second time:
    the first message is in RabbitMQ and is applied, retried or dead-lettered like any other.
    A version is remembered for ``MAGSYNC_RECONCILE_OVERLAP`` seconds, as long as passes read
    back; after that a pass that still finds it unapplied publishes it again.
    """

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._until = {}
        self._lock = threading.Lock()

    @staticmethod
    def key(store_key, event):
        return (store_key, event["entity_id"], event["increment_id"], event["updated_at"])

    def known(self, store_key, event):
        with self._lock:
            return self._until.get(self.key(store_key, event), float("-inf")) > self.clock()

    def remember(self, store_key, events, ttl):
        now = self.clock()
        with self._lock:
            for key in [key for key, until in self._until.items() if until <= now]:
                del self._until[key]
            for event in events:
                self._until[self.key(store_key, event)] = now + ttl


RECENT = RecentlyPublished()


def run_pass(services, publish, *, now=None, missed=MISSED, recent=RECENT):
    """One reconcile pass of the configured store (see the module); returns its ``PassResult``.

    ``publish([(event, task_id), ...])`` returns once the broker confirmed every message, and
    raises otherwise; its error ends the pass with the watermark where it was. The Magento
    client's ``RetryLater``/``DeadLetter`` and ``LedgerUnavailable`` end it the same way.
    ``now`` (naive UTC) is for tests.
    """
    settings, ledger = services.settings, services.ledger
    result = PassResult(settings.store_key)
    if not pacing.allow(SOURCE):
        result.skipped = "api_budget"
        log.info("reconcile pass skipped: API usage above the budget", extra=result.summary())
        return result
    ledger.ready()
    with ledger.locks() as locks:
        if not locks.try_acquire(LOCK_KIND, result.store_key):
            result.skipped = "busy"
            log.info("reconcile pass skipped: another one is running", extra=result.summary())
            return result
        _walk(services, publish, result, now or _utcnow(), recent)
    if result.missed:
        missed.report(result.missed, result.store_key, services.ledger)
    log.info("reconcile pass done", extra=result.summary())
    return result


def _walk(services, publish, result, now, recent):
    settings, ledger = services.settings, services.ledger
    mark = ledger.start_watermark(result.store_key, now)
    since = mark.since - dt.timedelta(seconds=settings.reconcile_overlap)
    result.since = magento_time(since)
    walk = services.magento.walk_orders(since)
    cutoff = now - dt.timedelta(seconds=MISSED_AFTER)
    orders = iter(walk)
    while page := list(itertools.islice(orders, walk.page_size)):
        verdicts = classify(page, ledger, settings)
        events = _not_set_aside(
            [reconcile_event(v.document) for v in verdicts if v.needs_sync], ledger, result
        )
        fresh_events = [e for e in events if not recent.known(result.store_key, e)]
        if fresh_events:
            publish([(event, reconcile_task_id(event)) for event in fresh_events])
            recent.remember(result.store_key, fresh_events, settings.reconcile_overlap)
        result.scanned += len(page)
        result.published += len(fresh_events)
        result.in_flight += len(events) - len(fresh_events)
        fresh = [v.document for v in verdicts if v.kind == NEW]
        result.new += len(fresh)
        result.missed += _missed(fresh, cutoff, ledger, settings)
    result.pages = walk.pages
    if result.scanned:
        cursor = walk.cursor
        ledger.advance_watermark(result.store_key, _parse(cursor.updated_at), cursor.entity_id)
        result.watermark = (cursor.updated_at, cursor.entity_id)


def _not_set_aside(events, ledger, result):
    """``events`` less the orders whose version a worker dead-lettered already (the ledger's
    row says ``dead_lettered`` since after that save): publishing them again would only
    dead-letter them again, once every pass. A newer save is published; the dead letter itself
    waits for ``magsync dead replay``."""
    if not events:
        return events
    states = ledger.orders(e["increment_id"] for e in events if e["increment_id"])
    kept = [e for e in events if not _dead_lettered(e, states.get(e["increment_id"]))]
    result.dead_lettered += len(events) - len(kept)
    return kept


def _dead_lettered(event, state):
    """The event's version is the one the worker dead-lettered, or older.

    When the worker had begun writing it, the ledger keeps that version's ``updated_at`` (the
    store's clock): compared as is. Otherwise (refused before any write) the dead letter's own
    time is all there is: only a save in an earlier second than it counts as dead-lettered, so
    a save in the same second is published again rather than missed.
    """
    if state is None or state.status != "dead_lettered" or state.changed_at is None:
        return False
    try:
        updated_at = _parse(str(event["updated_at"]))
    except ValueError:
        return False
    if state.pending_updated_at is not None:
        return updated_at <= state.pending_updated_at
    return updated_at < state.changed_at.replace(microsecond=0)


def _missed(fresh, cutoff, ledger, settings):
    """How many of the orders new to the ledger were saved before ``cutoff`` and never reached
    a worker at all (an order a worker received and keeps retrying has a ledger row)."""
    if not settings.webhook_intake_enabled:
        return 0
    old = [d.get("increment_id") for d in fresh if _saved_before(d, cutoff)]
    if not old:
        return 0
    received = ledger.orders(number for number in old if number)
    return sum(1 for number in old if number not in received)


def _utcnow():
    return dt.datetime.now(dt.UTC).replace(tzinfo=None, microsecond=0)


def _parse(text):
    return dt.datetime.strptime(magento_time(text), TIME_FORMAT)


def _saved_before(document, cutoff):
    try:
        return _parse(str(document.get("updated_at"))) < cutoff
    except ValueError:
        return False
