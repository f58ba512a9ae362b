"""The parts of a backfill that need no broker: ledger checkpoints (SQLite and PostgreSQL), the
run key, the progress display, the worker's ``--queues``, the backfill task's route and rate
limit, and the CSV the Bulk API client writes and reads."""

import datetime as dt
import io
from decimal import Decimal

import click
import pytest

from magsync.cli import queue_names
from magsync.cli.backfill import LOG_EVERY, Progress, bar_line, log_line
from magsync.ledger import Ledger
from magsync.messaging.app import create_celery
from magsync.messaging.broker import BACKFILL_ORDER_TASK, SYNC_ORDER_TASK
from magsync.salesforce.bulk import NULL, csv_rows, csv_value, parse_error
from magsync.settings import Settings
from magsync.sync.backfill import Counts, Plan, backfill_task_id, run_key
from magsync.worker.app import create_worker_app

SINCE = dt.datetime(2024, 1, 1)


@pytest.fixture
def ledger(database_url):
    from magsync.ledger import migrate

    ledger = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(ledger.engine)
    yield ledger
    ledger.close()


# -- checkpoints ----------------------------------------------------------------------------------


def test_a_stopped_run_resumes_from_its_checkpoint_and_a_finished_one_starts_over(ledger):
    fresh = ledger.start_backfill("run-a", "store", SINCE)
    assert fresh.cursor is None and fresh.scanned == 0 and fresh.finished_at is None
    cursor = (dt.datetime(2024, 2, 1, 9, 0, 0), 42)
    ledger.save_backfill("run-a", cursor, {"scanned": 100, "to_sync": 60, "synced": 10})

    resumed = ledger.start_backfill("run-a", "store", SINCE)
    assert resumed.cursor == cursor
    assert (resumed.scanned, resumed.to_sync, resumed.synced, resumed.failed) == (100, 60, 10, 0)

    done = ledger.save_backfill("run-a", None, {"scanned": 250, "synced": 60}, finished=True)
    assert done.finished_at is not None and done.cursor == cursor and done.scanned == 250
    again = ledger.start_backfill("run-a", "store", SINCE)
    assert again.cursor is None and again.scanned == 0 and again.finished_at is None


def test_a_finished_run_prunes_the_older_checkpoints_it_covers(ledger):
    ledger.start_backfill("older-inside", "store", dt.datetime(2024, 3, 1), dt.datetime(2024, 4, 1))
    ledger.start_backfill("older-before", "store", dt.datetime(2023, 1, 1))
    ledger.start_backfill("other-store", "elsewhere", dt.datetime(2024, 3, 1))
    ledger.start_backfill("covering", "store", SINCE)
    ledger.save_backfill("covering", None, {"scanned": 5}, finished=True)
    kept = {checkpoint.run_key for checkpoint in ledger.backfills()}
    assert kept == {"covering", "older-before", "other-store"}
    assert [c.run_key for c in ledger.backfills("store")] == ["covering", "older-before"]


def test_the_run_key_is_the_store_its_view_and_the_range(make_settings):
    settings = make_settings(MAGENTO_BASE_URL="https://shop.example.com")
    key = run_key(settings, Plan("2024-01-01 00:00:00"))
    assert key == run_key(settings, Plan("2024-01-01 00:00:00", dry_run=True))
    assert len(key) == 64
    others = {
        run_key(settings, Plan("2024-01-02 00:00:00")),
        run_key(settings, Plan("2024-01-01 00:00:00", "2024-06-01 00:00:00")),
        run_key(settings, Plan("2024-01-01 00:00:00", store_code="de")),
        run_key(make_settings(MAGENTO_BASE_URL="https://b.example.com"), Plan(SINCE.isoformat())),
    }
    assert key not in others and len(others) == 4


def test_a_task_id_per_version_of_an_order():
    event = {"increment_id": "000000123", "updated_at": "2024-02-01 09:00:00"}
    assert backfill_task_id(event) == "000000123:backfill:2024-02-01T09:00:00"


# -- the progress display -------------------------------------------------------------------------


def counts(**values):
    figures = Counts(total=1000, **values)
    figures.started -= 10.0  # ten seconds into the run
    return figures


