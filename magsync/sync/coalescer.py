"""A worker process's coalescer: the orders its tasks hold, written to Salesforce together.

Each task of a coalescing worker (``MAGSYNC_BATCH_SIZE`` > 1, Celery's thread pool) prepares its
order (``pipeline.prepare``: the duplicate check; validation of a webhook's payload), hands it to
the process's ``Coalescer`` and waits for its own outcome. The coalescer reads the orders of a
batch from the store in one search (``pipeline.read_orders``: one Magento request for up to 200
orders, made when the batch goes, so each is as fresh as it can be) and sends the batch
(``magsync.sync.batch.write_batch``) on one of
``MAGSYNC_SALESFORCE_CONCURRENCY`` flusher threads (so a process has that many batches, and
Salesforce calls, in flight at most):

- as soon as ``MAGSYNC_BATCH_SIZE`` orders wait;
- else ``MAGSYNC_BATCH_LINGER_MS`` after the oldest of them arrived, when no other batch of the
  process is being written: an order that comes alone waits that long and no more (four times
  as long while the org's API usage is above ``MAGSYNC_API_BUDGET``: ``sync.pacing``);
- while another batch is being written, once it ends (group commit: a call costs the same for
  one order or two hundred, so what arrives meanwhile goes together), or ``BEHIND_LIMIT``
  seconds after the oldest arrived, whichever comes first.

Each task returns its own order's outcome: it acks only
once its own record was confirmed and recorded, and a record-level failure retries or
dead-letters that order only (the task shell decides, as without coalescing).

A task waits at most ``MAGSYNC_BATCH_TIMEOUT`` seconds, then fails with ``RetryLater``
(``batch_timeout``) and is retried. An order whose batch had not started is taken out of it, so
it is never written; one whose batch had started is written and recorded by that batch as
usual, the ledger keeping it in doubt until Salesforce confirmed it, so the retry finds it
applied (and skips it) or in doubt (and writes it again by external id, checking the contact
role first): never half known.
"""

import collections
import copy
import logging
import threading
import time

from magsync import redact
from magsync.errors import RetryLater
from magsync.sync import pacing, pipeline
from magsync.sync.batch import write_batch

log = logging.getLogger(__name__)

WAITING, TAKEN, ABANDONED = "waiting", "taken", "abandoned"
# Seconds the oldest pending order waits at most behind a batch being written (it waits no
# more than the linger when none is).
BEHIND_LIMIT = 1.0


def sync_coalesced(event, services, coalescer):
    """``pipeline.sync_order`` for a coalescing worker: prepare in the calling task, apply in a
    batch, return (or raise) this order's own outcome."""
    prepared = pipeline.prepare(event, services, read=False)
    if not isinstance(prepared, pipeline.Prepared):
        return prepared
    return coalescer.submit(prepared)


class _Pending:
    """One task's order, waiting for its batch and then for its outcome."""

    def __init__(self, prepared, arrived):
        self.prepared = prepared
        self.arrived = arrived
        self.state = WAITING
        self.outcome = None
        self.document = None  # the store's order, once its batch read it
        self.done = threading.Event()

    def resolve(self, outcome):
        self.outcome = outcome
        self.done.set()

    def result(self):
        """The outcome: a summary, or its exception raised (a copy: many tasks may share one).

        Called on the task's thread, which then also redacts the buyer of the store's version.
        """
        if self.document is not None:
            redact.remember(self.document)
        if isinstance(self.outcome, BaseException):
            try:
                own = copy.copy(self.outcome)
            except Exception:  # an exception that cannot be copied is raised as it is
                raise self.outcome from None
            raise own from self.outcome
        return self.outcome


