"""Celery tasks: thin shells around ``magsync.pipeline``.

``magsync.sync_order`` retries transient failures with exponential backoff and full jitter
(honouring a server's ``Retry-After``); the delay is parked in the broker, not in the worker.
A permanent failure, or a transient one that outlived its retries, is rejected without requeue,
which RabbitMQ routes to the dead-letter queue; Sentry hears of it once.
"""

import logging
import random

from celery.exceptions import Reject

from magsync import alerts, pipeline
from magsync.broker import SYNC_ORDER_TASK
from magsync.errors import DeadLetter, RetryLater

log = logging.getLogger(__name__)


def backoff(retries, settings, retry_after=None, rng=random.random):
    """Seconds before retry number ``retries + 1``: full jitter over an exponential cap."""
    cap = min(settings.retry_backoff_max, settings.retry_backoff * (2**retries))
    delay = rng() * cap
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, round(delay))


def dead_letter(error, event, attempts, services):
    pipeline.note_outcome(event, services, "dead_lettered", error, attempts)
    log.error(
        "order dead-lettered",
        extra={
            "order": event.get("increment_id"),
            "reason": error.reason,
            "error": str(error),
            "attempts": attempts,
        },
    )
    alerts.capture_dead_letter(error, event.get("increment_id"))


def register(celery, settings):
    """Define magsync's tasks on ``celery``."""

    @celery.task(
        name=SYNC_ORDER_TASK,
        bind=True,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=settings.max_retries,
    )
    def sync_order(self, event):
        attempts = self.request.retries + 1
        services = pipeline.services_for(settings)
        try:
            return pipeline.sync_order(event, services)
        except RetryLater as exc:
            if self.request.retries >= self.max_retries:
                dead_letter(exc, event, attempts, services)
                raise Reject(exc, requeue=False) from None
            pipeline.note_outcome(event, services, "retried", exc, attempts)
            countdown = backoff(self.request.retries, settings, exc.retry_after)
            log.warning(
                "order sync will be retried",
                extra={
                    "order": event.get("increment_id"),
                    "reason": exc.reason,
                    "attempt": attempts,
                    "countdown": countdown,
                },
            )
            raise self.retry(exc=exc, countdown=countdown) from None
        except DeadLetter as exc:
            dead_letter(exc, event, attempts, services)
            raise Reject(exc, requeue=False) from None

    return {"sync_order": sync_order}