def test_the_bar_shows_the_share_scanned_the_counts_the_rate_and_the_eta():
    line = bar_line(counts(scanned=250, to_sync=200, synced=120, failed=2))
    assert line.startswith("backfill [######..................]  25%  scanned 250/1000  ")
    assert "to sync 200  synced 120  failed 2  25 scanned/s  ETA 0:30" in line
    # Once the walk is done, the rate and ETA follow the syncs still to come.
    line = bar_line(counts(scanned=1000, to_sync=400, synced=300, failed=0))
    assert " 100%  " in line and "30 synced/s  ETA 0:03" in line


def test_a_resumed_run_rates_what_it_scanned_itself():
    line = log_line(counts(scanned=900, resumed_from=800, to_sync=10))
    assert line == (
        "backfill: scanned 900/1000, to sync 10, synced 0, failed 0, 10 scanned/s, eta 0:10 (queue)"
    )


class Stream(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self.tty = tty

    def isatty(self):
        return self.tty


def test_a_terminal_gets_one_line_redrawn_and_a_log_a_line_every_few_seconds():
    terminal = Stream(tty=True)
    progress = Progress(terminal)
    for scanned in (100, 200, 300):
        progress.show(counts(scanned=scanned))
    progress.show(counts(scanned=1000), final=True)
    text = terminal.getvalue()
    assert text.count("\r") == 4 and text.count("\n") == 1 and text.endswith("\n")

    log = Stream(tty=False)
    progress = Progress(log)
    for scanned in (100, 200, 300):
        progress.show(counts(scanned=scanned))
    assert log.getvalue().count("\n") == 1  # the next line comes LOG_EVERY seconds later
    assert LOG_EVERY <= 10
    progress.show(counts(scanned=1000), final=True)
    assert log.getvalue().splitlines()[-1].startswith("backfill: scanned 1000/1000")
    assert "\r" not in log.getvalue()


# -- queues, routes, rate limit -------------------------------------------------------------------


def test_worker_queues_are_named_by_kind_or_in_full():
    assert queue_names("orders", "shop") == "shop.orders"
    assert queue_names("backfill", "shop") == "shop.backfill"
    assert queue_names("orders, backfill", "shop") == "shop.orders,shop.backfill"
    assert queue_names("other.queue", "shop") == "other.queue"
    with pytest.raises(click.BadParameter):
        queue_names(" , ", "shop")


def test_the_backfill_task_has_its_queue_and_a_rate_limit(make_settings):
    settings = make_settings(MAGSYNC_BROKER_NAMESPACE="shop", MAGSYNC_BACKFILL_RATE_LIMIT="7/s")
    celery = create_celery(settings)
    route = celery.amqp.router.route({}, BACKFILL_ORDER_TASK)
    assert route["queue"].name == "shop.backfill"
    assert celery.amqp.router.route({}, SYNC_ORDER_TASK)["queue"].name == "shop.orders"
    worker = create_worker_app(settings)
    assert worker.tasks[BACKFILL_ORDER_TASK].rate_limit == "7/s"
    assert worker.tasks[SYNC_ORDER_TASK].rate_limit is None


def test_a_backfill_rate_limit_that_celery_cannot_read_is_refused(make_settings):
    from magsync.settings import ConfigError

    with pytest.raises(ConfigError, match="MAGSYNC_BACKFILL_RATE_LIMIT"):
        make_settings(MAGSYNC_BACKFILL_RATE_LIMIT="fast")


# -- the Bulk API's CSV ---------------------------------------------------------------------------


def test_values_are_written_as_the_bulk_api_reads_them():
    assert csv_value(None) == NULL == "#N/A"
    assert csv_value(True) == "true" and csv_value(False) == "false"
    assert csv_value(Decimal("1E+2")) == "100" and csv_value(Decimal("99.990")) == "99.990"
    assert csv_value(dt.date(2024, 2, 1)) == "2024-02-01"
    assert csv_value('say "hi", then') == 'say "hi", then'  # quoted by the CSV writer


def test_rows_share_one_header_and_a_missing_field_is_left_alone():
    rows = csv_rows([{"Name": "A", "Amount": Decimal("1.5")}, {"Name": "B", "Description": None}])
    assert rows == [
        {"Name": "A", "Amount": "1.5", "Description": ""},
        {"Name": "B", "Amount": "", "Description": "#N/A"},
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "FIELD_CUSTOM_VALIDATION_EXCEPTION:Orders over 250,000 need approval.:Amount --",
            ("FIELD_CUSTOM_VALIDATION_EXCEPTION", "Orders over 250,000 need approval.", ["Amount"]),
        ),
        (
            "REQUIRED_FIELD_MISSING:Required fields are missing: [Name, Stage]:Name Stage --",
            (
                "REQUIRED_FIELD_MISSING",
                "Required fields are missing: [Name, Stage]",
                ["Name", "Stage"],
            ),
        ),
        ("UNABLE_TO_LOCK_ROW:unable to obtain exclusive access to this record:--", None),
        ("", ("UNKNOWN", "", [])),
    ],
)
def test_an_sf_error_is_read_into_its_code_message_and_fields(text, expected):
    code, message, fields = parse_error(text)
    if expected is None:
        assert (code, fields) == ("UNABLE_TO_LOCK_ROW", [])
        assert message == "unable to obtain exclusive access to this record"
    else:
        assert (code, message, fields) == expected


