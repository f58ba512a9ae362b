"""Celery tasks: thin shells around ``magsync.sync.pipeline``.

``magsync.sync_order(event)`` ends in one of three ways:

- synced (or skipped as stale or unchanged by the pipeline): acknowledged;
- a transient failure (``RetryLater``): retried with exponential backoff and full jitter,
  honouring a server's ``Retry-After``; the delay is parked in RabbitMQ (quorum queue and
  Celery's native delayed delivery), never held by the worker, so RabbitMQ's consumer timeout
  cannot fire. Retries go on until ``MAGSYNC_RETRY_FOR`` seconds have passed since the first
  failure (2 hours by default), then the order is dead-lettered;
- a permanent failure (``DeadLetter``) or an unexpected error: dead-lettered at once.

Dead-lettering publishes the order with its reason to the dead-letter queue, waits for the
broker's confirm, reports it to Sentry once, and only then acknowledges the original. While the
circuit breaker is open the task is put back in the broker to wait, its retry budget untouched.
"""

import functools
import logging
import math
import random
import time

from celery.exceptions import Reject, Retry, SoftTimeLimitExceeded

from magsync import alerts, redact
from magsync.errors import DeadLetter, RetryLater, SyncError
from magsync.messaging.broker import SYNC_ORDER_TASK, BrokerUnavailable, task_argsrepr
from magsync.messaging.dead_letters import DeadLetters
from magsync.sync import pipeline
from magsync.worker.circuit import CircuitBreaker

log = logging.getLogger(__name__)


def backoff(attempts, settings, retry_after=None, rng=random.random):
    """Seconds before the next try after ``attempts`` failures: full jitter, exponential cap."""
    cap = min(settings.retry_backoff_max, settings.retry_backoff * (2 ** max(0, attempts - 1)))
    delay = rng() * cap
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, math.ceil(delay))


class UnexpectedError(DeadLetter):
    """An error magsync does not know how to handle: set aside for a person to look at."""

    reason = "unexpected_error"
    system = "magsync"


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


def register(celery, settings):
    """Define magsync's tasks on ``celery``."""
    breaker = CircuitBreaker(settings.circuit_threshold, settings.circuit_cooldown)
    dead_letters = DeadLetters(celery, celery.magsync_topology, settings.publish_timeout)
    celery.magsync_breaker = breaker

    def judge(error):
        """Tell the breaker what this outcome says about Salesforce."""
        if error is None:
            breaker.success()
        elif error.system == "salesforce" and isinstance(error, RetryLater):
            breaker.failure()
        elif error.system == "salesforce" and error.status is not None:
            breaker.success()  # Salesforce answered, it just refused this record
        else:
            breaker.release()

    def set_aside(task, event, error, attempts, first_failed_at, services):
        now = time.time()
        try:
            reason = dead_letters.put(task.request, error, attempts, first_failed_at or now, now)
        except BrokerUnavailable:
            log.error(
                "dead letter not confirmed; the broker dead-letters the message instead",
                extra={"order": event.get("increment_id"), "reason": error.reason},
            )
            raise Reject(error, requeue=False) from None
        pipeline.note_outcome(event, services, "dead_lettered", error, attempts)
        log.error(
            "order dead-lettered",
            extra={
                "order": event.get("increment_id"),
                "reason": error.reason,
                "error": str(error),
                "attempts": attempts,
                "first_failed_at": reason["first_failed_at"],
            },
        )
        alerts.capture_dead_letter(error, event.get("increment_id"))

    def retry(task, countdown, **kwargs):
        try:
            return task.retry(
                countdown=countdown,
                kwargs=kwargs,
                max_retries=None,
                argsrepr=task_argsrepr(task.request.args[0]),
            )
        except Reject as exc:
            # Celery rejects without requeue when the retry cannot be published; the order must
            # wait for another delivery instead of being dead-lettered by a broker hiccup.
            raise Reject(exc.reason, requeue=True) from None

    @celery.task(
        name=SYNC_ORDER_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        # Every failure is dead-lettered (and confirmed) before the task fails, so a failed
        # task's message can be acknowledged; a hard time limit requeues it instead.
        acks_on_failure=True,
        acks_on_timeout=False,
        max_retries=None,
        # Expected outcomes: the worker does not log them as crashes, and Sentry does not
        # report them again (the dead letter was reported once already).
        throws=(SyncError,),
    )
    @redacting
    def sync_order(self, event, attempts=0, first_failed_at=None):
        services = pipeline.services_for(settings)
        wait = breaker.wait_time()
        if wait > 0:
            raise retry(self, math.ceil(wait), attempts=attempts, first_failed_at=first_failed_at)
        try:
            result = pipeline.sync_order(event, services)
        except (Retry, Reject):
            raise
        except SoftTimeLimitExceeded:
            error = RetryLater("the sync took too long", reason="soft_time_limit", system="magsync")
        except SyncError as exc:
            error = exc
        except Exception as exc:  # an unknown failure is set aside, never lost
            log.exception(
                "order sync failed unexpectedly", extra={"order": event.get("increment_id")}
            )
            error = UnexpectedError(f"{type(exc).__name__}: {exc}")
        else:
            if result and result.get("skipped"):
                breaker.release()
            else:
                judge(None)
            return result

        judge(error)
        attempts += 1
        now = time.time()
        first_failed_at = first_failed_at or now
        if isinstance(error, RetryLater) and now - first_failed_at < settings.retry_for:
            countdown = backoff(attempts, settings, error.retry_after)
            pipeline.note_outcome(event, services, "retried", error, attempts)
            log.warning(
                "order sync will be retried",
                extra={
                    "order": event.get("increment_id"),
                    "reason": error.reason,
                    "attempt": attempts,
                    "countdown": countdown,
                },
            )
            raise retry(self, countdown, attempts=attempts, first_failed_at=first_failed_at)
        if isinstance(error, RetryLater):
            error.reason = f"retries_exhausted:{error.reason}"
        set_aside(self, event, error, attempts, first_failed_at, services)
        raise error

    return {"sync_order": sync_order}
