"""Reconcile passes against the sandbox store over real HTTP, the ledger (SQLite and
PostgreSQL) and the real RabbitMQ: what a pass publishes, what it costs, where it starts, when
its watermark moves, and that two passes of one store never run at once."""

import datetime as dt
import json
import time

import amqp
import pytest
import sentry_sdk
from click.testing import CliRunner

from magsync.check import settings as settings_check
from magsync.cli import main
from magsync.ledger import Applied, Ledger, migrate
from magsync.mapping.order import load_order
from magsync.messaging.app import create_celery
from magsync.messaging.broker import BrokerUnavailable, Publisher
from magsync.sandbox.magento import SandboxStore
from magsync.settings import Settings
from magsync.sync.pipeline import order_version, primary_record
from magsync.sync.reconcile import SOURCE, MissedWebhooks, RecentlyPublished, run_pass
from magsync.sync.services import Services
from magsync.worker.app import create_worker_app
from magsync.worker.reconcile import beat_schedule, publisher
from tests import processes
from tests.helpers import Clock, queue_depth, wait_for
from tests.sentry_stub import SentryStub

OLD = "2024-03-01 12:00:00"


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    from magsync.sandbox.salesforce import SandboxOrg

    with SandboxOrg(state_dir=tmp_path_factory.mktemp("reconcile-org")) as org:
        yield org


@pytest.fixture
def store():
    with SandboxStore(seed=11, webhook_secret="reconcile-webhook-secret-1") as store:
        yield store


def settings_for(store, org, database_url, **env):
    return Settings.from_env(
        {**store.settings(), **org.settings(), "DATABASE_URL": database_url, **env}
    )


@pytest.fixture
def services_factory():
    built = []

    def build(settings):
        services = Services.build(settings)
        built.append(services)
        return services

    yield build
    for services in built:
        services.close()


def seed_ledger(ledger, documents, settings):
    """Record each order as applied in its current version, as a worker would have (directly:
    no sync, no Salesforce call)."""
    writes = []
    for n, document in enumerate(documents):
        order = load_order(document)
        record = primary_record(order, None, settings)
        version = order_version(order, record, "rest")
        applied = Applied(
            sobject=record.sobject,
            record_id=f"006{n:015d}",
            created=True,
            stage=record.fields.get("StageName"),
        )
        writes.append((version, applied))
    ledger.ready()
    ledger.applied_many(writes)


def queued_events(rabbitmq_url, queue):
    """``(task name, event)`` of every message in ``queue``, which is emptied."""
    found = []
    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            args, _, _ = json.loads(message.body)
            found.append((message.headers["task"], args[0]))
    return found


def naive(text):
    return dt.datetime.strptime(text, "%Y-%m-%d %H:%M:%S")


# -- what a pass publishes, and what it costs ------------------------------------------------------


@pytest.mark.slow
def test_a_pass_over_5000_unchanged_orders_publishes_nothing_and_calls_salesforce_never(
    org, store, tmp_path, rabbitmq_url, broker_namespace, services_factory
):
    placed = store.create_orders(5000, at=OLD)
    settings = settings_for(
        store,
        org,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
        MAGSYNC_RECONCILE_PAGE_SIZE="300",
    )
    services = services_factory(settings)
    seed_ledger(services.ledger, placed, settings)
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    app = create_worker_app(settings)
    calls_before = org.stats()["api_calls"]
    searches_before = len(store.requests())

    started = time.monotonic()
    result = run_pass(services, publisher(app).publish_all)
    elapsed = time.monotonic() - started

    assert (result.scanned, result.published, result.new) == (5000, 0, 0)
    assert result.pages == 17  # 5,000 orders at 300 a page
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 0
    assert org.stats()["api_calls"] == calls_before
    # Reads only: the pages of the walk, nothing per order.
    assert len(store.requests(searches_before)) == 17
    assert result.watermark == (OLD, placed[-1]["entity_id"])
    print(f"\n5,000 unchanged orders reconciled in {elapsed:.1f} s, 0 messages, 0 API calls")


