"""The ``magsync.sync_order`` task: a thin shell around ``magsync.sync.pipeline.sync_order``.

``sync_order(event)`` ends in one of three ways, never in an acknowledged loss:

- synced (or skipped as stale or unchanged by the pipeline): acknowledged; an order written
  while an earlier write of it was in doubt also gets a late-write check, a task of its own
  (``<order>:recheck:<id>``) that writes it again after ``MAGSYNC_LATE_WRITE_WINDOW``;
- a failure ``magsync.worker.decision`` says to retry: published again with its countdown; the
  delay is parked in RabbitMQ (quorum queue and Celery's native delayed delivery), never held by
  the worker, so RabbitMQ's consumer timeout cannot fire. Should that publish fail, the message
  is requeued instead;
- a failure it says to dead-letter: the order is published with its reason to the dead-letter
  queue, the broker's confirm awaited, reported to Sentry once, and only then acknowledged.
  Should that publish fail, the message is rejected to the broker's own dead-lettering.

While the org's API usage is past the halt threshold (``magsync.sync.pacing``), or the circuit
breaker is open, or an earlier write of the order may still land (``Deferred``), the task is put
back in the broker to wait, its retry budget untouched. What a process keeps between tasks
(breaker, pacers, dead-letter queue, Salesforce, Magento and ledger clients, and in a coalescing
worker its coalescer) is its ``WorkerContext``, made on its first task.

A coalescing worker (``MAGSYNC_BATCH_SIZE`` > 1) runs its tasks on threads: each hands its
order to the process's coalescer (``magsync.sync.coalescer``) and waits for that order's own
outcome, bounded by ``MAGSYNC_BATCH_TIMEOUT`` (Celery enforces no time limit on threads). A
failure many orders met in one Salesforce call counts once for the circuit breaker.
"""

import collections
import functools
import logging
import math
import os
import threading
import time
import uuid

from celery.exceptions import Reject, Retry

from magsync import alerts, redact
from magsync.errors import Deferred, RetryLater, SyncError
from magsync.messaging.broker import BACKFILL_ORDER_TASK, SYNC_ORDER_TASK, task_argsrepr
from magsync.messaging.dead_letters import DeadLetters
from magsync.settings import ConfigError
from magsync.sync import pipeline
from magsync.sync.coalescer import Coalescer, sync_coalesced
from magsync.sync.services import Services
from magsync.worker import pacing
from magsync.worker.circuit import CircuitBreaker
from magsync.worker.decision import UnexpectedError, decide

log = logging.getLogger(__name__)

# How ``create_worker_app`` registers ``sync_order``.
TASK_OPTIONS = {
    "name": SYNC_ORDER_TASK,
    "bind": True,
    "acks_late": True,
    "reject_on_worker_lost": True,
    # Every failure is retried or dead-lettered (and confirmed) before the task fails, so a
    # failed task's message can be acknowledged; a hard time limit requeues it instead.
    "acks_on_failure": True,
    "acks_on_timeout": False,
    "max_retries": None,
    # Expected outcomes: the worker does not log them as crashes, and Sentry does not report
    # them again (the dead letter was reported once already).
    "throws": (SyncError,),
}

# ``backfill_order``: the same task for the orders ``magsync backfill`` publishes to the backfill
# queue; it waits while the org's usage pauses backfills, and Celery's ``rate_limit`` annotation
# (``magsync.messaging.app``) bounds how fast a worker process starts them.
BACKFILL_TASK_OPTIONS = {**TASK_OPTIONS, "name": BACKFILL_ORDER_TASK}

_contexts_lock = threading.Lock()
# Failures of one Salesforce call that the breaker has counted already (a batch's orders share one).
JUDGED_CALLS = 64


