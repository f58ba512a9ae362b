"""Coalescing workers end to end: real ``magsync worker`` processes (Celery's thread pool) on
RabbitMQ, the sandbox org over HTTPS, SQLite and PostgreSQL ledgers.

A batch with a rejected record syncs the others and dead-letters that one; two events of one
order in a batch apply the newest and record the other as superseded; a worker SIGKILLed in the
middle of a batch loses and duplicates nothing; 500 waiting orders hold a bounded number of
ledger locks and connections; a burst costs at most 0.03 API calls per order; and shuffled,
duplicated versions of 200 orders end as their newest, as without coalescing.
"""

import contextlib
import copy
import random
import time
import uuid

import psycopg
import pytest

from magsync.ledger import Ledger, migrate
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.messaging.app import create_celery
from magsync.messaging.broker import Publisher
from magsync.messaging.dead_letters import DeadLetters
from magsync.settings import Settings
from tests import processes
from tests.helpers import approval_schema, load_fixture, queue_depth, wait_for
from tests.test_e2e_ordering import CHECKED, _json, event, order_versions

pytestmark = pytest.mark.slow

SEED = load_fixture("seed_webhook.json")["order"]


class Fleet:
    """Coalescing workers, a publisher, the org and the ledger of one test."""

    def __init__(self, org, rabbitmq_url, namespace, logs, database_url, **env):
        self.org = org
        self.logs = logs
        self.rabbitmq_url = rabbitmq_url
        self.namespace = namespace
        self.env = {
            **org.settings(),
            "CELERY_BROKER_URL": rabbitmq_url,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "DATABASE_URL": database_url,
            "SALESFORCE_RATE_LIMIT": "100000/s",
            "MAGSYNC_RETRY_BACKOFF": "1",
            "MAGSYNC_RETRY_BACKOFF_MAX": "2",
            "LOG_LEVEL": "INFO",
            **{k: str(v) for k, v in env.items()},
        }
        self.settings = Settings.from_env(self.env)
        self.celery = create_celery(self.settings)
        self.publisher = Publisher(self.celery, self.celery.magsync_topology, 10)
        self.dead = DeadLetters(self.celery, self.celery.magsync_topology)
        self.ledger = Ledger(self.settings)
        self.ledger.ready()  # a SQLite ledger is created now, before the test polls it
        self.workers = []

    def worker(self, name, threads):
        argv = [str(processes.BIN / "magsync"), "worker", "--concurrency", str(threads)]
        argv += ["--hostname", f"{name}-{uuid.uuid4().hex[:6]}@%h"]
        process = processes.Process(name, argv, self.env, self.logs / f"{name}.log")
        self.workers.append(process)
        process.wait_for_log(" ready.", timeout=90)
        return process

    def publish(self, document):
        self.publisher.publish(event(document), str(uuid.uuid4()))

    def queue_empty(self):
        return queue_depth(self.rabbitmq_url, f"{self.namespace}.orders") == 0

    def synced(self):
        return self.ledger.event_counts().get("synced", 0)

    def opportunities(self):
        found = {}
        for record in self.org.records("Opportunity"):
            found.setdefault(record["Magento_Order_ID__c"], []).append(record)
        return found

    def log(self):
        return "\n".join(worker.log() for worker in self.workers)

    def close(self):
        for worker in self.workers:
            worker.stop()
        self.publisher.close()
        self.ledger.close()


@contextlib.contextmanager
def database(backend, tmp_path, request):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    from tests.databases import postgres_database

    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        ledger = Ledger(Settings.from_env({"DATABASE_URL": url}))
        migrate.upgrade(ledger.engine)  # the release phase; SQLite workers migrate themselves
        ledger.close()
        yield url


