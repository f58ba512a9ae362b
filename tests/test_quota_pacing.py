"""Quota-aware pacing: what the org's daily API usage allows, decided as a table, shared between
processes through the ledger (SQLite and PostgreSQL), and driven by the sandbox org's answers."""

import logging

import pytest

from magsync.ledger import Ledger
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.pacing import ApiUsage, Pacer
from magsync.salesforce.rest import RestClient, build_session
from magsync.settings import ConfigError, Settings
from magsync.sync import pacing
from magsync.sync.pacing import BUSY_LINGER_FACTOR, LOG_INTERVAL, QuotaPacing, decide, linger_for

BUDGET, HALT = 0.8, 0.95


class Clock:
    def __init__(self, now=1_700_000_000.0):
        self.now = now

    def __call__(self):
        return self.now


# -- the decision ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fraction", "live", "backfill", "reconcile", "linger"),
    [
        (None, True, True, True, 1.0),  # nothing known yet
        (0.0, True, True, True, 1.0),
        (0.7999, True, True, True, 1.0),
        (0.8, True, False, False, BUSY_LINGER_FACTOR),  # at the budget
        (0.9, True, False, False, BUSY_LINGER_FACTOR),
        (0.9499, True, False, False, BUSY_LINGER_FACTOR),
        (0.95, False, False, False, BUSY_LINGER_FACTOR),  # at the halt threshold
        (1.0, False, False, False, BUSY_LINGER_FACTOR),
        (1.2, False, False, False, BUSY_LINGER_FACTOR),  # past the allowance
    ],
)
def test_what_each_kind_of_work_may_do_at_each_usage(fraction, live, backfill, reconcile, linger):
    assert decide("live", fraction, BUDGET, HALT) is live
    assert decide("backfill", fraction, BUDGET, HALT) is backfill
    assert decide("reconcile", fraction, BUDGET, HALT) is reconcile
    assert linger_for(fraction, BUDGET) == linger


def test_an_unknown_kind_of_work_is_refused():
    with pytest.raises(ValueError, match="unknown kind of work 'bulk'"):
        decide("bulk", 0.1, BUDGET, HALT)
    with pytest.raises(ValueError):
        pacing.allow("bulk")


def test_without_pacing_installed_everything_runs_at_the_usual_linger():
    pacing.install(None)
    assert pacing.allow("backfill") is True
    assert pacing.wait_time("live") == 0
    assert pacing.linger_factor() == 1.0


@pytest.mark.parametrize(
    ("env", "budget", "halt"),
    [({}, 0.8, 0.95), ({"MAGSYNC_API_BUDGET": "70%", "MAGSYNC_API_HALT": "0.9"}, 0.7, 0.9)],
)
def test_the_thresholds_are_settings(env, budget, halt):
    settings = Settings.from_env(env)
    assert (settings.api_budget, settings.api_halt) == (budget, halt)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"MAGSYNC_API_BUDGET": "0"}, "MAGSYNC_API_BUDGET must be a fraction"),
        ({"MAGSYNC_API_BUDGET": "1.5"}, "MAGSYNC_API_BUDGET must be a fraction"),
        ({"MAGSYNC_API_HALT": "lots"}, "MAGSYNC_API_HALT"),
        ({"MAGSYNC_API_BUDGET": "0.9", "MAGSYNC_API_HALT": "0.85"}, "must be at least"),
        ({"MAGSYNC_API_PROBE_INTERVAL": "0"}, "MAGSYNC_API_PROBE_INTERVAL"),
    ],
)
def test_thresholds_that_make_no_sense_are_refused(env, message):
    with pytest.raises(ConfigError, match=message):
        Settings.from_env(env)


# -- one process, its own figures --------------------------------------------------------------


class BrokenLedger:
    def ready(self):
        raise RuntimeError("no database")


def quota(ledger, clock, alerts=None, probe=None, **env):
    settings = Settings.from_env({k: str(v) for k, v in env.items()})
    sent = alerts if alerts is not None else []
    return QuotaPacing(
        settings,
        ledger,
        probe=probe,
        clock=clock,
        alert=lambda used, limit, halt: sent.append((used, limit)),
    )


def test_without_a_ledger_a_process_decides_on_what_it_saw_itself():
    clock = Clock()
    view = quota(BrokenLedger(), clock)
    assert view.allow("backfill")
    view.observe(ApiUsage(850, 1000))
    assert not view.allow("backfill")
    assert view.allow("live")
    assert view.linger_factor() == BUSY_LINGER_FACTOR
    view.observe(ApiUsage(960, 1000))
    assert view.wait_time("live") == 60


def test_the_usage_is_logged_once_a_minute_while_above_budget(caplog):
    clock = Clock()
    view = quota(BrokenLedger(), clock)
    with caplog.at_level(logging.WARNING, logger="magsync.sync.pacing"):
        view.observe(ApiUsage(100, 1000))
        for _ in range(10):  # ten answers above budget within a minute
            view.observe(ApiUsage(850, 1000))
            view.allow("backfill")
            clock.now += 5
        clock.now += LOG_INTERVAL
        view.observe(ApiUsage(960, 1000))
    lines = [r for r in caplog.records if r.getMessage() == "salesforce api usage above budget"]
    assert [(r.api_used, r.paused) for r in lines] == [
        (850, "backfill, reconcile"),
        (960, "backfill, reconcile, live"),
    ]
    assert lines[0].budget == 0.8 and lines[0].halt == 0.95 and lines[0].usage == 0.85


# -- several processes, one ledger -------------------------------------------------------------


