"""A worker process's coalescer with real threads, the sandbox org and a SQLite ledger: orders
that wait together share calls, each thread gets its own order's outcome, in-flight Salesforce
calls stay under MAGSYNC_SALESFORCE_CONCURRENCY, and an order that gives up waiting is never
written half known."""

import copy
import threading
import time

import pytest

from magsync.errors import DeadLetter, InvalidOrder, RetryLater
from magsync.ledger import LockName
from magsync.settings import Settings
from magsync.sync.coalescer import Coalescer, sync_coalesced
from magsync.sync.services import Services
from tests.helpers import load_fixture, wait_for

SEED = load_fixture("seed_webhook.json")["order"]


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def make(org, tmp_path):
    """``(services, coalescer)`` with the given settings; closed after the test."""
    built = []

    def build(**env):
        values = {"DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}", **org.settings()}
        settings = Settings.from_env({**values, **{k: str(v) for k, v in env.items()}})
        services = Services.build(settings)
        coalescer = Coalescer(services, settings)
        built.append((services, coalescer))
        return services, coalescer

    yield build
    for services, coalescer in built:
        coalescer.close()
        services.close()


def event(number, **changes):
    document = copy.deepcopy(SEED)
    document.update(increment_id=number, entity_id=int(number), customer_email=f"b{number}@x.org")
    document.update(changes)
    return {"entity_id": document["entity_id"], "increment_id": number, "order": document}


def run_all(events, services, coalescer):
    """Sync each event on a thread of its own, as a thread pool's tasks do; their outcomes."""
    outcomes = [None] * len(events)

    def run(index):
        try:
            outcomes[index] = sync_coalesced(events[index], services, coalescer)
        except Exception as exc:  # the outcome a task would meet
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(events))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcomes


def test_orders_waiting_together_share_calls_and_each_gets_its_own_outcome(org, make):
    # The batch goes when the 39 valid orders are in: no timing involved.
    services, coalescer = make(MAGSYNC_BATCH_SIZE=39, MAGSYNC_BATCH_LINGER_MS=60000)
    org.set_latency(100)
    events = [event(f"{300000000 + n}") for n in range(40)]
    events[7]["order"]["grand_total"] = "lots"  # fails its own task, before any batch
    outcomes = run_all(events, services, coalescer)
    assert [o["order"] for i, o in enumerate(outcomes) if i != 7] == [
        e["increment_id"] for i, e in enumerate(events) if i != 7
    ]
    assert isinstance(outcomes[7], InvalidOrder)
    stats = org.stats()
    # The 39 in one batch (lookup, buyers, Opportunities, roles); at most two calls at once.
    assert stats["calls_by_kind"] == {"query": 1, "composite": 2}
    assert stats["in_flight_peak"] <= 2
    assert {o["batch"] for i, o in enumerate(outcomes) if i != 7} == {39}


def test_a_full_batch_goes_without_lingering_and_batches_stay_under_the_size(org, make):
    services, coalescer = make(MAGSYNC_BATCH_SIZE=10, MAGSYNC_BATCH_LINGER_MS=60000)
    outcomes = run_all([event(f"{300000000 + n}") for n in range(30)], services, coalescer)
    assert sorted(o["batch"] for o in outcomes) == [10] * 30
    assert org.stats()["calls_by_kind"] == {"query": 3, "composite": 6}


def test_orders_arriving_while_a_batch_is_written_go_together_after_it(org, make):
    services, coalescer = make(MAGSYNC_BATCH_LINGER_MS=10)
    org.set_latency(300)  # the first order's write takes two calls: 0.6 s
    first = threading.Thread(target=sync_coalesced, args=(event("300000000"), services, coalescer))
    first.start()
    wait_for(lambda: org.stats()["in_flight"] > 0, 10, "the first batch in flight")
    # Ten orders trickle in meanwhile, 30 ms apart: far more than the linger between them.
    events = [event(f"{300000001 + n}") for n in range(10)]
    outcomes = [None] * 10
    threads = []
    for index in range(10):

        def run(i=index):
            outcomes[i] = sync_coalesced(events[i], services, coalescer)

        threads.append(threading.Thread(target=run))
        threads[-1].start()
        time.sleep(0.03)
    for thread in [first, *threads]:
        thread.join(30)
    assert [o["batch"] for o in outcomes] == [10] * 10


def test_what_full_batches_leave_goes_on_an_idle_flusher_while_they_are_written(org, make):
    # Three flushers, idle after a first order; five orders at once, batches of two: the fifth
    # waits behind the two full batches no longer than BEHIND_LIMIT (1 s), far less than their
    # three calls of a second each, so three calls are in flight together.
    services, coalescer = make(
        MAGSYNC_BATCH_SIZE=2, MAGSYNC_BATCH_LINGER_MS=10, MAGSYNC_SALESFORCE_CONCURRENCY=3
    )
    run_all([event("300000000")], services, coalescer)
    org.set_latency(1000)
    org.reset_stats()
    outcomes = run_all([event(f"{300000001 + n}") for n in range(5)], services, coalescer)
    assert sorted(o.get("batch", 1) for o in outcomes) == [1, 2, 2, 2, 2], outcomes
    assert org.stats()["in_flight_peak"] == 3


def test_salesforce_calls_in_flight_stay_under_the_concurrency(org, make):
    services, coalescer = make(
        MAGSYNC_BATCH_SIZE=5, MAGSYNC_BATCH_LINGER_MS=0, MAGSYNC_SALESFORCE_CONCURRENCY=1
    )
    org.set_latency(50)
    outcomes = run_all([event(f"{300000000 + n}") for n in range(20)], services, coalescer)
    assert all(isinstance(o, dict) for o in outcomes), outcomes
    assert org.stats()["in_flight_peak"] == 1