@pytest.fixture
def fleet_factory(rabbitmq_url, broker_namespace, tmp_path, request):
    made = []
    with contextlib.ExitStack() as stack:

        def make(org, backend="sqlite", **env):
            url = stack.enter_context(database(backend, tmp_path / f"db{len(made)}", request))
            (tmp_path / f"db{len(made)}").mkdir(exist_ok=True)
            fleet = Fleet(org, rabbitmq_url, broker_namespace, tmp_path, url, **env)
            made.append(fleet)
            stack.callback(fleet.close)
            return fleet

        yield make


def order(number, buyer, updated="2023-10-26 10:00:00", **changes):
    document = copy.deepcopy(SEED)
    document.update(
        entity_id=int(number[:9]),
        increment_id=number,
        updated_at=updated,
        customer_email=f"buyer{buyer}@coalesced.example.com",
    )
    document.update(changes)
    return document


def approval_org(org_factory, **options):
    schema = approval_schema()
    return org_factory(schema=schema, **options)


# -- one order's failure is its own ---------------------------------------------------------------


def test_a_rejected_record_is_dead_lettered_alone_and_the_rest_of_its_batch_syncs(
    org_factory, fleet_factory
):
    org = approval_org(org_factory)
    # The batch goes when its twenty orders are in (the linger is long): one batch.
    fleet = fleet_factory(org, MAGSYNC_BATCH_SIZE=20, MAGSYNC_BATCH_LINGER_MS=20000)
    documents = [order(f"{400000001 + n}", n % 6) for n in range(20)]
    documents[13]["grand_total"] = 300000
    for document in documents:
        fleet.publish(document)
    worker = fleet.worker("w1", threads=40)
    rejected = documents[13]["increment_id"]

    [letter] = wait_for(lambda: [x for x in fleet.dead.browse() if x.order == rejected], 60)
    wait_for(lambda: len(fleet.opportunities()) == 19, 60, "the other nineteen")
    wait_for(fleet.queue_empty, 30, "the queue to drain")
    assert letter.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert letter.reason["attempts"] == 1
    assert len(fleet.dead.browse()) == 1
    assert rejected not in fleet.opportunities()
    # One batch: the buyers' lookup and creation, the Opportunities with their roles, whose
    # create failed as a whole for the refused Opportunity, then the roles again on their own.
    assert org.stats()["calls_by_kind"] == {"query": 1, "composite": 2, "collectionsCreate": 1}
    assert "will be retried" not in worker.log()
    for document in documents:
        state = fleet.ledger.order(document["increment_id"])
        expected = "dead_lettered" if document["increment_id"] == rejected else "synced"
        assert state.status == expected, document["increment_id"]
    assert len(org.records("OpportunityContactRole")) == 19


def test_two_events_of_one_order_in_a_batch_apply_the_newest(org_factory, fleet_factory):
    org = org_factory()
    fleet = fleet_factory(org, MAGSYNC_BATCH_SIZE=10, MAGSYNC_BATCH_LINGER_MS=20000)
    newer = order("400000001", 1, updated="2023-10-26 12:00:00", state="processing")
    older = order("400000001", 1)
    for document in [newer, *[order(f"{400000002 + n}", n) for n in range(8)], older]:
        fleet.publish(document)
    worker = fleet.worker("w1", threads=20)

    wait_for(
        lambda: fleet.ledger.event_counts().get("skipped_superseded") == 1 and fleet.synced() == 9,
        60,
        "nine synced and one superseded",
    )
    [record] = fleet.opportunities()["400000001"]
    assert record["StageName"] == "Qualification"
    state, history = fleet.ledger.history("400000001")
    assert state.updated_at.strftime("%H:%M") == "12:00"
    assert [e.kind for e in history] == ["received", "synced", "received", "skipped_superseded"]
    assert [e.updated_at.strftime("%H:%M") for e in history] == ["12:00"] * 2 + ["10:00"] * 2
    assert org.stats()["calls_by_kind"] == {"query": 1, "composite": 2}  # one batch
    wait_for(fleet.queue_empty, 30, "the queue to drain")
    assert fleet.dead.browse() == []
    assert "will be retried" not in worker.log()