class WorkerContext:
    """What one worker process keeps between tasks.

    ``WorkerContext.of(app)`` is the calling process's own (a forked pool process makes a new
    one on its first task). Its services are built on first use, and again after a failure to
    build them, which fails only the task at hand.
    """

    def __init__(self, app, settings):
        self.pid = os.getpid()
        self.settings = settings
        self.breaker = CircuitBreaker(settings.circuit_threshold, settings.circuit_cooldown)
        self.dead_letters = DeadLetters(app, app.magsync_topology, settings.publish_timeout)
        self.built = None  # the pipeline's Services, once built
        self.coalescer = None  # a coalescing worker's, once its services are built
        self._judged = collections.deque(maxlen=JUDGED_CALLS)
        self._lock = threading.Lock()
        self.pacing = pacing.start(app, settings, self.services)

    @classmethod
    def of(cls, app):
        with _contexts_lock:
            context = getattr(app, "magsync_context", None)
            if context is None or context.pid != os.getpid():
                context = app.magsync_context = cls(app, app.magsync_settings)
            return context

    def services(self):
        """The process's ``Services``; raises ``ConfigError`` if they cannot be built."""
        with self._lock:
            if self.built is None:
                self.built = Services.build(self.settings)
                if self.settings.coalescing:
                    self.coalescer = Coalescer(self.built, self.settings)
            return self.built

    def sync(self, event):
        """Sync ``event``'s order: in a batch when the worker coalesces, else on its own."""
        services = self.services()
        if self.coalescer is not None:
            return sync_coalesced(event, services, self.coalescer)
        return pipeline.sync_order(event, services)

    def judge(self, error):
        """Tell the breaker what a failure says about Salesforce (once per failed call)."""
        call = getattr(error, "failed_call", None)
        if call is not None:
            with self._lock:
                if any(seen is call for seen in self._judged):
                    return
                self._judged.append(call)
        if error.system == "salesforce" and isinstance(error, RetryLater):
            self.breaker.failure()
        elif error.system == "salesforce" and error.status is not None:
            self.breaker.success()  # Salesforce answered, it just refused this record
        else:
            self.breaker.release()

    def note(self, event, kind, decision):
        """Record the outcome in the order's history (only once the ledger client exists)."""
        if self.built is not None:
            pipeline.note_outcome(event, self.built, kind, decision.error, decision.attempts)


def redacting(run):
    """Run a task of one order event with the order's buyer data redacted by value.

    Within ``run``, logs and Sentry events redact the buyer's email, phone, street and names
    (``magsync.redact.buyer``). The failure it raises is what Celery logs and puts into the
    task-failed event Flower shows: its message is redacted, its causes dropped (the dead letter,
    the ledger and the Sentry event hold the details).
    """

    @functools.wraps(run)
    def task(self, event, *args, **kwargs):
        with redact.buyer(event.get("order") if isinstance(event, dict) else None):
            try:
                return run(self, event, *args, **kwargs)
            except (SyncError, Reject) as exc:
                error = exc.reason if isinstance(exc, Reject) else exc
                if isinstance(error, Exception) and error.args:
                    error.args = (redact.redact(str(error)),)
                raise exc from None

    return task


@redacting
def sync_order(task, event, attempts=0, first_failed_at=None):
    """Sync the order ``event`` names; retry or dead-letter it on failure (see the module)."""
    return _sync(task, event, "live", attempts, first_failed_at)


@redacting
def backfill_order(task, event, attempts=0, first_failed_at=None):
    """``sync_order`` for a backfilled order: it waits while the usage pauses backfills."""
    return _sync(task, event, "backfill", attempts, first_failed_at)


def _sync(task, event, kind, attempts, first_failed_at):
    context = WorkerContext.of(task.app)
    # The usage first: an order told to wait for it must not take the breaker's probe.
    wait = context.pacing.wait_time(kind) or context.breaker.wait_time()
    if wait > 0:
        raise _retry(task, math.ceil(wait), attempts=attempts, first_failed_at=first_failed_at)
    try:
        result = context.sync(event)
    except (Retry, Reject):
        raise
    except Deferred as exc:  # an earlier write may still land: wait, the retry budget untouched
        context.breaker.release()  # it never called Salesforce, were it the breaker's probe
        log.info(
            "order waits for an earlier write of it",
            extra={"order": event.get("increment_id"), "reason": exc.reason, "wait": exc.wait},
        )
        raise _retry(
            task, math.ceil(exc.wait), attempts=attempts, first_failed_at=first_failed_at
        ) from None
    except Exception as exc:  # every failure is retried or set aside, never lost
        raise _failed(task, context, event, exc, attempts, first_failed_at) from None
    if result and result.get("skipped"):
        context.breaker.release()
    else:
        context.breaker.success()
    if result and result.get("recheck"):
        result["recheck_task"] = _recheck(task, event, context.settings)
    return result


