"""The sync ledger on SQLite and PostgreSQL: migrations, the records it keeps, the trace command,
and the per-order locks across processes."""

import datetime as dt
import multiprocessing
import os
import signal
import threading
import time
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy import text

from magsync.cli import main
from magsync.errors import RetryLater
from magsync.ledger import (
    Applied,
    Customer,
    Ledger,
    LedgerUnavailable,
    LockName,
    LockTimeout,
    Version,
    migrate,
)
from magsync.ledger.models import Base
from magsync.settings import ConfigError, Settings


def settings_for(url, **env):
    return Settings.from_env({"DATABASE_URL": url, **env})


@pytest.fixture
def ledger(database_url):
    ledger = Ledger(settings_for(database_url, MAGSYNC_LOCK_TIMEOUT="5"))
    migrate.upgrade(ledger.engine)
    yield ledger
    ledger.close()


def version(number="100000001", updated="2024-03-01 10:00:00", digest="a" * 64, **overrides):
    values = {
        "increment_id": number,
        "entity_id": 1,
        "store_id": 1,
        "updated_at": dt.datetime.fromisoformat(updated).replace(tzinfo=dt.UTC),
        "payload_hash": digest,
        "state": "new",
        "customer_email": "ana@example.com",
        "source": "webhook",
    }
    return Version(**{**values, **overrides})


# -- settings -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "url"),
    [
        ("postgres://u:p@db.example.com:5432/d", "postgresql+psycopg://u:p@db.example.com:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:////srv/magsync/ledger.db", "sqlite:////srv/magsync/ledger.db"),
    ],
)
def test_database_url_is_normalised_for_sqlalchemy(raw, url):
    assert settings_for(raw).database_url == url


@pytest.mark.parametrize("raw", ["mysql://u@h/d", "sqlite://", "sqlite:///:memory:", "ledger.db"])
def test_unusable_database_urls_are_refused_by_name(raw):
    with pytest.raises(ConfigError, match="DATABASE_URL"):
        settings_for(raw)


def test_the_database_url_is_a_secret():
    described = dict(settings_for("postgres://u:hunter2@h/d").describe())
    assert described["DATABASE_URL"] == "(set)"


def test_default_ledger_is_a_sqlite_file_under_var():
    assert Settings.from_env({}).database_url == "sqlite:///var/magsync.db"


# -- schema -------------------------------------------------------------------------------------


def test_migrations_create_exactly_the_models_and_run_once(database_url):
    ledger = Ledger(settings_for(database_url))
    try:
        assert migrate.upgrade(ledger.engine) == (None, migrate.head_revision())
        assert migrate.upgrade(ledger.engine) == (migrate.head_revision(),) * 2
        with ledger.engine.connect() as connection:
            differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
        assert differences == []
    finally:
        ledger.close()


def test_sqlite_ledger_creates_and_migrates_itself(tmp_path):
    ledger = Ledger(settings_for(f"sqlite:///{tmp_path / 'new' / 'ledger.db'}"))
    try:
        ledger.ready()
        assert ledger.order("1") is None
        with ledger.engine.connect() as connection:
            assert migrate.current_revision(connection) == migrate.head_revision()
    finally:
        ledger.close()


@pytest.mark.postgres
def test_postgres_ledger_waits_for_the_release_migration(postgres_url):
    from tests.databases import postgres_database

    with postgres_database(postgres_url) as url:
        ledger = Ledger(settings_for(url))
        try:
            with pytest.raises(LedgerUnavailable) as info:
                ledger.ready()
            assert isinstance(info.value, RetryLater)
            assert "magsync db upgrade" in str(info.value)
            result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": url})
            assert result.exit_code == 0, result.output
            assert f"migrated from empty to {migrate.head_revision()}" in result.output
            ledger.ready()
        finally:
            ledger.close()