# -- a worker killed in the middle of a batch -----------------------------------------------------


def test_a_worker_killed_mid_batch_loses_and_duplicates_nothing(org_factory, fleet_factory):
    org = org_factory(latency_ms=100)
    fleet = fleet_factory(
        org, MAGSYNC_BATCH_SIZE=60, MAGSYNC_BATCH_LINGER_MS=2000, MAGSYNC_LATE_WRITE_WINDOW=8
    )
    # The first batch's second Composite call (its Opportunities and roles; the first made the
    # buyers) is held 4 s, then lands although its worker is dead. The redelivered orders wait
    # out the window instead of creating their roles before the held call lands.
    org.add_fault(
        kind="hang",
        method="POST",
        path_regex=r"/composite$",
        after=1,
        count=1,
        seconds=4,
        then="proceed",
    )
    documents = [order(f"{400000001 + n}", n % 40) for n in range(120)]
    for document in documents:
        fleet.publish(document)
    first = fleet.worker("w1", threads=150)
    wait_for(lambda: org.stats()["faults_fired"] == 1, 60, "the batch's upsert in flight")
    first.kill()
    first.stop()
    second = fleet.worker("w2", threads=150)

    numbers = sorted(d["increment_id"] for d in documents)
    wait_for(
        lambda: all(getattr(fleet.ledger.order(n), "status", None) == "synced" for n in numbers),
        120,
        "every order synced",
    )
    wait_for(fleet.queue_empty, 30, "the queue to drain")
    found = fleet.opportunities()
    assert sorted(found) == numbers
    assert all(len(records) == 1 for records in found.values())
    roles = org.records("OpportunityContactRole")
    assert sorted(r["OpportunityId"] for r in roles) == sorted(r[0]["Id"] for r in found.values())
    assert len(org.records("Account")) == len(org.records("Contact")) == 40
    assert fleet.dead.browse() == []
    # The orders of the killed batch were in doubt, and their roles looked up, not duplicated.
    assert org.stats()["calls_by_kind"].get("query", 0) >= 2
    # They waited out the window before creating anything.
    assert "order waits for an earlier write of it" in second.log()


# -- bounded locks and connections --------------------------------------------------------------


