"""Backfill: the store's history walked and every order Salesforce lacks in its version synced.

``Backfill(services, plan, sinks).run()`` walks the store's orders updated from ``since`` (to
``until``, of one store view) in (``updated_at``, ``entity_id``) order (``OrderWalk``, whole
orders, ``MAGSYNC_RECONCILE_PAGE_SIZE`` a page) and classifies each page against the ledger
(``scan.classify``: one ledger read per page; an order applied in that version costs nothing
more). What needs a sync goes one of two ways:

- up to ``MAGSYNC_BULK_THRESHOLD`` orders in the range: a ``magsync.backfill_order`` task per
  order on the backfill queue (``sinks.publish``, confirmed by the broker), which the backfill
  worker syncs as any order (coalesced writes, locks, retries, dead letters);
- more: in this process, with Bulk API 2.0 (``magsync.sync.bulk``), 10,000 orders a job.

After each page is handed on (published and confirmed, or written), its last order is the run's
checkpoint in the ledger (``ledger_backfills``, keyed by ``run_key``: the store, its view and
the range), with the counts. A run stopped (``stop`` set, as Ctrl-C does) or failed goes on from
there when it is started again with the same range; a finished run started again walks it anew
(what is applied costs nothing). Finishing prunes the checkpoints of older runs it covers.

While the org's API usage pauses backfills (``magsync.sync.pacing.allow("backfill")``), the
bulk path waits before each job; the backfill worker's tasks wait in the broker on their own.
``dry_run`` only counts new, changed and unchanged orders: nothing is published, written or
checkpointed. Progress is reported to ``sinks.progress(counts)`` after each page, and while the
run waits for the backfill worker to sync what was published (``wait``).
"""

import datetime as dt
import hashlib
import itertools
import logging
import time
from dataclasses import dataclass, field

from magsync.salesforce.bulk import JOB_RECORDS
from magsync.sync import pacing, scan
from magsync.sync.bulk import Outcomes, write_bulk

log = logging.getLogger(__name__)

SOURCE = "backfill"
# Seconds between looks at the ledger for the published orders' outcome.
WAIT_INTERVAL = 1.0
# Orders whose outcome one ledger read looks up.
LOOKUP_CHUNK = 500
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# The counts a checkpoint keeps.
CHECKPOINTED = ("scanned", "to_sync", "synced", "failed")


@dataclass(frozen=True)
class Plan:
    """What to backfill: ``since`` (and ``until``, exclusive) as Magento times, ``store_code``
    (a store view, None for all), ``dry_run``, ``wait`` (for the published orders' outcome)."""

    since: str
    until: str | None = None
    store_code: str | None = None
    dry_run: bool = False
    wait: bool = True


@dataclass
class Sinks:
    """Where a run's orders go: ``publish(events)`` to the backfill queue (returns once the
    broker confirmed all), ``set_aside(event, error)`` to the dead letters, ``bulk`` (a
    ``BulkClient``), ``progress(counts)``, and ``stop`` (an Event: stop after the page)."""

    publish: object = None
    set_aside: object = None
    bulk: object = None
    progress: object = None
    stop: object = None


@dataclass
class Counts:
    """A run's figures: orders scanned, to sync, synced, failed (dead-lettered); a dry run's
    new, changed and unchanged; ``total`` the orders in the range (the store's count).

    A resumed run counts as synced or failed only what it published itself and what earlier
    sessions of the run saw settled before they stopped."""

    scanned: int = 0
    to_sync: int = 0
    synced: int = 0
    failed: int = 0
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    total: int | None = None
    mode: str = "queue"
    started: float = field(default_factory=time.monotonic)
    resumed_from: int = 0

    def checkpointed(self):
        return {name: getattr(self, name) for name in CHECKPOINTED}


def store_key(settings, store_code=None):
    """The store a walk reads: its base URL and store view."""
    return f"{settings.magento_base_url}|{store_code or settings.magento_store_code or ''}"


def run_key(settings, plan):
    """The checkpoint key of a run: a digest of the store, its view and the range."""
    text = "|".join((store_key(settings, plan.store_code), plan.since, plan.until or ""))
    return hashlib.sha256(text.encode()).hexdigest()


def backfill_event(document):
    """The task argument of a backfilled order: the worker reads the order from the store."""
    return {
        "event": "backfill",
        "source": SOURCE,
        "entity_id": int(document["entity_id"]),
        "increment_id": str(document["increment_id"]),
        "updated_at": document.get("updated_at"),
    }


def backfill_task_id(event):
    """``<order number>:backfill:<updated_at>``: one task per version of an order."""
    stamp = str(event.get("updated_at") or "").replace(" ", "T")
    return f"{event['increment_id']}:backfill:{stamp}"


