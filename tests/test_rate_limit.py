"""The pace of Salesforce calls: the token bucket (with a fake clock), the rate shared with forked
pool processes, and every data API request of ``RestClient`` waiting on it against the sandbox
org."""

import logging
import multiprocessing
import threading

import pytest

from magsync.errors import RetryLater
from magsync.salesforce import pacing
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.pacing import ApiUsage, Pacer, SharedRate, TokenBucket, calls_per_second
from magsync.salesforce.rest import RestClient, build_session
from magsync.settings import Settings


class FakeClock:
    """A clock that moves only when someone sleeps on it (or the test moves it)."""

    def __init__(self):
        self.now = 1000.0
        self.slept = []
        self._lock = threading.Lock()

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        with self._lock:
            self.slept.append(seconds)
            self.now += seconds


def bucket(rate, burst=None, clock=None):
    clock = clock or FakeClock()
    return TokenBucket(rate, burst, clock=clock, sleep=clock.sleep), clock


# -- rates -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rate", "per_second"),
    [("20/s", 20.0), ("600/m", 10.0), ("7200/h", 2.0), ("5", 5.0), (" 1.5/s ", 1.5)],
)
def test_rates_are_read_as_calls_per_second(rate, per_second):
    assert calls_per_second(rate) == pytest.approx(per_second)


@pytest.mark.parametrize("rate", ["0/s", "0", "fast", "-1/s", "5/d", "", "1/s/s"])
def test_a_rate_that_is_not_one_is_refused(rate):
    with pytest.raises(ValueError, match=r"20/s|more than 0"):
        calls_per_second(rate)


@pytest.mark.parametrize("raw", ["0/s", "0"])
def test_the_setting_refuses_a_zero_rate(raw):
    with pytest.raises(Exception, match="SALESFORCE_RATE_LIMIT must be more than 0"):
        Settings.from_env({"SALESFORCE_RATE_LIMIT": raw})


# -- the bucket --------------------------------------------------------------------------------


def test_a_full_bucket_lets_its_burst_through_then_spaces_calls_at_the_rate():
    limiter, clock = bucket(rate=4)  # burst: one second of calls
    assert limiter.burst == 4
    waits = [limiter.acquire() for _ in range(7)]
    assert waits[:4] == [0, 0, 0, 0]
    assert waits[4:] == pytest.approx([0.25, 0.25, 0.25])
    assert clock.now == pytest.approx(1000.75)


@pytest.mark.parametrize(("rate", "burst", "calls"), [(1, None, 10), (20, None, 100), (2, 5, 30)])
def test_no_stretch_of_time_gets_more_than_burst_plus_rate_times_its_length(rate, burst, calls):
    limiter, clock = bucket(rate, burst)
    granted = []
    for _ in range(calls):
        limiter.acquire()
        granted.append(clock.now)
    for i, start in enumerate(granted):
        for j in range(i, len(granted)):
            assert j - i + 1 <= limiter.burst + rate * (granted[j] - start) + 1e-9


def test_an_idle_bucket_refills_up_to_its_burst_only():
    limiter, clock = bucket(rate=2, burst=3)
    for _ in range(3):
        limiter.acquire()
    clock.now += 3600  # an idle hour saves up no more than the burst
    assert [limiter.acquire() for _ in range(4)] == pytest.approx([0, 0, 0, 0.5])


def test_a_wait_beyond_max_wait_takes_no_token_and_does_not_sleep():
    limiter, clock = bucket(rate=1)
    assert limiter.acquire(max_wait=0) == 0
    assert limiter.acquire(max_wait=0.5) is None
    assert clock.slept == []
    assert limiter.acquire(max_wait=1) == pytest.approx(1)  # the refused call took nothing


def test_concurrent_callers_queue_for_distinct_turns():
    clock = FakeClock()
    frozen = TokenBucket(10, burst=2, clock=clock, sleep=lambda seconds: None)  # time stands
    waits = []
    barrier = threading.Barrier(8)

    def call():
        barrier.wait()
        wait = frozen.acquire()
        with clock._lock:
            waits.append(wait)

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(waits) == pytest.approx([0, 0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6])


def test_a_new_rate_applies_to_the_next_call_and_drops_saved_tokens_beyond_its_burst():
    limiter, _ = bucket(rate=10)
    limiter.set_rate(1)
    assert (limiter.rate, limiter.burst) == (1, 1)
    assert [limiter.acquire() for _ in range(3)] == pytest.approx([0, 1, 1])
    limiter.set_rate(4)
    assert [limiter.acquire() for _ in range(2)] == pytest.approx([0.25, 0.25])


@pytest.mark.parametrize(("rate", "burst"), [(0, None), (-1, None), (float("inf"), None), (1, 0.5)])
def test_a_bucket_refuses_a_rate_or_burst_it_cannot_keep(rate, burst):
    with pytest.raises(ValueError):
        TokenBucket(rate, burst)