def _sample(dsn, database_name):
    """``(advisory locks, connections, synced orders)`` of the test database, now."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        locks = conn.execute(
            "SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
            "WHERE l.locktype = 'advisory' AND d.datname = %s",
            (database_name,),
        ).fetchone()[0]
        connections = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database_name,),
        ).fetchone()[0]
        synced = conn.execute(
            "SELECT count(*) FROM ledger_orders WHERE status = 'synced'"
        ).fetchone()[0]
    return locks, connections, synced


@pytest.mark.postgres
def test_500_waiting_orders_hold_a_bounded_number_of_locks_and_connections(
    org_factory, fleet_factory
):
    from sqlalchemy.engine import make_url

    org = org_factory(latency_ms=1500)
    size = 20
    fleet = fleet_factory(org, "postgres", MAGSYNC_BATCH_SIZE=size)
    url = make_url(fleet.env["DATABASE_URL"])
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    documents = [order(f"{400000001 + n}", n % 100) for n in range(500)]
    for document in documents:
        fleet.publish(document)
    fleet.worker("w1", threads=520)
    wait_for(fleet.queue_empty, 60, "every order taken by the worker")

    samples = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        locks, connections, synced = _sample(dsn, url.database)
        if synced > 100:
            break
        samples.append((locks, connections, synced))
        time.sleep(0.2)
    assert len(samples) >= 10, samples
    print(f"\n(advisory locks, connections, synced) while 400+ orders wait: {samples}")
    # At most two batches in flight (MAGSYNC_SALESFORCE_CONCURRENCY), each holding its orders'
    # and their buyers' locks; the ledger's pool holds at most 5 + 5 connections.
    assert max(s[0] for s in samples) <= 2 * (size + size)
    assert max(s[0] for s in samples) > 0
    assert max(s[1] for s in samples) <= 10

    org.set_latency(0)
    wait_for(lambda: _sample(dsn, url.database)[2] == 500, 120, "every order synced")
    found = fleet.opportunities()
    assert len(found) == 500 and all(len(records) == 1 for records in found.values())


# -- API calls per order --------------------------------------------------------------------------


def test_a_burst_costs_at_most_three_calls_per_hundred_orders(org_factory, fleet_factory):
    org = org_factory(latency_ms=50)
    fleet = fleet_factory(org)  # the defaults: batches of 200, 25 ms linger
    # 2,000 orders of 200 buyers; Salesforce knows half of the buyers already.
    known = [
        {"LastName": f"Buyer {n}", "Email": f"buyer{n}@coalesced.example.com"} for n in range(100)
    ]
    org.insert("Contact", known)
    documents = [order(f"{410000001 + n}", n % 200) for n in range(2000)]
    worker = fleet.worker("w1", threads=400)
    # The worker's main process, where the threads run, tuned its collector before the pool.
    [tuned] = [line for line in worker.log().splitlines() if "garbage collector tuned" in line]
    assert "threshold=50000" in tuned
    org.reset_stats()
    started = time.monotonic()
    for document in documents:
        fleet.publish(document)
    wait_for(lambda: fleet.synced() == 2000, 300, "the burst")
    elapsed = time.monotonic() - started
    calls = org.stats()["api_calls"]
    print(
        f"\nburst of 2000 orders: {elapsed:.1f} s, {calls} API calls "
        f"({calls / 2000:.4f} per order): {org.stats()['calls_by_kind']}"
    )
    assert calls / 2000 <= 0.03
    assert len(fleet.opportunities()) == 2000
    assert len(org.records("Contact")) == 200


# -- never stale, never twice ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_shuffled_duplicated_versions_end_as_the_newest(backend, org_factory, fleet_factory):
    versions = order_versions()
    deliveries = [v for saves in versions.values() for v in saves] * 2
    random.Random(3).shuffle(deliveries)
    org = org_factory()
    fleet = fleet_factory(org, backend)
    workers = [fleet.worker(f"w{n}", threads=100) for n in range(2)]
    for delivery in deliveries:
        fleet.publish(delivery)
    terminal = ("synced", "skipped_stale", "skipped_unchanged", "skipped_superseded")
    wait_for(
        lambda: sum(fleet.ledger.event_counts().get(k, 0) for k in terminal) >= len(deliveries),
        240,
        "every delivery applied or skipped",
    )
    assert all(worker.alive() for worker in workers)
    counts = fleet.ledger.event_counts()
    stats = org.stats()["calls_by_kind"]
    print(f"\n{backend}: {counts}; org calls {stats}")
    assert counts.get("received") == len(deliveries)
    assert counts.get("dead_lettered", 0) == 0
    assert sum(counts.get(k, 0) for k in terminal) == len(deliveries)

    found = fleet.opportunities()
    assert sorted(found) == sorted(versions)
    for number, saves in versions.items():
        [record] = found[number]
        newest = saves[-1]
        expected = opportunity_record(load_order(newest), fleet.settings).fields
        assert {f: record[f] for f in CHECKED} == {f: _json(expected[f]) for f in CHECKED}
        state = fleet.ledger.order(number)
        assert state.updated_at.strftime("%Y-%m-%d %H:%M:%S") == newest["updated_at"]
        assert (state.status, state.record_id) == ("synced", record["Id"])
    buyers = {saves[0]["customer_email"].strip().lower() for saves in versions.values()}
    assert len(org.records("Account")) == len(org.records("Contact")) == len(buyers)
    assert len(org.records("OpportunityContactRole")) == len(versions)
    assert sum(stats.values()) < counts["synced"] / 2