def test_new_and_changed_orders_go_to_the_live_queue_as_reconcile_tasks(
    org, store, tmp_path, rabbitmq_url, broker_namespace, services_factory
):
    placed = store.create_orders(12, at=OLD)
    settings = settings_for(
        store,
        org,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
        MAGSYNC_RECONCILE_PAGE_SIZE="5",
    )
    services = services_factory(settings)
    seed_ledger(services.ledger, placed[:8], settings)
    changed = store.invoice(placed[0]["entity_id"])  # saved again: a newer version
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    app = create_worker_app(settings)

    result = run_pass(services, publisher(app).publish_all)

    expected = {changed["increment_id"], *(o["increment_id"] for o in placed[8:])}
    assert (result.scanned, result.published, result.new) == (12, 5, 4)
    queued = queued_events(rabbitmq_url, f"{broker_namespace}.orders")
    assert {name for name, _ in queued} == {"magsync.sync_order"}
    assert {event["increment_id"] for _, event in queued} == expected
    event = next(e for _, e in queued if e["increment_id"] == changed["increment_id"])
    assert event["source"] == SOURCE
    assert event["entity_id"] == changed["entity_id"]
    assert event["updated_at"] == changed["updated_at"] == event["order"]["updated_at"]
    # The watermark moved to the newest order seen: the invoiced one, saved last.
    mark = services.ledger.watermark(settings.store_key)
    assert (mark.updated_at, mark.entity_id) == (naive(changed["updated_at"]), changed["entity_id"])


def test_a_publish_that_is_not_confirmed_leaves_the_watermark(
    org, store, tmp_path, unused_port, services_factory
):
    store.create_orders(3, at=OLD)
    settings = settings_for(
        store,
        org,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{unused_port}//",
        MAGSYNC_PUBLISH_TIMEOUT="1",
    )
    services = services_factory(settings)
    services.ledger.ready()
    before = services.ledger.set_watermark(settings.store_key, naive(OLD))
    app = create_celery(settings)
    broker = Publisher(app, app.magsync_topology, settings.publish_timeout)

    with pytest.raises(BrokerUnavailable):
        run_pass(services, broker.publish_all)

    assert services.ledger.watermark(settings.store_key) == before
    broker.close()


# -- where a pass starts ---------------------------------------------------------------------------


def test_the_first_pass_starts_at_the_first_run_not_at_the_stores_beginning(
    org, store, tmp_path, services_factory
):
    store.create_orders(4, at=OLD)  # history: the backfill's job
    recent = store.create_orders(3)
    settings = settings_for(store, org, f"sqlite:///{tmp_path / 'ledger.db'}")
    services = services_factory(settings)
    published = []
    now = naive(recent[-1]["updated_at"]) + dt.timedelta(seconds=30)

    result = run_pass(services, published.extend, now=now)

    mark = services.ledger.watermark(settings.store_key)
    assert mark.first_run_at == now
    assert result.since == (now - dt.timedelta(seconds=600)).strftime("%Y-%m-%d %H:%M:%S")
    assert sorted(e["increment_id"] for e, _ in published) == sorted(
        o["increment_id"] for o in recent
    )
    # A later pass keeps the first run and starts from the watermark less the overlap.
    assert run_pass(services, published.extend).since == (
        naive(recent[-1]["updated_at"]) - dt.timedelta(seconds=600)
    ).strftime("%Y-%m-%d %H:%M:%S")
    assert services.ledger.watermark(settings.store_key).first_run_at == now