def test_db_commands(tmp_path):
    env = {"DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}"}
    runner = CliRunner()
    result = runner.invoke(main, ["db", "current"], env=env)
    assert result.exit_code == 1
    assert "no ledger database" in result.output
    result = runner.invoke(main, ["db", "upgrade"], env=env)
    assert result.exit_code == 0, result.output
    assert f"migrated from empty to {migrate.head_revision()}" in result.output
    result = runner.invoke(main, ["db", "upgrade"], env=env)
    assert f"already at revision {migrate.head_revision()}" in result.output
    result = runner.invoke(main, ["db", "current"], env=env)
    head = migrate.head_revision()
    assert f"revision {head} (this magsync needs {head}; current)" in result.output


def test_db_upgrade_names_a_bad_database_url():
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": "mysql://x/y"})
    assert result.exit_code == 1
    assert "DATABASE_URL must be a sqlite:/// or postgresql:// URL" in result.output


def test_db_upgrade_does_not_print_the_password():
    url = "postgresql://magsync:s3cret-pw@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"DATABASE_URL": url})
    assert result.exit_code == 1
    assert "s3cret-pw" not in result.output
    assert "migrating postgresql+psycopg://magsync:***@127.0.0.1:1/nowhere failed" in result.output


# -- what the ledger records ---------------------------------------------------------------------


def test_versions_applied_skipped_and_noted(ledger):
    first = version()
    assert ledger.begin(first) == 1
    state = ledger.order(first.increment_id)
    assert state.status == "applying" and state.in_doubt and state.updated_at is None
    assert ledger.begin(first) == 2  # the same version again: a second attempt

    ledger.applied(
        first,
        Applied(
            "Opportunity",
            "006000000000001AAA",
            True,
            stage="Prospecting",
            account_id="001000000000001AAA",
            contact_id="003000000000001AAA",
            contact_role_id="00K000000000001AAA",
            new_customer=Customer("ana@example.com", "001000000000001AAA", "003000000000001AAA"),
            api_calls=2,
        ),
    )
    state = ledger.order(first.increment_id)
    assert (state.status, state.in_doubt, state.attempts) == ("synced", False, 2)
    assert state.updated_at == dt.datetime(2024, 3, 1, 10, 0, 0)
    assert (state.record_id, state.stage) == ("006000000000001AAA", "Prospecting")
    assert ledger.customer("ana@example.com").contact_id == "003000000000001AAA"

    newer_same_fields = version(updated="2024-03-01 10:05:00")
    ledger.skip(newer_same_fields, "unchanged")
    assert ledger.order(first.increment_id).updated_at == dt.datetime(2024, 3, 1, 10, 5, 0)
    ledger.skip(version(updated="2024-03-01 09:00:00", digest="b" * 64), "stale")
    assert ledger.order(first.increment_id).updated_at == dt.datetime(2024, 3, 1, 10, 5, 0)

    ledger.note(first.increment_id, "retried", RetryLater("Salesforce 503", reason="http_503"), 3)
    state = ledger.order(first.increment_id)
    assert (state.status, state.attempts) == ("retrying", 3)
    assert state.last_error == "http_503: Salesforce 503"

    _, events = ledger.history(first.increment_id)
    assert [e.kind for e in events] == [
        "received",
        "received",
        "synced",
        "received",
        "skipped_unchanged",
        "received",
        "skipped_stale",
        "retried",
    ]
    synced = events[2]
    assert synced.record_id == "006000000000001AAA"
    assert synced.detail["api_calls"] == 2
    assert ledger.event_counts()["received"] == 4


def test_an_outcome_for_an_order_never_seen_creates_its_row(ledger):
    ledger.note("100000777", "dead_lettered", RetryLater("gone", reason="x"), 1, entity_id=777)
    state = ledger.order("100000777")
    assert (state.status, state.entity_id, state.updated_at) == ("dead_lettered", 777, None)


def test_forgetting_a_customer(ledger):
    ledger.applied(
        version(),
        Applied("Opportunity", "006A", True, new_customer=Customer("ana@example.com", "1", "3")),
    )
    ledger.forget_customer("ana@example.com")
    assert ledger.customer("ana@example.com") is None


