"""What becomes of an order whose sync failed: retried later, or dead-lettered with a reason.

``decide(error, attempts, first_failed_at, now, settings)`` is a pure function of the failure and
the time, with no broker or clock of its own:

- a transient failure (``RetryLater``), a sync cut short by the soft time limit, or settings the
  worker cannot build its clients from (``ConfigError``: an operator fixes them while the order
  waits) is retried with exponential backoff and full jitter, never sooner than the server's
  ``Retry-After``, until ``MAGSYNC_RETRY_FOR`` seconds have passed since the first failure; after
  that it is dead-lettered as ``retries_exhausted:<reason>``;
- a permanent failure (``DeadLetter``) is dead-lettered at once with its reason;
- anything else is dead-lettered at once as ``unexpected_error``, for a person to look at.
"""

import copy
import math
import random
from dataclasses import dataclass

from celery.exceptions import SoftTimeLimitExceeded

from magsync.errors import DeadLetter, RetryLater, SyncError
from magsync.settings import ConfigError


class UnexpectedError(DeadLetter):
    """An error magsync does not know how to handle: set aside for a person to look at."""

    reason = "unexpected_error"
    system = "magsync"


@dataclass(frozen=True)
class Decision:
    """Retry after ``countdown`` seconds (``retry``), or dead-letter with ``error.reason``.

    ``error`` is the failure as magsync names it (a ``SyncError``, what the log, the dead letter
    and Sentry show); ``attempts`` counts the failures so far, this one included;
    ``first_failed_at`` is the first one's time (seconds since the epoch).
    """

    retry: bool
    error: SyncError
    attempts: int
    first_failed_at: float
    countdown: int = 0

    @property
    def reason(self):
        return self.error.reason


def classify(exc):
    """The ``SyncError`` that an exception raised by a sync stands for."""
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, SoftTimeLimitExceeded):
        return RetryLater("the sync took too long", reason="soft_time_limit", system="magsync")
    if isinstance(exc, ConfigError):
        return RetryLater(str(exc), reason="config_error", system="magsync")
    return UnexpectedError(f"{type(exc).__name__}: {exc}")


def backoff(attempts, settings, retry_after=None, rng=random.random):
    """Seconds before the next try after ``attempts`` failures: full jitter, exponential cap."""
    cap = min(settings.retry_backoff_max, settings.retry_backoff * (2 ** max(0, attempts - 1)))
    delay = rng() * cap
    if retry_after is not None:
        delay = max(delay, retry_after)
    return max(1, math.ceil(delay))


def decide(error, attempts, first_failed_at, now, settings, rng=random.random):
    """The ``Decision`` for ``error`` (any exception), raised at ``now`` after ``attempts``
    earlier failures, the first at ``first_failed_at`` (None: this is the first).

    ``rng`` draws the jitter (a float in [0, 1)); the error given is never modified.
    """
    error = classify(error)
    attempts += 1
    first_failed_at = now if first_failed_at is None else first_failed_at
    if not isinstance(error, RetryLater):
        return Decision(False, error, attempts, first_failed_at)
    if now - first_failed_at < settings.retry_for:
        countdown = backoff(attempts, settings, error.retry_after, rng)
        return Decision(True, error, attempts, first_failed_at, countdown)
    return Decision(False, _exhausted(error), attempts, first_failed_at)


def _exhausted(error):
    # A copy keeps the class, status and Salesforce errors for the dead letter; only the
    # reason says that the retry window ran out.
    spent = copy.copy(error)
    spent.reason = f"retries_exhausted:{error.reason}"
    return spent