def test_reconcile_since_sets_the_watermark_and_now_runs_a_pass(
    org, store, tmp_path, rabbitmq_url, broker_namespace
):
    placed = store.create_orders(3, at=OLD)
    env = {
        **store.settings(),
        **org.settings(),
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        "CELERY_BROKER_URL": rabbitmq_url,
        "MAGSYNC_BROKER_NAMESPACE": broker_namespace,
        "MAGSYNC_RECONCILE_OVERLAP": "0",
    }
    runner = CliRunner()

    shown = runner.invoke(main, ["reconcile"], env=env)
    assert shown.exit_code == 0, shown.output
    assert "no watermark" in shown.output

    result = runner.invoke(main, ["reconcile", "--since", "2024-03-01 11:00"], env=env)
    assert result.exit_code == 0, result.output
    assert "watermark:  2024-03-01 11:00:00 UTC" in result.output
    assert "next pass reads from 2024-03-01 11:00:00 UTC" in result.output

    result = runner.invoke(main, ["reconcile", "--now"], env=env)
    assert result.exit_code == 0, result.output
    assert "3 orders read since 2024-03-01 11:00:00, 3 published (3 new" in result.output
    assert f"watermark:  {OLD} UTC" in result.output
    queued = queued_events(rabbitmq_url, f"{broker_namespace}.orders")
    assert sorted(e["increment_id"] for _, e in queued) == sorted(o["increment_id"] for o in placed)

    bad = runner.invoke(main, ["reconcile", "--since", "yesterday"], env=env)
    assert bad.exit_code == 2 and "is not a date or time" in bad.output
    future = runner.invoke(main, ["reconcile", "--since", "2999-01-01"], env=env)
    assert future.exit_code == 2 and "is in the future" in future.output
    assert f"watermark:  {OLD} UTC" in runner.invoke(main, ["reconcile"], env=env).output


# -- one pass at a time ----------------------------------------------------------------------------


def test_a_pass_finds_the_stores_lock_taken_and_skips(org, store, database_url, services_factory):
    store.create_orders(3, at=OLD)
    settings = settings_for(store, org, database_url)
    services = services_factory(settings)
    migrate.upgrade(services.ledger.engine)  # the release step (SQLite migrates itself)
    services.ledger.ready()
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    other = Ledger(settings)  # another clock's worker: its own connection, the same locks
    published = []
    try:
        with other.locks() as locks:
            assert locks.try_acquire("reconcile", settings.store_key)
            result = run_pass(services, published.extend)
            assert result.skipped == "busy"
            assert published == []
        assert run_pass(services, published.extend).published == 3
    finally:
        other.close()
    assert len(published) == 3


def test_two_passes_at_once_publish_each_order_once(org, store, tmp_path, services_factory):
    import threading

    store.create_orders(20, at=OLD)
    settings = settings_for(
        store, org, f"sqlite:///{tmp_path / 'ledger.db'}", MAGSYNC_RECONCILE_PAGE_SIZE="5"
    )
    first, second = services_factory(settings), services_factory(settings)
    first.ledger.ready()
    first.ledger.set_watermark(settings.store_key, naive(OLD))
    published, results = [], []
    inside = threading.Event()

    def slow_publish(events):
        inside.set()
        time.sleep(0.2)  # the broker's confirm, slowly: the other pass starts meanwhile
        published.extend(events)

    thread = threading.Thread(target=lambda: results.append(run_pass(first, slow_publish)))
    thread.start()
    inside.wait(10)
    results.append(run_pass(second, published.extend))
    thread.join(30)

    assert sorted(r.skipped or "ran" for r in results) == ["busy", "ran"]
    assert len(published) == 20 == len({e["increment_id"] for e, _ in published})


# -- missed webhooks -------------------------------------------------------------------------------


def test_new_orders_older_than_a_webhook_takes_are_missed_webhooks(
    org, store, tmp_path, services_factory
):
    placed = store.create_orders(5, at=OLD)
    settings = settings_for(store, org, f"sqlite:///{tmp_path / 'ledger.db'}")
    services = services_factory(settings)
    services.ledger.ready()
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    # A worker received this one and keeps retrying it (Salesforce away): its webhook came.
    services.ledger.note(placed[0]["increment_id"], "retried", entity_id=placed[0]["entity_id"])
    missed = MissedWebhooks(clock=Clock())
    published = []

    result = run_pass(services, published.extend, missed=missed)
    assert (result.new, result.missed, result.published) == (5, 4, 5)
    assert missed.alerts == 1

    # Polling only (no webhook intake configured): new orders are what polling is for.
    polling = settings_for(
        store,
        org,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        MAGENTO_WEBHOOK_SECRET="",
    )
    assert not polling.webhook_intake_enabled
    quiet = MissedWebhooks(clock=Clock())
    run_pass(services_factory(polling), published.extend, missed=quiet)
    assert quiet.alerts == 0