def test_trace_says_whether_a_write_in_doubt_may_still_land_also_after_a_dead_letter(
    database_url, ledger
):
    def doubt_line():
        env = {"DATABASE_URL": database_url}
        result = CliRunner().invoke(main, ["trace", "100000001"], env=env)
        assert result.exit_code == 0, result.output
        [line] = [x for x in result.output.splitlines() if "unconfirmed write" in x]
        return line

    ledger.begin(version())
    assert doubt_line().endswith("(may still land)")  # a worker killed now leaves it so
    ledger.failed([(version(), "unanswered")])
    ledger.note("100000001", "dead_lettered", RetryLater("no answer", reason="timeout"), 1)
    assert ledger.order("100000001").status == "dead_lettered"
    assert doubt_line().endswith("(may still land)")

    ledger.begin(version())
    ledger.failed([(version(), "failed")])
    ledger.note("100000001", "dead_lettered", RetryLater("refused", reason="x"), 2)
    assert doubt_line().endswith("(Salesforce answered: cannot land)")


def test_trace_prints_the_history_with_the_salesforce_ids(database_url, ledger):
    applied = Applied(
        "Opportunity",
        "006000000000001AAA",
        True,
        stage="Closed Won",
        account_id="001000000000001AAA",
        contact_id="003000000000001AAA",
        contact_role_id="00K000000000001AAA",
        api_calls=2,
    )
    ledger.begin(version())
    ledger.applied(version(), applied)
    ledger.skip(version(), "unchanged")
    result = CliRunner().invoke(main, ["trace", "100000001"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "order 100000001  entity 1  store 1  buyer ana@example.com"
    assert lines[1] == (
        "  Opportunity 006000000000001AAA  account 001000000000001AAA"
        "  contact 003000000000001AAA  contact role 00K000000000001AAA"
    )
    assert "status synced  attempts 1  last applied 2024-03-01 10:00:00" in lines[2]
    history = lines[lines.index("history") + 1 :]
    assert [line.split()[2] for line in history] == [
        "received",
        "synced",
        "received",
        "skipped_unchanged",
    ]
    assert "Opportunity 006000000000001AAA  created  stage=Closed Won" in history[1]
    assert "api_calls=2" in history[1]

    result = CliRunner().invoke(
        main, ["trace", "100000001", "--json"], env={"DATABASE_URL": database_url}
    )
    assert '"record_id": "006000000000001AAA"' in result.output
    result = CliRunner().invoke(main, ["trace", "999"], env={"DATABASE_URL": database_url})
    assert result.exit_code == 1
    assert "order 999 is not in the ledger" in result.output


# -- locks --------------------------------------------------------------------------------------


def _count_under_lock(url, counter, rounds):
    ledger = Ledger(settings_for(url, MAGSYNC_LOCK_TIMEOUT="60"))
    try:
        for _ in range(rounds):
            with ledger.locks() as locks:
                locks.acquire("order", "100000042")
                # Read, pause, write: without the lock, processes overwrite each other's counts.
                value = int(Path(counter).read_text() or 0)
                time.sleep(0.002)
                Path(counter).write_text(str(value + 1))
    finally:
        ledger.close()


def _hold_until_killed(url, ready):
    ledger = Ledger(settings_for(url))
    with ledger.locks() as locks:
        locks.acquire("order", "100000043")
        Path(ready).write_text("held")
        time.sleep(600)


def test_one_order_is_held_by_one_process_at_a_time(ledger, database_url, tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    spawn = multiprocessing.get_context("spawn")
    workers = [
        spawn.Process(target=_count_under_lock, args=(database_url, str(counter), 25))
        for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    assert counter.read_text() == "100"


def test_a_killed_holder_releases_its_locks(ledger, database_url, tmp_path):
    ready = tmp_path / "ready"
    holder = multiprocessing.get_context("spawn").Process(
        target=_hold_until_killed, args=(database_url, str(ready))
    )
    holder.start()
    impatient = Ledger(ledger.settings.replace(lock_timeout=0.3))
    try:
        deadline = time.monotonic() + 60
        while not ready.exists():
            assert time.monotonic() < deadline and holder.is_alive()
            time.sleep(0.05)
        with impatient.locks() as locks, pytest.raises(LockTimeout):
            locks.acquire("order", "100000043")
        os.kill(holder.pid, signal.SIGKILL)
        holder.join(10)
        # Had the dead holder kept the lock, this would raise LockTimeout after the ledger's
        # MAGSYNC_LOCK_TIMEOUT (5 s): nothing but its death releases it (it sleeps 600 s).
        with ledger.locks() as locks:
            locks.acquire("order", "100000043")
    finally:
        impatient.close()
        if holder.is_alive():
            holder.kill()
            holder.join(10)


def test_other_keys_do_not_wait_and_a_held_key_times_out(ledger):
    impatient = Ledger(ledger.settings.replace(lock_timeout=0.3))
    try:
        with ledger.locks() as first:
            first.acquire("order", "100000001")
            first.acquire("customer", "ana@example.com")
            # ``first`` holds its locks until the end of this block, and ``impatient`` raises
            # LockTimeout after 0.3 s of waiting: keys that waited on the held ones would raise.
            with impatient.locks() as second:
                second.acquire("order", "100000002")
                second.acquire("customer", "bob@example.com")
            with impatient.locks() as third, pytest.raises(LockTimeout) as info:
                third.acquire("order", "100000001")
        assert info.value.reason == "lock_timeout"
        assert isinstance(info.value, RetryLater)
        with impatient.locks() as fourth:
            fourth.acquire("order", "100000001")  # free again once the first session ended
    finally:
        impatient.close()


def test_a_batch_and_single_orders_take_their_locks_in_one_order(ledger):
    """A batch names its locks in any order and takes them as single orders do (an edit before
    the order it replaced, orders before customers): neither ever waits on the other in a
    cycle, so both finish well inside the lock timeout."""
    child = LockName("order", "100000050-1", 1)
    parent = LockName("order", "100000050", 0)
    customer = LockName("customer", "ana@example.com")
    single_has_child = threading.Event()
    errors = []

    def single():
        try:
            with ledger.locks() as locks:
                locks.acquire_many([child, parent][:1])
                single_has_child.set()
                time.sleep(0.3)  # the batch is waiting meanwhile
                locks.acquire_many([parent])
                locks.acquire_many([customer])
        except Exception as exc:  # reported below
            errors.append(exc)

    thread = threading.Thread(target=single)
    thread.start()
    single_has_child.wait(10)
    started = time.monotonic()
    with ledger.locks() as locks:
        # Named parent first: taken child first, so it waits behind the single order instead of
        # holding the parent it needs.
        locks.acquire_many([customer, parent, child])
    thread.join(30)
    assert errors == []
    assert time.monotonic() - started < ledger.settings.lock_timeout / 2


@pytest.mark.postgres
def test_a_batch_of_locks_is_one_connection_and_one_statement(postgres_url):
    from tests.databases import postgres_database

    with postgres_database(postgres_url) as url:
        ledger = Ledger(Settings.from_env({"DATABASE_URL": url}))
        statements = []
        try:
            migrate.upgrade(ledger.engine)
            from sqlalchemy import event

            event.listen(
                ledger.engine,
                "before_cursor_execute",
                lambda conn, cursor, statement, *args: statements.append(statement),
            )
            names = [LockName("order", f"1000001{n:02d}") for n in range(50)]
            with ledger.locks() as locks:
                locks.acquire_many([*names, LockName("customer", "ana@example.com")])
                with ledger.engine.connect() as probe:
                    held = probe.execute(
                        text(
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                            "AND database = (SELECT oid FROM pg_database "
                            "WHERE datname = current_database())"
                        )
                    ).scalar()
            assert held == 51
            assert len([s for s in statements if "pg_advisory_xact_lock" in s]) == 1
        finally:
            ledger.close()


@pytest.mark.postgres
def test_entity_ids_past_32_bits_fit_the_postgres_ledger(postgres_url):
    """Magento's ids are unsigned 32-bit; PostgreSQL's ``integer`` would refuse the upper half."""
    from tests.databases import postgres_database

    with postgres_database(postgres_url) as url:
        ledger = Ledger(Settings.from_env({"DATABASE_URL": url}))
        try:
            migrate.upgrade(ledger.engine)
            ledger.ready()
            big = version(number="100000077", entity_id=4_294_967_295, store_id=4_294_967_295)
            ledger.begin(big)
            assert ledger.order("100000077").entity_id == 4_294_967_295
        finally:
            ledger.close()