def _recheck(task, event, settings):
    """Publish the order's late-write check (``pipeline.late_write_possible``): the same event,
    as a task of its own, to be written again once ``MAGSYNC_LATE_WRITE_WINDOW`` has passed.
    Returns its task id, None when the broker did not confirm it (logged: the order itself is
    synced, only the check of a late write is missing)."""
    number = event.get("increment_id")
    check = {key: value for key, value in event.items() if key != "adobe_event_id"}
    check["recheck"] = True
    countdown = math.ceil(settings.late_write_window)
    task_id = f"{number}:recheck:{uuid.uuid4().hex[:12]}"
    try:
        task.apply_async(
            args=(check,), countdown=countdown, task_id=task_id, argsrepr=task_argsrepr(check)
        )
    except Exception as exc:  # the broker: this order's write stands, its check is lost
        log.error(
            "late-write check not published",
            extra={"order": number, "cause": f"{type(exc).__name__}: {exc}"[:200]},
        )
        return None
    log.info(
        "order written while an earlier write was in doubt; it is written again later",
        extra={"order": number, "countdown": countdown, "task_id": task_id},
    )
    return task_id


def _failed(task, context, event, exc, attempts, first_failed_at):
    """Retry or dead-letter after ``exc``: the ``Retry`` or the error for the task to raise.

    Raises ``Reject`` when the retry or the dead letter could not be published.
    """
    now = time.time()
    decision = decide(exc, attempts, first_failed_at, now, context.settings)
    order = event.get("increment_id")
    if isinstance(decision.error, UnexpectedError):
        log.exception("order sync failed unexpectedly", extra={"order": order})
    elif isinstance(exc, ConfigError):
        # The message names the variables to fix, never a value.
        log.error("worker settings incomplete", extra={"order": order, "error": str(exc)})
    context.judge(decision.error)
    if not decision.retry:
        _set_aside(task, context, event, decision, now)
        return decision.error
    context.note(event, "retried", decision)
    log.warning(
        "order sync will be retried",
        extra={
            "order": order,
            "reason": decision.reason,
            "attempt": decision.attempts,
            "countdown": decision.countdown,
        },
    )
    return _retry(
        task,
        decision.countdown,
        attempts=decision.attempts,
        first_failed_at=decision.first_failed_at,
    )


def _set_aside(task, context, event, decision, now):
    """Dead-letter the order (confirmed), record it, alert once; ``Reject`` if not confirmed."""
    error, order = decision.error, event.get("increment_id")
    try:
        reason = context.dead_letters.put(
            task.request, error, decision.attempts, decision.first_failed_at, now
        )
    except Exception as exc:  # BrokerUnavailable, or anything else: the broker keeps the order
        log.error(
            "dead letter not confirmed; the broker dead-letters the message instead",
            extra={"order": order, "reason": error.reason, "cause": type(exc).__name__},
        )
        raise Reject(error, requeue=False) from None
    context.note(event, "dead_lettered", decision)
    log.error(
        "order dead-lettered",
        extra={
            "order": order,
            "reason": error.reason,
            "error": str(error),
            "attempts": decision.attempts,
            "first_failed_at": reason["first_failed_at"],
        },
    )
    alerts.capture_dead_letter(error, order)


def _retry(task, countdown, **kwargs):
    """Publish the task again to run in ``countdown`` seconds; the ``Retry`` to raise."""
    try:
        return task.retry(
            countdown=countdown,
            kwargs=kwargs,
            max_retries=None,
            argsrepr=task_argsrepr(task.request.args[0]),
            throw=False,
        )
    except Reject as exc:
        # Celery rejects without requeue when the retry cannot be published; the order must
        # wait for another delivery instead of being dead-lettered by a broker hiccup.
        raise Reject(exc.reason, requeue=True) from None