class Coalescer:
    """Batches the orders of one worker process (see the module); thread-safe."""

    def __init__(self, services, settings, clock=time.monotonic, linger_factor=None):
        self.services = services
        self.size = settings.batch_size
        self.linger = settings.batch_linger_ms / 1000.0
        # Above the API budget live orders linger longer, to fill batches (``sync.pacing``).
        self._linger_factor = linger_factor or pacing.linger_factor
        self.timeout = settings.batch_timeout
        self.flushers = settings.salesforce_concurrency
        self._clock = clock
        self._pending = collections.deque()
        self._condition = threading.Condition()
        self._threads = []
        self._writing = 0  # batches being written
        self._closed = False

    def submit(self, prepared):
        """Apply ``prepared`` in a batch; its summary, or raises its failure (see the module)."""
        item = _Pending(prepared, self._clock())
        with self._condition:
            if self._closed:
                raise RetryLater(
                    "the worker is stopping", reason="worker_stopping", system="magsync"
                )
            self._start_flushers()
            self._pending.append(item)
            # An idle flusher needs waking only when the order starts a batch (it then waits
            # for the batch's due time) or fills one; else one is already timed for it.
            if len(self._pending) == 1 or len(self._pending) == self.size:
                self._condition.notify()
        if item.done.wait(self.timeout):
            return item.result()
        return self._give_up(item)

    def _give_up(self, item):
        with self._condition:
            started = item.state == TAKEN
            if not started:
                self._pending.remove(item)
                item.state = ABANDONED
        if item.done.is_set():
            return item.result()
        log.warning(
            "order batch timed out",
            extra={"order": item.prepared.event.get("increment_id"), "started": started},
        )
        raise RetryLater(
            f"the order's batch did not finish within {self.timeout:g} s",
            reason="batch_timeout",
            system="magsync",
        )

    def close(self):
        """Stop taking orders; flushers finish their batch and end."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    # -- flushers -------------------------------------------------------------------------------

    def _start_flushers(self):
        self._threads = [t for t in self._threads if t.is_alive()]
        while len(self._threads) < self.flushers:
            thread = threading.Thread(
                target=self._run, name=f"magsync-coalescer-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)

    def _run(self):
        while True:
            batch = self._take()
            if batch is None:
                return
            try:
                self._flush(batch)
            finally:
                with self._condition:
                    self._writing -= 1
                    self._condition.notify_all()

    def _take(self):
        """The next batch, when it is due (see the module); None when closed."""
        with self._condition:
            while not self._closed:
                if not self._pending:
                    self._condition.wait()
                    continue
                wait = self._due(self._pending[0].arrived) - self._clock()
                if len(self._pending) < self.size and wait > 0:
                    self._condition.wait(wait)
                    continue
                count = min(self.size, len(self._pending))
                batch = [self._pending.popleft() for _ in range(count)]
                for item in batch:
                    item.state = TAKEN
                self._writing += 1
                if self._pending:  # what is left starts the next batch: time it
                    self._condition.notify()
                return batch
            return None

    def _due(self, arrived):
        """When a batch that is not full goes, its oldest order having ``arrived``."""
        linger = self.linger * self._linger_factor()
        if self._writing:
            return arrived + max(linger, BEHIND_LIMIT)
        return arrived + linger

    def _flush(self, batch):
        outcomes = [None] * len(batch)
        try:
            # The batch's thread knows every order it writes: its logs and Sentry events redact
            # all their buyers by value, as each order's own task thread does for its order.
            with redact.buyer():
                for item in batch:
                    redact.remember(item.prepared.event.get("order"))
                outcomes = self._write(batch)
        finally:
            for item, outcome in zip(batch, outcomes, strict=True):
                item.resolve(
                    outcome
                    if outcome is not None
                    else RetryLater("the order's batch ended early", reason="batch_interrupted")
                )

    def _write(self, batch):
        try:
            prepared = pipeline.read_orders([item.prepared for item in batch], self.services)
            ready = [i for i, item in enumerate(prepared) if isinstance(item, pipeline.Prepared)]
            outcomes = [None if i in ready else failure for i, failure in enumerate(prepared)]
            for i in ready:
                batch[i].document = prepared[i].document
            if ready:
                written = write_batch([prepared[i] for i in ready], self.services)
                for i, outcome in zip(ready, written, strict=True):
                    outcomes[i] = outcome
            return outcomes
        except Exception as exc:  # a fault of the batch itself: every order of it meets it
            log.exception("order batch failed", extra={"orders": len(batch)})
            return [exc] * len(batch)