# -- the pacer ---------------------------------------------------------------------------------


def test_the_pacer_refuses_a_call_whose_turn_is_too_far_off_without_sending_it():
    limiter, clock = bucket(rate=0.1)
    pacer = Pacer(limiter, max_wait=5)
    pacer.before_call()
    with pytest.raises(RetryLater) as info:
        pacer.before_call()
    assert info.value.reason == "rate_limited"
    assert info.value.system == "magsync"  # not a Salesforce failure: the breaker ignores it
    assert info.value.retry_after == 10
    assert clock.slept == []


def test_the_pacer_follows_the_shared_rate_and_says_so(caplog):
    shared = SharedRate(10)
    limiter, clock = bucket(rate=10)
    pacer = Pacer(limiter, shared)
    shared.set(2)
    with caplog.at_level(logging.INFO, logger="magsync.salesforce.pacing"):
        for _ in range(3):
            pacer.before_call()
    assert limiter.rate == 2
    assert clock.slept == pytest.approx([0.5])  # burst 2 (one second at 2/s), then 2 a second
    changed = [r for r in caplog.records if r.getMessage() == "salesforce call rate changed"]
    assert len(changed) == 1 and changed[0].calls_per_second == 2


def _wait_for_rate(shared, rate, seen):
    import time

    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if shared.get() == rate:
            seen.value = 1
            return
        time.sleep(0.01)


def test_a_forked_child_reads_the_rate_its_parent_sets_after_the_fork():
    shared = SharedRate(20)
    seen = multiprocessing.get_context("fork").Value("i", 0)
    child = multiprocessing.get_context("fork").Process(
        target=_wait_for_rate, args=(shared, 3.0, seen)
    )
    child.start()
    try:
        shared.set(3)
        child.join(40)
    finally:
        if child.is_alive():
            child.kill()
    assert seen.value == 1


def test_the_pacer_keeps_the_usage_answers_report_and_tells_its_listeners():
    pacer = Pacer()
    heard = []
    pacer.listen(heard.append)
    pacer.listen(lambda usage: 1 / 0)  # a broken listener does not break the call
    pacer.observed("api-usage=18/100000; api-bursts=1/750")
    pacer.observed("per-app-api-usage=1/100(appName=magsync)")  # no org usage in it
    pacer.observed("per-app-api-usage=2/100(appName=magsync); api-usage=19/100000")
    assert heard == [ApiUsage(18, 100000), ApiUsage(19, 100000)]
    assert pacer.latest == ApiUsage(19, 100000)
    assert pacer.latest.fraction == pytest.approx(0.00019)


def test_without_an_installed_pacer_a_process_paces_nothing():
    pacer = pacing.process_pacer()
    assert pacer.bucket is None
    assert pacing.process_pacer() is pacer


# -- every Salesforce request waits its turn ---------------------------------------------------


class CountingBucket(TokenBucket):
    def __init__(self):
        super().__init__(1000)
        self.taken = 0

    def acquire(self, max_wait=None):
        self.taken += 1
        return super().acquire(max_wait)


def test_every_data_api_request_waits_on_the_bucket_and_reports_the_usage(org_factory):
    org = org_factory()
    org.set_limits(daily_limit=1000, api_usage=100)
    settings = Settings.from_env(org.settings())
    session = build_session(settings)
    limiter = CountingBucket()
    pacer = Pacer(limiter)
    rest = RestClient(settings, TokenProvider(settings, session), session, pacer=pacer)
    rest.call("GET", rest.data_path("sobjects/Account/describe"))
    rest.call("GET", rest.data_path("limits"))
    org.expire_tokens()  # the repeated request after a refresh is a request too; the token's not
    rest.call("GET", rest.data_path("sobjects/Opportunity/describe"))
    stats = org.stats()
    assert stats["token_requests_total"] == 2
    data_requests = sum(stats["responses"].values()) - stats["token_requests_total"]
    assert limiter.taken == 4 == data_requests
    assert pacer.latest == ApiUsage(stats["api_usage"], 1000)


def test_a_request_refused_by_the_bucket_is_never_sent(org_factory):
    org = org_factory()
    settings = Settings.from_env(org.settings())
    session = build_session(settings)
    limiter, _ = bucket(rate=0.01)
    rest = RestClient(
        settings, TokenProvider(settings, session), session, pacer=Pacer(limiter, max_wait=1)
    )
    rest.call("GET", rest.data_path("limits"))
    with pytest.raises(RetryLater, match=r"limited to 0\.01 a second"):
        rest.call("GET", rest.data_path("limits"))
    assert org.stats()["api_calls"] == 1
    assert rest.calls == 1