def test_the_bulk_client_upserts_rows_and_reads_each_ones_outcome(org_factory):
    """``BulkClient`` through simple-salesforce's ``bulk2`` against the sandbox org: quoting,
    ``#N/A`` for None, a refused row's ``sf__Error``, created then updated."""
    from magsync.salesforce.auth import TokenProvider
    from magsync.salesforce.bulk import BulkClient
    from magsync.salesforce.rest import RestClient, build_session

    org = org_factory()
    settings = Settings.from_env(org.settings())
    session = build_session(settings)
    tokens = TokenProvider(settings, session)
    bulk = BulkClient(settings, tokens, session, RestClient(settings, tokens, session))
    common = {"StageName": "Prospecting", "CloseDate": dt.date(2024, 1, 31)}
    rows = [
        {"Magento_Order_ID__c": "000000001", "Name": 'Order 1 - "Doe, Jane"', **common},
        {"Magento_Order_ID__c": "000000002", "Name": "Order 2", "Description": "two\nlines"},
        {"Magento_Order_ID__c": "000000003", "Amount": Decimal("12.50"), **common},  # no Name
    ]
    rows[1].update(common)
    outcomes = bulk.upsert("Opportunity", "Magento_Order_ID__c", rows)
    assert [o.ok for o in outcomes] == [True, True, False]
    assert outcomes[2].error == "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    stored = {r["Magento_Order_ID__c"]: r for r in org.records("Opportunity")}
    assert sorted(stored) == ["000000001", "000000002"]
    assert stored["000000001"]["Id"] == outcomes[0].record_id and outcomes[0].created
    assert stored["000000001"]["Name"] == 'Order 1 - "Doe, Jane"'
    assert stored["000000002"]["Description"] == "two\nlines"

    again = bulk.upsert("Opportunity", "Magento_Order_ID__c", [{**rows[1], "Description": None}])
    assert again[0].record_id == stored["000000002"]["Id"] and again[0].created is False
    [updated] = [r for r in org.records("Opportunity") if r["Id"] == again[0].record_id]
    assert updated["Description"] is None
    assert bulk.jobs == 2
    assert bulk.batches_left() == org.stats()["bulk"]["daily_batches"] - 2


def test_with_line_items_on_a_backfill_above_the_threshold_takes_the_queue(org_factory, tmp_path):
    from magsync.sandbox.magento import SandboxStore
    from magsync.sync.backfill import Backfill, Plan, Sinks
    from magsync.sync.services import Services

    org = org_factory()
    published = []
    with SandboxStore(seed=37) as store:
        store.create_orders(12, at="2024-02-01 09:00:00")
        env = {
            **store.settings(),
            **org.settings(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "MAGSYNC_BULK_THRESHOLD": "5",  # 12 orders would go through Bulk API 2.0
            "SALESFORCE_LINE_ITEMS": "true",
        }
        services = Services.build(Settings.from_env(env))
        try:
            # No Bulk client: a run that chose Bulk API 2.0 would fail here.
            sinks = Sinks(publish=published.extend, bulk=None, progress=lambda counts: None)
            plan = Plan(since="2024-01-01 00:00:00", wait=False)
            counts = Backfill(services, plan, sinks).run()
        finally:
            services.close()
    assert counts.mode == "queue"
    assert len(published) == 12
    assert org.bulk_jobs() == []
