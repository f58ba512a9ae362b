import logging

import pytest

from magsync.worker.circuit import CLOSED, HALF_OPEN, OPEN, CircuitBreaker
from tests.helpers import Clock


@pytest.fixture
def clock():
    return Clock()


def test_opens_after_threshold_failures_in_a_row(clock):
    breaker = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    breaker.failure()
    breaker.failure()
    breaker.success()  # a success in between resets the count
    breaker.failure()
    breaker.failure()
    assert breaker.state == CLOSED and breaker.wait_time() == 0
    breaker.failure()
    assert breaker.state == OPEN
    assert breaker.wait_time() == pytest.approx(30)
    clock.now += 10
    assert breaker.wait_time() == pytest.approx(20)


def test_one_probe_after_the_cooldown_then_close_on_success(clock, caplog):
    caplog.set_level(logging.INFO, logger="magsync.worker.circuit")
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.failure()
    clock.now += 30
    assert breaker.wait_time() == 0  # the probe goes
    assert breaker.state == HALF_OPEN
    assert breaker.wait_time() > 0  # others wait for its verdict
    breaker.success()
    assert breaker.state == CLOSED and breaker.wait_time() == 0
    messages = [r.getMessage() for r in caplog.records]
    assert messages == [
        "salesforce circuit open",
        "salesforce circuit half-open",
        "salesforce circuit closed",
    ]


def test_a_failed_probe_opens_it_again(clock):
    breaker = CircuitBreaker(threshold=5, cooldown=30, clock=clock)
    for _ in range(5):
        breaker.failure()
    clock.now += 31
    assert breaker.wait_time() == 0
    breaker.failure()
    assert breaker.state == OPEN
    assert breaker.wait_time() == pytest.approx(30)


def test_a_probe_that_never_called_salesforce_lets_the_next_one_go(clock):
    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=clock)
    breaker.failure()
    clock.now += 30
    assert breaker.wait_time() == 0
    breaker.release()
    assert breaker.state == HALF_OPEN
    assert breaker.wait_time() == 0
