"""Never stale, never twice, with real processes: 200 orders of 5 versions each, every version
published twice and all of them shuffled, consumed from RabbitMQ by four ``magsync worker``
processes that map the payload (no Magento REST) into the sandbox org, on a SQLite and on a
PostgreSQL ledger.

The org must end with one Opportunity per order holding its newest version, and the number of
writes to it must equal the number of versions the ledger says were applied.
"""

import contextlib
import random
import time
import uuid

import pytest

from magsync.ledger import Ledger, migrate
from magsync.mapping.common import storable_email
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.messaging.app import create_celery
from magsync.messaging.broker import Publisher
from magsync.sandbox.magento import SandboxStore
from magsync.settings import Settings
from tests import processes
from tests.helpers import queue_depth

pytestmark = pytest.mark.slow

ORDERS = 200
LIFECYCLE = ("invoice", "comment", "ship", "refund")  # after the placement
VERSIONS = 1 + len(LIFECYCLE)
COPIES = 2
WORKERS = 4
TERMINAL = ("synced", "skipped_stale", "skipped_unchanged", "dead_lettered")
CHECKED = ("Name", "Amount", "StageName", "CloseDate", "Description", "Magento_Customer_Email__c")


def order_versions():
    """Each order's saves in order, as the store's webhooks would carry them."""
    store = SandboxStore(seed=17, customers=60)  # never started: no server, no webhooks
    versions = {}
    for _ in range(ORDERS):
        placed = store.place_order()
        saves = [placed]
        for action in LIFECYCLE:
            if action == "comment":
                saves.append(store.comment(placed["entity_id"], "Called the customer"))
            else:
                saves.append(store.act(placed["entity_id"], action))
        versions[placed["increment_id"]] = saves
    return versions


def event(order):
    return {
        "event": "sales_order_save_after",
        "envelope": "seed",
        "entity_id": order["entity_id"],
        "increment_id": order["increment_id"],
        "updated_at": order["updated_at"],
        "order": order,
    }


@contextlib.contextmanager
def ledger_database(backend, tmp_path, request):
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / 'ledger.db'}"
        return
    from tests.databases import postgres_database

    with postgres_database(request.getfixturevalue("postgres_url")) as url:
        ledger = Ledger(Settings.from_env({"DATABASE_URL": url}))
        migrate.upgrade(ledger.engine)  # the release phase; SQLite workers migrate themselves
        ledger.close()
        yield url


@contextlib.contextmanager
def running_workers(env, logs, namespace):
    """``WORKERS`` worker processes of two pool processes each, started side by side."""
    workers = []
    try:
        for n in range(WORKERS):
            argv = [str(processes.BIN / "magsync"), "worker", "--concurrency", "2"]
            argv += ["--hostname", f"{namespace}-{n}@%h"]
            workers.append(processes.Process(f"worker-{n}", argv, env, logs / f"worker-{n}.log"))
        for worker in workers:
            worker.wait_for_log(" ready.", timeout=90)
        yield workers
    finally:
        for worker in workers:
            worker.stop()


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_shuffled_duplicated_versions_across_four_workers(
    backend, tmp_path, request, rabbitmq_url, broker_namespace, org_factory
):
    versions = order_versions()
    deliveries = [event(v) for saves in versions.values() for v in saves] * COPIES
    random.Random(3).shuffle(deliveries)
    org = org_factory()
    logs = tmp_path / "logs"
    logs.mkdir()

    with ledger_database(backend, tmp_path, request) as database_url:
        env = {
            **org.settings(),
            "CELERY_BROKER_URL": rabbitmq_url,
            "MAGSYNC_BROKER_NAMESPACE": broker_namespace,
            "DATABASE_URL": database_url,
            "SALESFORCE_RATE_LIMIT": "10000/s",
            "LOG_LEVEL": "INFO",
            # The one-order-per-call path, whose calls this test counts (test_e2e_coalesced
            # runs the same deliveries through coalescing workers).
            "MAGSYNC_BATCH_SIZE": "1",
        }
        settings = Settings.from_env(env)
        with contextlib.ExitStack() as cleanup:
            ledger = Ledger(settings)
            cleanup.callback(ledger.close)
            celery = create_celery(settings)
            publisher = Publisher(celery, celery.magsync_topology, timeout=10)
            cleanup.callback(publisher.close)
            workers = cleanup.enter_context(running_workers(env, logs, broker_namespace))
            started = time.monotonic()
            for delivery in deliveries:
                publisher.publish(delivery, str(uuid.uuid4()))
            published = time.monotonic()
            deadline = started + 240
            while True:
                counts = ledger.event_counts()
                done = sum(counts.get(kind, 0) for kind in TERMINAL)
                if done >= len(deliveries):
                    break
                assert time.monotonic() < deadline, f"{done} of {len(deliveries)} done: {counts}"
                assert all(w.alive() for w in workers), "a worker died"
                time.sleep(0.5)
            elapsed = time.monotonic() - started
            assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 0
            states = {number: ledger.order(number) for number in versions}

    applied = counts.get("synced", 0)
    stale = counts.get("skipped_stale", 0)
    unchanged = counts.get("skipped_unchanged", 0)
    stats = org.stats()["calls_by_kind"]
    buyers = {saves[0]["customer_email"].strip().lower() for saves in versions.values()}
    # Addresses Salesforce cannot hold ("Jane Doe"@example.com) are in no Contact to look up.
    searchable = {email for email in buyers if storable_email(email)}
    print(
        f"\n{backend}: {len(deliveries)} deliveries of {ORDERS * VERSIONS} versions in "
        f"{elapsed:.1f}s (published in {published - started:.1f}s): applied {applied}, "
        f"skipped stale {stale}, skipped unchanged {unchanged}, retried "
        f"{counts.get('retried', 0)}; org calls {dict(stats)}; buyers {len(buyers)}, "
        f"{len(buyers) - len(searchable)} of them with an address Salesforce cannot hold"
    )

    assert counts.get("received") == len(deliveries)
    assert counts.get("dead_lettered", 0) == 0
    assert applied + stale + unchanged == len(deliveries)
    assert ORDERS <= applied <= ORDERS * VERSIONS

    # One record per order, holding its newest version.
    by_number = {}
    for record in org.records("Opportunity"):
        by_number.setdefault(record["Magento_Order_ID__c"], []).append(record)
    assert sorted(by_number) == sorted(versions)
    for number, saves in versions.items():
        [record] = by_number[number]
        newest = saves[-1]
        expected = opportunity_record(load_order(newest), settings).fields
        assert {f: record[f] for f in CHECKED} == {f: _json(expected[f]) for f in CHECKED}
        assert states[number].updated_at.strftime("%Y-%m-%d %H:%M:%S") == newest["updated_at"]
        assert (states[number].status, states[number].record_id) == ("synced", record["Id"])

    # Every write of an Opportunity is an applied version: one Composite call for each order's
    # first (with its contact role, and the buyer's Account and Contact when new), one upsert
    # for each later one; one lookup per buyer, however many orders they placed at once.
    assert stats.get("composite", 0) == ORDERS
    assert stats.get("composite", 0) + stats.get("upsert", 0) == applied
    assert stats.get("query", 0) == len(searchable)
    assert set(stats) <= {"composite", "upsert", "query"}
    assert len(org.records("Account")) == len(org.records("Contact")) == len(buyers)
    assert len(org.records("OpportunityContactRole")) == ORDERS


def _json(value):
    return float(value) if hasattr(value, "as_tuple") else value