def test_an_order_whose_batch_never_started_is_never_written(org, make):
    services, coalescer = make(MAGSYNC_BATCH_LINGER_MS=3000, MAGSYNC_BATCH_TIMEOUT=0.5)
    with pytest.raises(RetryLater) as info:
        sync_coalesced(event("300000001"), services, coalescer)
    assert info.value.reason == "batch_timeout"
    # The next order lingers as long, then goes alone (one order's path, no batch): the one
    # that gave up is not in it, nor anywhere.
    coalescer.timeout = 30
    outcome = sync_coalesced(event("300000002"), services, coalescer)
    assert outcome["sf_created"] and "batch" not in outcome
    assert [r["Magento_Order_ID__c"] for r in org.records("Opportunity")] == ["300000002"]
    assert services.ledger.order("300000001") is None


def test_an_order_that_gives_up_mid_batch_is_recorded_by_its_batch(org, make):
    services, coalescer = make(MAGSYNC_BATCH_LINGER_MS=0, MAGSYNC_BATCH_TIMEOUT=1)
    org.set_latency(1500)
    with pytest.raises(RetryLater) as info:
        sync_coalesced(event("300000001"), services, coalescer)
    assert info.value.reason == "batch_timeout"
    # The batch goes on and records what Salesforce confirmed; the retry finds it applied.
    wait_for(
        lambda: getattr(services.ledger.order("300000001"), "status", None) == "synced",
        timeout=30,
        what="the batch to record the order",
    )
    org.set_latency(0)
    assert sync_coalesced(event("300000001"), services, coalescer)["skipped"] == "unchanged"
    assert len(org.records("Opportunity")) == 1


def test_an_order_busy_in_another_worker_makes_its_batch_wait_not_fail(org, make, tmp_path):
    services, coalescer = make(MAGSYNC_BATCH_LINGER_MS=0)
    other = Services.build(services.settings)  # another process, holding the order's lock
    try:
        held = threading.Event()
        release = threading.Event()

        def hold():
            with other.ledger.locks() as locks:
                locks.acquire_many([LockName("order", "300000002")])
                held.set()
                release.wait(30)

        holder = threading.Thread(target=hold)
        holder.start()
        held.wait(10)
        timer = threading.Timer(1.0, release.set)
        timer.start()
        outcomes = run_all([event("300000001"), event("300000002")], services, coalescer)
        holder.join(10)
        assert [o["sf_created"] for o in outcomes] == [True, True]
    finally:
        other.close()


def test_above_the_api_budget_a_lone_order_lingers_longer_for_company(org, make):
    services, _ = make(MAGSYNC_BATCH_SIZE=200, MAGSYNC_BATCH_LINGER_MS=200)
    factor = [1.0]
    coalescer = Coalescer(services, services.settings, linger_factor=lambda: factor[0])

    def pair(first, second):
        """Sync ``first``, and ``second`` 0.45 s later (past the linger, within four times it)."""
        outcomes = {}

        def late():
            time.sleep(0.45)
            outcomes["second"] = sync_coalesced(second, services, coalescer)

        thread = threading.Thread(target=late)
        thread.start()
        outcomes["first"] = sync_coalesced(first, services, coalescer)
        thread.join(30)
        return outcomes["first"].get("batch"), outcomes["second"].get("batch")

    try:
        events = [event(f"{330000000 + n}") for n in range(5)]
        sync_coalesced(events[4], services, coalescer)  # the ledger made, the session opened
        assert pair(events[0], events[1]) == (None, None)  # under budget: each went alone
        factor[0] = 4.0  # above the budget (``pacing.linger_for``)
        assert pair(events[2], events[3]) == (2, 2)  # the first waited for the second
    finally:
        coalescer.close()


def test_a_batch_reads_its_orders_from_the_store_in_one_request(org, tmp_path):
    from magsync.sandbox.magento import SandboxStore

    with SandboxStore(seed=29) as store:
        values = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'read-ledger.db'}",
            **org.settings(),
            **store.settings(),
            "MAGSYNC_BATCH_SIZE": "7",
            "MAGSYNC_BATCH_LINGER_MS": "60000",  # the batch goes when all seven are in
        }
        settings = Settings.from_env(values)
        services = Services.build(settings)
        coalescer = Coalescer(services, settings)
        try:
            orders = [store.place_order() for _ in range(6)]
            for placed in orders[:3]:
                store.invoice(placed["entity_id"])  # the webhooks' payloads are now old
            events = [
                {"entity_id": o["entity_id"], "increment_id": o["increment_id"], "order": o}
                for o in orders
            ]
            events.append({"entity_id": 987654, "increment_id": "000987654"})
            seen = len(store.requests())
            outcomes = run_all(events, services, coalescer)
            reads = store.requests(seen)
        finally:
            coalescer.close()
            services.close()
    assert [(r["method"], r["path"]) for r in reads] == [("GET", "/rest/V1/orders")]
    assert "condition_type%5D=in" in reads[0]["query"] or "condition_type]=in" in reads[0]["query"]
    assert [o["state"] for o in outcomes[:6]] == ["processing"] * 3 + ["new"] * 3
    assert all(o["source"] == "rest" for o in outcomes[:6])
    assert isinstance(outcomes[6], DeadLetter) and outcomes[6].reason == "magento_order_not_found"
    numbers = {r["Magento_Order_ID__c"] for r in org.records("Opportunity")}
    assert {o["increment_id"] for o in orders} <= numbers and "000987654" not in numbers