def test_missed_webhooks_send_one_sentry_event_an_hour_while_it_goes_on(make_settings):
    from magsync import alerts

    stub = SentryStub().start()
    try:
        assert alerts.init(make_settings(SENTRY_DSN=stub.dsn))
        clock = Clock()
        missed = MissedWebhooks(clock=clock)
        sent = []
        for _ in range(7):  # a pass every ten minutes for an hour, each finding some
            sent.append(missed.report(3, "https://shop.example.com|"))
            clock.now += 600
        sentry_sdk.flush(timeout=5)
        events = stub.wait_for(2)
    finally:
        sentry_sdk.get_client().close(timeout=2)
        sentry_sdk.init()
        stub.stop()
    assert sent == [True, False, False, False, False, False, True]
    assert len(events) == 2
    assert events[0]["tags"]["alert"] == "missed_webhooks"
    assert events[0]["contexts"]["missed_webhooks"]["count"] == 3


def test_one_missed_webhooks_alert_an_hour_for_all_processes(database_url, monkeypatch):
    from magsync import alerts
    from magsync.ledger import Ledger, migrate

    sent = []
    monkeypatch.setattr(alerts, "capture_missed_webhooks", lambda count, key: sent.append(key))
    ledger = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(ledger.engine)
    key = "https://shop.example.com|missed-alert"
    ledger.start_watermark(key)
    clock = Clock(now=1_900_000_000.0)
    # Two worker processes' reporters (their own memory), one ledger.
    first, second = MissedWebhooks(clock=clock), MissedWebhooks(clock=clock)
    outcomes = []
    for _ in range(7):  # a pass every ten minutes for an hour, alternating processes
        outcomes.append(first.report(3, key, ledger))
        clock.now += 300
        outcomes.append(second.report(3, key, ledger))
        clock.now += 300
    ledger.close()
    assert outcomes == [True] + [False] * 11 + [True, False]
    assert sent == [key, key]


# -- the clock ----------------------------------------------------------------------------------


def test_the_schedule_sends_one_pass_an_interval_and_nothing_when_off(store):
    on = Settings.from_env({**store.settings(), "MAGSYNC_RECONCILE_INTERVAL": "7"})
    [entry] = beat_schedule(on).values()
    assert entry["task"] == "magsync.reconcile"
    assert entry["schedule"] == dt.timedelta(seconds=7)
    assert entry["options"]["expires"] == 7
    assert (
        beat_schedule(Settings.from_env({**store.settings(), "MAGSYNC_RECONCILE_INTERVAL": "0"}))
        == {}
    )
    assert beat_schedule(Settings.from_env({})) == {}


def test_without_the_stores_rest_api_the_clock_says_so_once_and_idles(tmp_path):
    clock = processes.Process(
        "clock", [str(processes.BIN / "magsync"), "clock"], {}, tmp_path / "clock.log"
    )
    try:
        clock.wait_for_log("reconciliation is off; the clock idles")
        wait_for(lambda: clock.alive(), what="the clock to keep running")
        time.sleep(1)  # it would have exited (or logged again) by now
        assert clock.alive()
        assert clock.log().count("reconciliation is off") == 1
        assert "MAGENTO_BASE_URL" in clock.log()
    finally:
        clock.stop()


def test_check_warns_when_reconciliation_is_off(store):
    def statuses(env):
        settings = Settings.from_env(env)
        return {
            f.subject: f.status
            for f in settings_check.findings(settings)
            if "RECONCIL" in f.subject.upper()
        }

    assert statuses({}) == {"reconciliation": "warn"}
    assert statuses({**store.settings(), "MAGSYNC_RECONCILE_INTERVAL": "0"}) == {
        "MAGSYNC_RECONCILE_INTERVAL": "warn"
    }
    assert statuses(store.settings()) == {"MAGSYNC_RECONCILE_INTERVAL": "ok"}