class Backfill:
    """One run (see the module)."""

    def __init__(self, services, plan, sinks):
        self.services = services
        self.settings = services.settings
        self.ledger = services.ledger
        self.plan = plan
        self.sinks = sinks
        self.key = run_key(self.settings, plan)
        self.counts = Counts()
        self.pending = {}  # increment_id -> updated_at published, outcome not seen yet
        self._bulk_chunk = []
        self.stopped = False

    def run(self):
        """Walk, hand on, checkpoint; returns the ``Counts`` (``stopped`` tells a stop)."""
        self.ledger.ready()
        walk = self._walk()
        self.counts.total = self.counts.scanned + walk.count()
        self.counts.mode = self._mode()
        self._progress()
        stopped = self._pages(walk)
        if self.counts.mode == "bulk":
            # What was collected is written before the checkpoint moves past it.
            self._flush_bulk(walk)
        if not self.plan.dry_run:
            self._save(walk, finished=not stopped)
        if not stopped and self.plan.wait and not self.plan.dry_run:
            stopped = self._wait_for_worker()
            self._save(walk, finished=True)
        self.stopped = stopped
        return self.counts

    def _walk(self):
        plan, magento = self.plan, self.services.magento
        options = {"until": plan.until, "store_code": plan.store_code}
        if plan.dry_run:
            return magento.walk_orders(plan.since, **options)
        checkpoint = self.ledger.start_backfill(
            self.key,
            store_key(self.settings, plan.store_code),
            dt.datetime.strptime(plan.since, TIME_FORMAT),
            dt.datetime.strptime(plan.until, TIME_FORMAT) if plan.until else None,
        )
        if checkpoint.cursor is None:
            return magento.walk_orders(plan.since, **options)
        for name in CHECKPOINTED:
            setattr(self.counts, name, getattr(checkpoint, name))
        self.counts.resumed_from = checkpoint.scanned
        updated_at, entity_id = checkpoint.cursor
        cursor = (updated_at.strftime(TIME_FORMAT), entity_id)
        log.info("backfill resumed", extra={"run": self.key[:12], "scanned": checkpoint.scanned})
        return magento.walk_orders(cursor=cursor, **options)

    def _mode(self):
        if self.plan.dry_run:
            return "dry-run"
        # A Bulk job of Opportunities cannot carry their lines: with line items on, every order
        # takes the queue (Composite and Collections, lines included).
        if self.settings.sf_line_items:
            return "queue"
        return "bulk" if self.counts.total > self.settings.bulk_threshold else "queue"

    def _pages(self, walk):
        """Hand on each page; True when stopped before the end."""
        orders = iter(walk)
        while page := list(itertools.islice(orders, walk.page_size)):
            self._page(page, walk)
            self._progress()
            if self.sinks.stop is not None and self.sinks.stop.is_set():
                return True
        return False

    def _page(self, page, walk):
        verdicts = scan.classify(page, self.ledger, self.settings)
        counts = self.counts
        counts.scanned += len(page)
        todo = [v.document for v in verdicts if v.needs_sync]
        counts.to_sync += len(todo)
        if self.plan.dry_run:
            for verdict in verdicts:
                kind = "new" if verdict.kind in (scan.NEW, scan.INVALID) else verdict.kind
                setattr(counts, kind, getattr(counts, kind) + 1)
            return
        if counts.mode == "bulk":
            self._bulk_chunk += todo
            if len(self._bulk_chunk) >= JOB_RECORDS:
                self._flush_bulk(walk)
            return
        if todo:
            self._publish(todo)
        self._look_up_outcomes()
        self._save(walk)

    def _publish(self, documents):
        events = [backfill_event(document) for document in documents]
        self.sinks.publish([(event, backfill_task_id(event)) for event in events])
        for event in events:
            self.pending[event["increment_id"]] = event["updated_at"]

    def _flush_bulk(self, walk):
        chunk, self._bulk_chunk = self._bulk_chunk, []
        if chunk:
            self._wait_for_allowance()
            outcomes = Outcomes(publish=self._publish, set_aside=self._set_aside)
            write_bulk(chunk, self.services, self.sinks.bulk, outcomes)
            self.counts.synced += outcomes.synced
            self.counts.failed += outcomes.failed
        self._save(walk)

    def _set_aside(self, document, error):
        event = backfill_event(document)
        self.sinks.set_aside(event, backfill_task_id(event), error)

    def _wait_for_allowance(self):
        while not pacing.allow("backfill"):
            log.warning("backfill paused: the org's api usage is above the budget")
            if self._sleep(self.settings.api_probe_interval):
                return

    def _sleep(self, seconds):
        """Sleep; True when told to stop meanwhile."""
        stop = self.sinks.stop
        if stop is None:
            time.sleep(seconds)
            return False
        return stop.wait(seconds)

    def _save(self, walk, finished=False):
        if self.plan.dry_run:
            return
        cursor = walk.cursor if walk.cursor.entity_id is not None else None
        if cursor is not None:
            cursor = (dt.datetime.strptime(cursor.updated_at, TIME_FORMAT), cursor.entity_id)
        self.ledger.save_backfill(self.key, cursor, self.counts.checkpointed(), finished=finished)

    # -- the backfill worker's outcomes ------------------------------------------------------------

    def _look_up_outcomes(self):
        """Count the published orders the ledger now records as synced or dead-lettered."""
        numbers = list(self.pending)
        for start in range(0, len(numbers), LOOKUP_CHUNK):
            chunk = numbers[start : start + LOOKUP_CHUNK]
            states = self.ledger.orders(chunk)
            for number in chunk:
                outcome = _outcome(states.get(number), self.pending[number])
                if outcome is not None:
                    del self.pending[number]
                    setattr(self.counts, outcome, getattr(self.counts, outcome) + 1)

    def _wait_for_worker(self):
        """Wait until every published order is synced or dead-lettered; True when stopped."""
        while self.pending:
            self._look_up_outcomes()
            self._progress()
            if not self.pending:
                break
            if self._sleep(WAIT_INTERVAL):
                return True
        return False

    def _progress(self):
        if self.sinks.progress is not None:
            self.sinks.progress(self.counts)


def _outcome(state, updated_at):
    """``synced``, ``failed`` or None (not yet) for a published order's ledger state."""
    if state is None:
        return None
    if state.status == "dead_lettered":
        return "failed"
    published = dt.datetime.strptime(updated_at, TIME_FORMAT) if updated_at else None
    if state.updated_at is not None and (published is None or state.updated_at >= published):
        return "synced" if state.status == "synced" else None
    return None
