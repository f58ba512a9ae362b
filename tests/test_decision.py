"""The worker's retry/dead-letter decision, as a table: no broker, no worker, no clock."""

import pytest
from celery.exceptions import SoftTimeLimitExceeded

from magsync.errors import DeadLetter, InvalidOrder, RetryLater, Throttled
from magsync.ledger.store import LedgerUnavailable
from magsync.settings import ConfigError
from magsync.worker.decision import UnexpectedError, backoff, decide

NOW = 1_700_000_000.0
HOUR = 3600.0


@pytest.fixture
def settings(make_settings):
    # Two hours of retries, delays from 2 s doubling up to 600 s (the defaults, spelled out).
    return make_settings(
        MAGSYNC_RETRY_FOR=2 * HOUR, MAGSYNC_RETRY_BACKOFF=2, MAGSYNC_RETRY_BACKOFF_MAX=600
    )


def highest(error, attempts, first_failed_at, settings):
    """The decision with the most jitter (the cap)."""
    return decide(error, attempts, first_failed_at, NOW, settings, rng=lambda: 0.999999)


def unavailable():
    return RetryLater("Salesforce 503", reason="http_503", status=503)


@pytest.mark.parametrize(
    ("error", "attempts", "first_failed_at", "retry", "reason", "countdown"),
    [
        # The first failure: retried, jitter under 2 s.
        (unavailable(), 0, None, True, "http_503", 2),
        # The fourth: the cap doubled three times, 16 s.
        (unavailable(), 3, NOW - 60, True, "http_503", 16),
        # Never longer than MAGSYNC_RETRY_BACKOFF_MAX.
        (unavailable(), 30, NOW - HOUR, True, "http_503", 600),
        # Just inside the window: still retried.
        (unavailable(), 40, NOW - 2 * HOUR + 1, True, "http_503", 600),
        # Past MAGSYNC_RETRY_FOR since the first failure: dead-lettered, saying why.
        (unavailable(), 41, NOW - 2 * HOUR, False, "retries_exhausted:http_503", 0),
        # A server's Retry-After is honoured over a shorter backoff.
        (Throttled("429", retry_after=30, status=429), 0, None, True, "throttled", 30),
        (Throttled("429", retry_after=30, status=429), 5, NOW - HOUR, True, "throttled", 64),
        (LedgerUnavailable("locked"), 0, None, True, "ledger_unavailable", 2),
        # Permanent: dead-lettered at once, whatever the budget left.
        (
            DeadLetter("400", reason="REQUIRED_FIELD_MISSING"),
            0,
            None,
            False,
            "REQUIRED_FIELD_MISSING",
            0,
        ),
        (InvalidOrder("grand_total"), 2, NOW - 10, False, "invalid_order", 0),
        # An error magsync does not know: dead-lettered at once for a person to look at.
        (KeyError("entity_id"), 0, None, False, "unexpected_error", 0),
        # The soft time limit cut the sync short: retried.
        (SoftTimeLimitExceeded(), 0, None, True, "soft_time_limit", 2),
        # Settings the worker cannot build its clients from: retried while an operator fixes
        # them, dead-lettered once the window has passed.
        (
            ConfigError("SALESFORCE_PRIVATE_KEY_PATH cannot be read"),
            0,
            None,
            True,
            "config_error",
            2,
        ),
        (
            ConfigError("SALESFORCE_PRIVATE_KEY_PATH cannot be read"),
            60,
            NOW - 3 * HOUR,
            False,
            "retries_exhausted:config_error",
            0,
        ),
    ],
)
def test_decision(settings, error, attempts, first_failed_at, retry, reason, countdown):
    decision = highest(error, attempts, first_failed_at, settings)
    assert decision.retry is retry
    assert decision.reason == reason
    assert decision.countdown == countdown
    assert decision.attempts == attempts + 1
    assert decision.first_failed_at == (NOW if first_failed_at is None else first_failed_at)


def test_jitter_is_full_from_one_second_up_to_the_cap(settings):
    error = unavailable()
    lowest = decide(error, 3, NOW - 60, NOW, settings, rng=lambda: 0.0)
    middle = decide(error, 3, NOW - 60, NOW, settings, rng=lambda: 0.5)
    assert (lowest.countdown, middle.countdown) == (1, 8)


def test_retry_after_is_a_floor_under_the_jitter(settings):
    error = Throttled("429", retry_after=4.2, status=429)
    assert decide(error, 0, None, NOW, settings, rng=lambda: 0.0).countdown == 5


def test_an_unexpected_error_keeps_its_type_and_message(settings):
    error = decide(KeyError("entity_id"), 0, None, NOW, settings).error
    assert isinstance(error, UnexpectedError)
    assert error.system == "magsync"
    assert str(error) == "KeyError: 'entity_id'"


def test_a_config_error_says_what_to_fix(settings):
    error = decide(
        ConfigError("missing required settings: SALESFORCE_USERNAME"), 0, None, NOW, settings
    ).error
    assert isinstance(error, RetryLater)
    assert error.system == "magsync"
    assert "SALESFORCE_USERNAME" in str(error)


def test_exhausted_retries_keep_the_failure_and_leave_it_unchanged(settings):
    error = Throttled(
        "Salesforce 403",
        retry_after=5,
        status=403,
        errors=[{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "m", "fields": []}],
    )
    decision = decide(error, 9, NOW - 3 * HOUR, NOW, settings)
    assert not decision.retry
    assert isinstance(decision.error, Throttled)
    assert decision.error.describe() == {
        **error.describe(),
        "reason": "retries_exhausted:throttled",
    }
    assert error.reason == "throttled"  # the decision is a pure function of its inputs


def test_backoff_grows_from_the_base_and_stops_at_the_max(settings):
    caps = [backoff(n, settings, rng=lambda: 1.0) for n in range(1, 12)]
    assert caps == [2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600]