# -- the watermark in the ledger -------------------------------------------------------------------


def test_the_watermark_moves_forward_only_unless_set_by_hand(database_url):
    ledger = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    try:
        migrate.upgrade(ledger.engine)
        key = "https://shop.example.com|fr"
        assert ledger.watermark(key) is None
        first = ledger.start_watermark(key, naive("2026-01-01 00:00:00"))
        assert (first.updated_at, first.since) == (None, naive("2026-01-01 00:00:00"))
        # Made once: a later start (another clock, a restart) keeps the first run.
        assert ledger.start_watermark(key, naive("2026-02-01 00:00:00")) == first

        assert ledger.advance_watermark(key, naive(OLD), 7)
        assert not ledger.advance_watermark(key, naive(OLD), 5)  # a slower, older pass
        assert not ledger.advance_watermark(key, naive("2024-01-01 00:00:00"), 99)
        assert ledger.advance_watermark(key, naive(OLD), 8)
        mark = ledger.watermark(key)
        assert (mark.updated_at, mark.entity_id, mark.since) == (naive(OLD), 8, naive(OLD))
        assert mark.first_run_at == first.first_run_at

        back = ledger.set_watermark(key, naive("2023-06-01 00:00:00"))
        assert (back.updated_at, back.entity_id) == (naive("2023-06-01 00:00:00"), None)
        assert ledger.watermark("https://shop.example.com|") is None  # another store view
    finally:
        ledger.close()


def test_no_pass_while_the_orgs_api_usage_is_above_the_budget(
    org, store, tmp_path, services_factory
):
    from magsync.salesforce.pacing import ApiUsage
    from magsync.sync import pacing

    store.create_orders(3, at=OLD)
    settings = settings_for(store, org, f"sqlite:///{tmp_path / 'ledger.db'}")
    services = services_factory(settings)
    services.ledger.ready()
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    high = ApiUsage(used=900, limit=1000)  # 90%: above the budget (80%), under the halt
    # The probe (GET /limits in a worker) reads the same usage again.
    view = pacing.QuotaPacing(
        settings, services.ledger, probe=lambda: view.observe(high), alert=lambda *args: None
    )
    view.observe(high)
    searches, published = len(store.requests()), []
    pacing.install(view)
    try:
        result = run_pass(services, published.extend)
    finally:
        pacing.install(None)

    assert result.skipped == "api_budget"
    assert published == [] and len(store.requests()) == searches
    assert run_pass(services, published.extend).published == 3  # without pacing: it runs


@pytest.fixture
def worker_app():
    """A worker's Celery app whose tasks run here; the pacers its context installs are removed
    afterwards (they belong to a worker process, not to the test's)."""
    from magsync.salesforce import pacing as calls
    from magsync.sync import pacing as quota

    apps = []

    def make(settings):
        app = create_worker_app(settings)
        apps.append(app)
        return app

    yield make
    for app in apps:
        context = getattr(app, "magsync_context", None)
        if context is not None and context.built is not None:
            context.built.close()
        made = getattr(app, "magsync_reconcile_publisher", None)
        if made is not None:
            made[1].close()
    calls.install(None)
    quota.install(None)


