"""Event-id dedupe: a redelivered Adobe event is skipped by the pipeline with no Salesforce call,
shows in ``magsync trace``, and the ledger forgets event ids after 7 days."""

import datetime as dt

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from magsync.cli import main
from magsync.ledger import Applied, Ledger, Version, migrate
from magsync.ledger.models import AppliedEventRow, utcnow
from magsync.ledger.store import EVENT_RETENTION, PRUNE_INTERVAL
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from magsync.sync.pipeline import sync_order
from magsync.sync.services import Services


def version(event_id):
    return Version(
        increment_id="100000001",
        entity_id=1,
        store_id=1,
        updated_at=dt.datetime(2024, 3, 1, 10, 0, tzinfo=dt.UTC),
        payload_hash="a" * 64,
        state="new",
        customer_email="ana@example.com",
        source="webhook",
        event_id=event_id,
    )


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with SandboxOrg(state_dir=tmp_path_factory.mktemp("dedupe-org")) as org:
        yield org


@pytest.fixture(scope="module")
def store():
    with SandboxStore(seed=23) as store:
        yield store


@pytest.fixture
def services(org, tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    built = Services.build(Settings.from_env({"DATABASE_URL": url, **org.settings()}))
    yield built
    built.close()


def adobe_event(order, event_id):
    return {
        "event": "com.adobe.commerce.observer.sales_order_save_after",
        "envelope": "adobe",
        "event_id": event_id,
        "adobe_event_id": event_id,
        "entity_id": order["entity_id"],
        "increment_id": order["increment_id"],
        "updated_at": order["updated_at"],
        "order": order,
    }


def test_a_redelivered_event_id_costs_no_salesforce_call(org, store, services):
    order = store.place_order()
    first = sync_order(adobe_event(order, "evt-dup-1"), services)
    assert "skipped" not in first
    calls = org.stats()["api_calls"]

    again = sync_order(adobe_event(order, "evt-dup-1"), services)
    assert again == {
        "order": order["increment_id"],
        "event_id": "evt-dup-1",
        "skipped": "duplicate",
    }
    assert org.stats()["api_calls"] == calls
    [record] = [
        r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == order["increment_id"]
    ]
    assert record["Id"]

    # Another event id about the same version is not a duplicate: the unchanged guard skips it.
    other = sync_order(adobe_event(order, "evt-other"), services)
    assert other["skipped"] == "unchanged"
    assert org.stats()["api_calls"] == calls

    result = CliRunner().invoke(
        main, ["trace", order["increment_id"]], env={"DATABASE_URL": services.ledger.url}
    )
    assert result.exit_code == 0, result.output
    history = result.output.splitlines()[result.output.splitlines().index("history") + 1 :]
    kinds = [line.split()[2] for line in history]
    assert kinds == ["received", "synced", "skipped_duplicate", "received", "skipped_unchanged"]
    assert "event=evt-dup-1" in history[2]
    assert "event=evt-dup-1" in history[0]


def test_events_without_an_adobe_event_id_are_never_deduplicated(org, store, services):
    order = store.place_order()
    event = {k: v for k, v in adobe_event(order, "x").items() if k != "adobe_event_id"}
    sync_order(event, services)
    assert sync_order(event, services)["skipped"] == "unchanged"
    with services.ledger.engine.connect() as connection:
        assert connection.execute(select(AppliedEventRow)).all() == []


@pytest.fixture
def ledger(database_url):
    clock = Clock()
    ledger = Ledger(Settings.from_env({"DATABASE_URL": database_url}), clock=clock)
    migrate.upgrade(ledger.engine)
    ledger.clock = clock
    yield ledger
    ledger.close()


class Clock:
    def __init__(self):
        self.now = 50.0

    def __call__(self):
        return self.now


def test_applied_and_skipped_versions_remember_their_event_id(ledger):
    ledger.begin(version("evt-a"))
    ledger.applied(version("evt-a"), Applied("Opportunity", "006000000000001AAA", True))
    ledger.skip(version("evt-b"), "unchanged")
    ledger.skip(version("evt-b"), "unchanged")  # a concurrent copy: recorded once
    assert ledger.event_applied("evt-a") and ledger.event_applied("evt-b")
    assert not ledger.event_applied("evt-c")


def test_event_ids_are_kept_seven_days_then_pruned(ledger):
    now = utcnow()
    with ledger.engine.begin() as connection:
        for event_id, age in (
            ("old", EVENT_RETENTION + dt.timedelta(minutes=1)),
            ("new", dt.timedelta(days=6)),
        ):
            connection.execute(
                AppliedEventRow.__table__.insert().values(
                    event_id=event_id, increment_id="100000001", applied_at=now - age
                )
            )
    assert ledger.prune_events_if_due() == 1
    assert not ledger.event_applied("old")
    assert ledger.event_applied("new")


def test_each_process_prunes_at_most_once_an_interval(ledger):
    assert ledger.prune_events_if_due() == 0
    ledger.clock.now += PRUNE_INTERVAL - 1
    assert ledger.prune_events_if_due() is None
    ledger.clock.now += 1
    assert ledger.prune_events_if_due() == 0


def test_migration_0003_adds_and_removes_the_event_id_table(database_url):
    ledger = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    try:
        assert migrate.upgrade(ledger.engine, "0002") == (None, "0002")
        assert migrate.upgrade(ledger.engine, "0003") == ("0002", "0003")
        with ledger.engine.connect() as connection:
            assert connection.execute(select(AppliedEventRow)).all() == []
        from alembic import command

        with ledger.engine.begin() as connection:
            command.downgrade(migrate.alembic_config(connection), "0002")
        with ledger.engine.connect() as connection:
            assert migrate.current_revision(connection) == "0002"
            assert not connection.dialect.has_table(connection, "ledger_applied_events")
    finally:
        ledger.close()