@pytest.fixture
def ledger(database_url):
    from magsync.ledger import migrate

    shared = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(shared.engine)
    yield shared
    shared.close()


def second(ledger):
    """Another process's connection to the same database."""
    return Ledger(ledger.settings)


def test_a_process_that_made_no_call_decides_on_the_figure_another_shared(ledger):
    clock = Clock()
    other_ledger = second(ledger)
    try:
        busy, idle = quota(ledger, clock), quota(other_ledger, clock)
        assert idle.allow("backfill") and idle.linger_factor() == 1.0
        busy.observe(ApiUsage(850, 1000))
        clock.now += 10  # past the idle process's read interval
        assert idle.view().used == 850
        assert not idle.allow("backfill") and not idle.allow("reconcile")
        assert idle.allow("live")
        assert idle.linger_factor() == BUSY_LINGER_FACTOR
        busy.observe(ApiUsage(120, 1000))  # usage fell: a new zone is shared at once
        clock.now += 10
        assert idle.allow("backfill")
    finally:
        other_ledger.close()


def test_an_older_figure_never_replaces_a_newer_one(ledger):
    early, late = Clock(1_700_000_000.0), Clock(1_700_000_100.0)
    quota(ledger, late).observe(ApiUsage(900, 1000))
    quota(ledger, early).observe(ApiUsage(10, 1000))  # seen before the 900, shared after
    assert ledger.api_usage().used == 900


def test_each_halt_is_reported_once_for_all_processes(ledger):
    clock, alerts = Clock(), []
    other_ledger = second(ledger)
    try:
        a, b = quota(ledger, clock, alerts), quota(other_ledger, clock, alerts)
        a.observe(ApiUsage(940, 1000))
        a.observe(ApiUsage(960, 1000))  # the episode starts
        clock.now += 1
        b.observe(ApiUsage(965, 1000))
        clock.now += 10
        a.observe(ApiUsage(980, 1000))
        b.observe(ApiUsage(990, 1000))
        assert alerts == [(960, 1000)]
        assert ledger.api_usage().halted_since is not None
        clock.now += 1
        b.observe(ApiUsage(100, 1000))  # the episode ends
        assert ledger.api_usage().halted_since is None
        clock.now += 6  # a process shares a figure of its last zone at most every 5 s
        a.observe(ApiUsage(970, 1000))  # a new one starts
        assert alerts == [(960, 1000), (970, 1000)]
    finally:
        other_ledger.close()


def test_while_paused_one_caller_of_all_processes_reads_the_usage_again(ledger):
    clock, probes = Clock(), []
    other_ledger = second(ledger)
    try:
        a = quota(ledger, clock, probe=lambda: probes.append("a"), MAGSYNC_API_PROBE_INTERVAL=30)
        b = quota(
            other_ledger, clock, probe=lambda: probes.append("b"), MAGSYNC_API_PROBE_INTERVAL=30
        )
        a.observe(ApiUsage(960, 1000))
        clock.now += 29  # a fresh figure: nobody probes
        assert not a.allow("live") and not b.allow("live")
        clock.now += 2
        # Stale: the first caller probes; its probe got no answer, so it goes itself.
        assert b.allow("live") is True
        assert not a.allow("live") and not a.allow("backfill")
        assert probes == ["b"]
    finally:
        other_ledger.close()


def test_a_probe_whose_answer_shows_usage_fell_lets_work_resume(ledger):
    clock = Clock()
    answers = iter([ApiUsage(970, 1000), ApiUsage(300, 1000)])
    view = quota(ledger, clock, probe=lambda: view.observe(next(answers)))
    view.observe(ApiUsage(960, 1000))
    clock.now += 61
    assert not view.allow("live")  # the probe's answer: still past the halt threshold
    assert view.wait_time("live") == 60
    clock.now += 61
    assert view.allow("backfill")  # the probe's answer: 30 %
    assert ledger.api_usage().used == 300
    assert ledger.api_usage().halted_since is None


# -- driven by the sandbox org's answers -------------------------------------------------------


def test_pacing_pauses_backfill_above_budget_and_resumes_below(org_factory, ledger):
    """The figures come from real answers' ``Sforce-Limit-Info``; a second process that makes no
    call decides the same through the ledger."""
    org = org_factory()
    settings = Settings.from_env(org.settings())
    session = build_session(settings)
    pacer, clock = Pacer(), Clock()
    caller = quota(ledger, clock)
    pacer.listen(caller.observe)
    rest = RestClient(settings, TokenProvider(settings, session), session, pacer=pacer)
    other_ledger = second(ledger)
    bystander = quota(other_ledger, clock)
    try:

        def answer_at(usage):
            org.set_limits(daily_limit=10_000, api_usage=usage)
            rest.call("GET", rest.data_path("sobjects/Opportunity/describe"))
            clock.now += 10  # past the bystander's read interval

        answer_at(1_000)
        assert caller.allow("backfill") and bystander.allow("backfill")
        answer_at(8_500)  # the answer reports 8,501 of 10,000
        assert pacer.latest == ApiUsage(8_501, 10_000)
        for view in (caller, bystander):
            assert not view.allow("backfill") and not view.allow("reconcile")
            assert view.allow("live") and view.linger_factor() == BUSY_LINGER_FACTOR
        answer_at(9_600)
        assert not caller.allow("live") and not bystander.allow("live")
        answer_at(2_000)
        for view in (caller, bystander):
            assert view.allow("backfill") and view.allow("live") and view.linger_factor() == 1.0
    finally:
        other_ledger.close()