def test_the_reconcile_task_runs_a_pass_and_a_failed_one_is_only_logged(
    org, store, tmp_path, rabbitmq_url, broker_namespace, worker_app, caplog
):
    placed = store.create_orders(4, at=OLD)
    settings = settings_for(
        store,
        org,
        f"sqlite:///{tmp_path / 'ledger.db'}",
        CELERY_BROKER_URL=rabbitmq_url,
        MAGSYNC_BROKER_NAMESPACE=broker_namespace,
    )
    ledger = Ledger(settings)
    ledger.ready()
    ledger.set_watermark(settings.store_key, naive(OLD))
    app = worker_app(settings)
    task = app.tasks["magsync.reconcile"]

    summary = task()
    assert (summary["scanned"], summary["published"]) == (4, 4)
    queued = queued_events(rabbitmq_url, f"{broker_namespace}.orders")
    assert sorted(e["increment_id"] for _, e in queued) == sorted(o["increment_id"] for o in placed)
    mark = ledger.watermark(settings.store_key)
    assert (mark.updated_at, mark.entity_id) == (naive(OLD), placed[-1]["entity_id"])

    store.place_order()
    store.stop()  # the store goes away: the next pass fails, the watermark stays
    assert task() == {"failed": "magento_unreachable"}
    assert "reconcile pass failed" in caplog.text
    assert ledger.watermark(settings.store_key) == mark
    assert queue_depth(rabbitmq_url, f"{broker_namespace}.orders") == 0
    ledger.close()


def test_a_version_published_lately_is_not_published_again_while_the_worker_has_it(
    org, store, tmp_path, services_factory
):
    placed = store.create_orders(3, at=OLD)
    settings = settings_for(
        store, org, f"sqlite:///{tmp_path / 'ledger.db'}", MAGSYNC_RECONCILE_OVERLAP="600"
    )
    services = services_factory(settings)
    services.ledger.ready()
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    clock = Clock()
    recent = RecentlyPublished(clock=clock)
    published = []

    assert run_pass(services, published.extend, recent=recent).published == 3
    # No worker applied them yet: the next pass finds them as new as before, and leaves them.
    store.invoice(placed[0]["entity_id"])  # a newer version is another matter
    again = run_pass(services, published.extend, recent=recent)
    assert (again.published, again.in_flight) == (1, 2)
    services.ledger.set_watermark(settings.store_key, naive(OLD))  # read them all again
    assert run_pass(services, published.extend, recent=recent).published == 0
    clock.now += 601  # longer than passes read back: published again
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    assert run_pass(services, published.extend, recent=recent).published == 3
    assert len(published) == 7


def test_a_pass_in_another_process_finds_the_lock_held_and_skips(org, store, database_url):
    import subprocess

    store.create_orders(2, at=OLD)
    env = {
        **processes.BASE_ENV,
        **store.settings(),
        **org.settings(),
        "DATABASE_URL": database_url,
        "MAGSYNC_BROKER_NAMESPACE": "magsync-never-published",
    }
    settings = Settings.from_env(env)
    ledger = Ledger(settings)
    try:
        migrate.upgrade(ledger.engine)
        ledger.set_watermark(settings.store_key, naive(OLD))
        with ledger.locks() as locks:  # this process's pass is under way
            assert locks.try_acquire("reconcile", settings.store_key)
            result = subprocess.run(
                [str(processes.BIN / "magsync"), "reconcile", "--now"],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "pass skipped: busy" in result.stdout
        assert ledger.watermark(settings.store_key).entity_id is None  # untouched
    finally:
        ledger.close()


def test_a_version_a_worker_dead_lettered_is_not_published_again_but_a_newer_one_is(
    org, store, tmp_path, services_factory
):
    placed = store.create_orders(3, at=OLD)
    settings = settings_for(store, org, f"sqlite:///{tmp_path / 'ledger.db'}")
    services = services_factory(settings)
    services.ledger.ready()
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    refused = placed[1]
    # A worker set this version aside (Salesforce refused it for good), after the save.
    services.ledger.note(refused["increment_id"], "dead_lettered", entity_id=refused["entity_id"])
    published = []

    result = run_pass(services, published.extend, recent=RecentlyPublished())
    assert (result.published, result.dead_lettered) == (2, 1)
    assert refused["increment_id"] not in {e["increment_id"] for e, _ in published}

    store.invoice(refused["entity_id"])  # saved again: a version no worker has tried
    services.ledger.set_watermark(settings.store_key, naive(OLD))
    again = run_pass(services, [].extend, recent=RecentlyPublished())
    assert (again.published, again.dead_lettered) == (3, 0)
