"""``magsync backfill`` end to end: the real command and a real backfill worker process, RabbitMQ
(a namespace of the test's own), the sandbox store and org over HTTP(S), a SQLite ledger.

Below ``MAGSYNC_BULK_THRESHOLD`` the history goes through the backfill queue (never the live one)
and a rerun costs nothing; above it Opportunities go through Bulk API 2.0 jobs, a refused row
becoming a dead letter with Salesforce's ``sf__Error``; Ctrl-C stops at a checkpoint from which
the same command resumes, publishing no order twice; ``--dry-run`` only counts.
"""

import signal
import subprocess
import uuid

import pytest

from magsync.ledger import Ledger
from magsync.ledger.models import utcnow
from magsync.messaging.app import create_celery
from magsync.messaging.dead_letters import DeadLetters
from magsync.sandbox.magento import SandboxStore
from magsync.settings import Settings
from tests import processes
from tests.helpers import approval_schema, queue_depth, wait_for

pytestmark = pytest.mark.slow

PAST = "2024-02-01 09:00:00"


class Stack:
    """The store, the org, the ledger and the broker namespace of one test."""

    def __init__(self, store, org, rabbitmq_url, namespace, tmp_path, **env):
        self.store = store
        self.org = org
        self.rabbitmq_url = rabbitmq_url
        self.namespace = namespace
        self.tmp_path = tmp_path
        self.env = {
            **store.settings(),
            **org.settings(),
            "CELERY_BROKER_URL": rabbitmq_url,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "SALESFORCE_RATE_LIMIT": "100000/s",
            "MAGSYNC_BACKFILL_RATE_LIMIT": "100000/s",
            "MAGSYNC_RECONCILE_PAGE_SIZE": "50",
            **{k: str(v) for k, v in env.items()},
        }
        self.settings = Settings.from_env(self.env)
        self.ledger = Ledger(self.settings)
        self.ledger.ready()
        self.workers = []

    def backfill(self, *args, **env):
        """Run ``magsync backfill ARGS`` to its end; the completed process (text output)."""
        return subprocess.run(
            [str(processes.BIN / "magsync"), "backfill", *args],
            env={**processes.BASE_ENV, **self.env, **env},
            cwd=processes.ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    def start_backfill(self, *args):
        return subprocess.Popen(
            [str(processes.BIN / "magsync"), "backfill", *args],
            env={**processes.BASE_ENV, **self.env},
            cwd=processes.ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def backfill_worker(self):
        name = f"bf-{uuid.uuid4().hex[:6]}"
        argv = [str(processes.BIN / "magsync"), "worker", "--queues", "backfill"]
        argv += ["--hostname", f"{name}@%h"]
        process = processes.Process(name, argv, self.env, self.tmp_path / f"{name}.log")
        self.workers.append(process)
        process.wait_for_log(" ready.", timeout=90)
        return process

    def depth(self, kind):
        return queue_depth(self.rabbitmq_url, f"{self.namespace}.{kind}")

    def opportunities(self):
        found = {}
        for record in self.org.records("Opportunity"):
            found.setdefault(record["Magento_Order_ID__c"], []).append(record)
        return found

    def calls(self):
        return self.org.stats()["api_calls"]

    def close(self):
        for worker in self.workers:
            worker.stop()
        self.ledger.close()


@pytest.fixture
def stack_factory(rabbitmq_url, broker_namespace, org_factory, tmp_path):
    made = []

    def make(org=None, customers=40, **env):
        store = SandboxStore(seed=3, customers=customers).start()
        stack = Stack(store, org or org_factory(), rabbitmq_url, broker_namespace, tmp_path, **env)
        made.append(stack)
        return stack

    yield make
    for stack in made:
        stack.close()
        stack.store.stop()


def place(store, count, at=PAST, **overrides):
    return store.create_orders(count, at=at, **overrides)


def test_a_backfill_through_the_queue_syncs_history_and_a_rerun_costs_nothing(stack_factory):
    stack = stack_factory()
    orders = place(stack.store, 120) + place(stack.store, 30, at="2024-03-01 10:00:00")
    place(stack.store, 5, at="2023-12-31 23:00:00")  # before --since: not backfilled
    stack.backfill_worker()

    done = stack.backfill("--since", "2024-01-01")
    assert done.returncode == 0, done.stderr
    assert "backfill finished: 150 scanned, 150 to sync, 150 synced, 0 failed (queue" in (
        done.stdout
    )
    found = stack.opportunities()
    assert sorted(found) == sorted(o["increment_id"] for o in orders)
    assert all(len(records) == 1 for records in found.values())
    assert len(stack.org.records("OpportunityContactRole")) == 150
    state = stack.ledger.order(orders[0]["increment_id"])
    assert state.status == "synced" and state.record_id
    # Nothing went through the live queue: the worker consuming backfill is the only one, and
    # the live queue was never declared with a message in it.
    assert stack.depth("orders") == 0 and stack.depth("backfill") == 0
    # Not a terminal: one progress line every few seconds, at least the final one.
    assert "backfill: scanned 150/150, to sync 150, synced 150, failed 0" in done.stderr
    assert "no backfill worker" not in done.stderr

    calls = stack.calls()
    again = stack.backfill("--since", "2024-01-01")
    assert again.returncode == 0, again.stderr
    assert "150 scanned, 0 to sync, 0 synced, 0 failed" in again.stdout
    assert stack.calls() == calls
    assert stack.depth("backfill") == 0


def test_a_dry_run_counts_new_changed_and_unchanged(stack_factory):
    stack = stack_factory()
    orders = place(stack.store, 40)
    stack.backfill_worker()
    assert stack.backfill("--since", "2024-01-01").returncode == 0
    for order in orders[:3]:
        stack.store.invoice(order["entity_id"])
    place(stack.store, 4)
    calls = stack.calls()

    counted = stack.backfill("--since", "2024-01-01", "--dry-run")
    assert counted.returncode == 0, counted.stderr
    assert "dry run: 44 orders scanned: 4 new, 3 changed, 37 unchanged" in counted.stdout
    assert stack.calls() == calls
    assert stack.depth("backfill") == 0
    assert len(stack.opportunities()) == 40


def test_ctrl_c_stops_at_a_checkpoint_and_the_same_command_resumes(stack_factory):
    # One order a page: each page is a search, a ledger read, a confirmed publish and a
    # checkpoint, so the run lasts long enough to be interrupted.
    stack = stack_factory(MAGSYNC_RECONCILE_PAGE_SIZE="1")
    place(stack.store, 150)
    run = stack.start_backfill("--since", "2024-01-01", "--no-wait")

    def checkpoint():
        kept = stack.ledger.backfills()
        return kept[0] if kept and kept[0].scanned >= 5 else None

    wait_for(checkpoint, 60, "the first pages")
    run.send_signal(signal.SIGINT)
    out, err = run.communicate(timeout=60)
    assert run.returncode == 130, err
    assert "backfill stopped" in out and "run the same command again to resume" in out
    assert f"warning: no backfill worker consumes {stack.namespace}.backfill" in err
    [kept] = stack.ledger.backfills()
    assert 5 <= kept.scanned < 150 and kept.finished_at is None and kept.cursor is not None
    assert stack.depth("backfill") == kept.to_sync == kept.scanned

    resumed = stack.backfill("--since", "2024-01-01", "--no-wait")
    assert resumed.returncode == 0, resumed.stderr
    assert "backfill finished: 150 scanned, 150 to sync" in resumed.stdout
    assert f"s, resumed after {kept.scanned})" in resumed.stdout
    # Each order published once: the rerun went on after the checkpoint.
    wait_for(lambda: stack.depth("backfill") == 150, 10, "150 messages")
    [finished] = stack.ledger.backfills()
    assert finished.finished_at is not None and finished.scanned == 150


def test_a_large_backfill_writes_through_bulk_api_and_dead_letters_refused_rows(
    stack_factory, org_factory
):
    schema = approval_schema()
    stack = stack_factory(org=org_factory(schema=schema), MAGSYNC_BULK_THRESHOLD="100")
    orders = place(stack.store, 160)
    [refused] = place(stack.store, 1, grand_total=300000)

    done = stack.backfill("--since", "2024-01-01")
    assert done.returncode == 0, done.stderr
    assert "161 scanned, 161 to sync, 160 synced, 1 failed (bulk" in done.stdout
    found = stack.opportunities()
    assert sorted(found) == sorted(o["increment_id"] for o in orders)
    assert len(stack.org.records("OpportunityContactRole")) == 160
    jobs = stack.org.bulk_jobs()
    assert [(j["object"], j["operation"], j["state"]) for j in jobs] == [
        ("Opportunity", "upsert", "JobComplete"),
        ("OpportunityContactRole", "insert", "JobComplete"),
    ]
    state = stack.ledger.order(orders[0]["increment_id"])
    assert state.status == "synced"
    assert state.record_id == found[orders[0]["increment_id"]][0]["Id"]
    assert state.contact_role_id
    assert stack.ledger.order(refused["increment_id"]).status == "dead_lettered"

    celery = create_celery(stack.settings)
    [letter] = DeadLetters(celery, celery.magsync_topology).browse()
    assert letter.order == refused["increment_id"]
    assert letter.code == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    assert "Orders over 250,000 need a manual approval." in letter.reason["message"]
    # Buyers in batches, then two jobs: far below one call per order.
    assert stack.calls() / 161 <= 0.2
    kinds = stack.org.stats()["calls_by_kind"]
    assert "upsert" not in kinds and "composite" in kinds

    calls = stack.calls()
    again = stack.backfill("--since", "2024-01-01")
    assert "161 scanned, 1 to sync" in again.stdout, again.stderr
    # The refused order is to sync again (nothing was applied); the others cost nothing.
    assert stack.calls() - calls <= 12


def test_the_backfill_worker_waits_while_the_orgs_usage_pauses_backfills(stack_factory):
    stack = stack_factory(MAGSYNC_API_PROBE_INTERVAL="1")
    orders = place(stack.store, 30)
    # The org is past MAGSYNC_API_BUDGET (80 %) but under the halt: live orders would run.
    stack.org.set_limits(daily_limit=10_000, api_usage=8_500)
    stack.ledger.share_api_usage(8_500, 10_000, utcnow(), 0.95)
    worker = stack.backfill_worker()
    run = stack.start_backfill("--since", "2024-01-01")

    wait_for(lambda: worker.log().count("retry: Retry in") >= 30, 60, "every order to wait")
    assert stack.opportunities() == {}
    stack.org.set_limits(api_usage=1_000)  # the next probe (GET /limits) reads it
    out, err = run.communicate(timeout=90)
    assert run.returncode == 0, err
    assert "30 scanned, 30 to sync, 30 synced, 0 failed" in out
    assert len(stack.opportunities()) == len(orders)
    assert stack.org.stats()["calls_by_kind"].get("limits", 0) >= 1
