"""Salesforce authentication in real ``magsync worker`` processes on RabbitMQ against the sandbox
org: a token expiry in the middle of a burst, revoked credentials (retried, alerted once per
process, synced once fixed), and what the worker does at start-up with bad credentials or
without Salesforce."""

import copy
import itertools
import subprocess
import time
from pathlib import Path

import pytest

from magsync.messaging.app import create_celery
from magsync.messaging.broker import Publisher
from magsync.settings import Settings
from tests import processes
from tests.helpers import load_fixture, wait_for
from tests.sentry_stub import SentryStub

pytestmark = pytest.mark.slow

SEED_ORDER = load_fixture("seed_webhook.json")["order"]
_numbers = itertools.count(1)


@pytest.fixture
def sentry():
    stub = SentryStub().start()
    yield stub
    stub.stop()


class Fleet:
    """Worker processes, a publisher and the org, for one test."""

    def __init__(self, org, rabbitmq_url, namespace, logs, **env):
        self.org = org
        self.logs = logs
        self.env = {
            **org.settings(),
            "CELERY_BROKER_URL": rabbitmq_url,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "DATABASE_URL": f"sqlite:///{logs}/ledger.db",
            "MAGSYNC_RETRY_BACKOFF": "1",
            "MAGSYNC_RETRY_BACKOFF_MAX": "2",
            "LOG_LEVEL": "INFO",
            # Prefork workers of one order per process: these tests count processes.
            "MAGSYNC_BATCH_SIZE": "1",
            **env,
        }
        self.celery = create_celery(Settings.from_env(self.env))
        self.publisher = Publisher(self.celery, self.celery.magsync_topology, 5)
        self.workers = []
        self.prefix = f"5{namespace[-5:]}"

    def start(self, count, concurrency):
        """``count`` workers of ``concurrency`` processes each, started side by side."""
        starting = [
            processes.Process(
                f"worker-{i}",
                [
                    str(processes.BIN / "magsync"),
                    "worker",
                    "--hostname",
                    f"auth{i}-{self.prefix}@%h",
                    "--concurrency",
                    str(concurrency),
                ],
                self.env,
                Path(self.logs) / f"worker-{i}.log",
            )
            for i in range(count)
        ]
        self.workers.extend(starting)
        for worker in starting:
            worker.wait_for_log(" ready.", timeout=60)

    def publish(self, count):
        """``count`` new orders, each of its own buyer; their numbers."""
        numbers = []
        for _ in range(count):
            n = next(_numbers)
            order = copy.deepcopy(SEED_ORDER)
            order.update(
                entity_id=50000 + n,
                increment_id=f"{self.prefix}{n:05d}",
                customer_email=f"buyer{n}@{self.prefix}.example.com",
            )
            event = {
                "event": "sales_order_save_after",
                "entity_id": order["entity_id"],
                "increment_id": order["increment_id"],
                "updated_at": order["updated_at"],
                "order": order,
            }
            self.publisher.publish(event, f"{order['increment_id']}:auth")
            numbers.append(order["increment_id"])
        return numbers

    def synced(self, numbers):
        wanted = set(numbers)
        return [
            r["Magento_Order_ID__c"]
            for r in self.org.records("Opportunity")
            if r.get("Magento_Order_ID__c") in wanted
        ]

    def log_lines(self, message):
        return [line for w in self.workers for line in w.log().splitlines() if message in line]

    def shut_down(self):
        """Stop the workers gracefully: their pool processes send the Sentry events they still
        hold as they exit, so afterwards every event the workers captured has arrived."""
        assert processes.shut_down(*self.workers) == [0] * len(self.workers)

    def close(self):
        for worker in self.workers:
            worker.stop()
        self.publisher.close()


@pytest.fixture
def fleet_factory(org_factory, rabbitmq_url, broker_namespace, tmp_path):
    made = []

    def make(org=None, **env):
        fleet = Fleet(org or org_factory(), rabbitmq_url, broker_namespace, tmp_path, **env)
        made.append(fleet)
        return fleet

    yield make
    for fleet in made:
        fleet.close()


def secrets_in(org):
    """What must never be printed: the access tokens' common prefix and the private key."""
    key = Path(org.client_key_path).read_text().splitlines()[1:-1]
    return [f"{org.org_id[:15]}!AQ", *key]


def test_token_expiry_mid_burst_costs_one_token_request_per_process(fleet_factory, org_factory):
    org = org_factory(latency_ms=10)
    fleet = fleet_factory(org, MAGSYNC_CIRCUIT_THRESHOLD="1000")
    fleet.start(count=2, concurrency=2)  # four worker processes
    org.reset_stats()  # the start-up checks' tokens are not the burst's
    started = time.monotonic()
    numbers = fleet.publish(200)
    wait_for(lambda: len(fleet.synced(numbers)) >= 40, 60, "the burst to be under way")
    before = org.stats()
    org.expire_tokens()
    synced_at_expiry = len(fleet.synced(numbers))
    wait_for(lambda: len(fleet.synced(numbers)) == 200, timeout=120, what="all 200 orders")
    elapsed = time.monotonic() - started
    after = org.stats()

    assert synced_at_expiry < 150, "the expiry must fall in the middle of the burst"
    # Each process: one token for its first order, one after the expiry; never one per order.
    assert before["token_requests"] == {"jwt-bearer": 4}
    assert after["token_requests"] == {"jwt-bearer": 8}
    assert after["rejected"] == {"INVALID_SESSION_ID": 4}
    assert sorted(fleet.synced(numbers)) == sorted(numbers)  # each order once
    assert not fleet.log_lines("order sync will be retried")
    print(f"burst of 200 orders on 4 processes: {elapsed:.1f} s, expiry after {synced_at_expiry}")


def test_revoked_credentials_are_retried_alerted_once_per_process_and_sync_once_fixed(
    fleet_factory, sentry
):
    fleet = fleet_factory(
        SENTRY_DSN=sentry.dsn,
        SALESFORCE_TOKEN_RETRY_INTERVAL="1",
        MAGSYNC_CIRCUIT_COOLDOWN="1",
    )
    org = fleet.org
    fleet.start(count=2, concurrency=2)
    org.revoke_user()
    org.expire_tokens()  # a revocation ends the sessions too
    revoked_at = time.monotonic()
    numbers = fleet.publish(40)

    wait_for(lambda: len(sentry.events()) >= 4, 60, "an alert from each process")
    wait_for(
        lambda: len(fleet.log_lines("order sync will be retried")) >= 40,
        60,
        "the orders to be retried",
    )
    # Refusals go on after each process's first (about one a second per process); the alerts
    # stay one per process, counted once the workers have stopped (at the end).
    wait_for(
        lambda: org.stats()["token_errors"].get("invalid_grant", 0) >= 12,
        60,
        "refusals after the first ones",
    )
    events = sentry.events()
    assert {e["tags"]["alert"] for e in events} == {"salesforce_auth"}
    assert {e["tags"]["reason"] for e in events} == {"invalid_grant"}
    assert len({e["contexts"]["salesforce_auth"]["pid"] for e in events}) == 4
    assert fleet.synced(numbers) == []
    retried = fleet.log_lines("order sync will be retried")
    assert all("reason=invalid_grant" in line for line in retried)
    # A process asks the token endpoint again only once SALESFORCE_TOKEN_RETRY_INTERVAL (1 s)
    # has passed since its last refusal, however many orders it tries meanwhile.
    token_errors = org.stats()["token_errors"]["invalid_grant"]
    assert token_errors <= 4 * (time.monotonic() - revoked_at + 1)

    org.restore_user()
    wait_for(lambda: len(fleet.synced(numbers)) == 40, 60, "the orders once fixed")
    assert sorted(fleet.synced(numbers)) == sorted(numbers)
    # Each process that has synced an order since says so once (one may have had none yet).
    assert 1 <= len(fleet.log_lines("salesforce authentication recovered")) <= 4
    fleet.shut_down()
    events = sentry.events()
    assert len(events) == 4, [e.get("message") for e in events]  # through outage and recovery
    assert len({e["contexts"]["salesforce_auth"]["pid"] for e in events}) == 4
    printed = "\n".join(w.log() for w in fleet.workers)
    raw = b"".join(sentry.raw())
    for secret in secrets_in(org):
        assert secret not in printed
        assert secret.encode() not in raw
    print(f"revoked: {len(retried)} retries, {token_errors} token requests, {len(events)} alerts")


def run_worker(env, timeout=60):
    return subprocess.run(
        [str(processes.BIN / "magsync"), "worker"],
        env={**processes.BASE_ENV, **env},
        cwd=processes.ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_worker_with_refused_credentials_does_not_start(org_factory, sentry, tmp_path):
    org = org_factory()
    env = {
        **org.settings(),
        "SALESFORCE_USERNAME": "nobody@example.com",
        "SENTRY_DSN": sentry.dsn,
        "DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db",
    }
    result = run_worker(env)
    assert result.returncode == 1
    assert "Salesforce refused the worker's credentials" in result.stderr
    assert "cause: the user is unknown, or not pre-authorised" in result.stderr
    assert "fix:   check SALESFORCE_USERNAME" in result.stderr
    assert "celery" not in result.stderr.lower()
    [event] = sentry.wait_for(1)
    assert event["tags"]["alert"] == "salesforce_auth"
    for secret in secrets_in(org):
        assert secret not in result.stderr + result.stdout
        assert all(secret.encode() not in raw for raw in sentry.raw())


def test_a_worker_starts_while_salesforce_is_unreachable(
    org_factory, rabbitmq_url, broker_namespace, unused_port, tmp_path
):
    org = org_factory()
    env = {
        **org.settings(),
        "SALESFORCE_LOGIN_URL": f"https://127.0.0.1:{unused_port}",
        "SALESFORCE_TIMEOUT": "2",
        "CELERY_BROKER_URL": rabbitmq_url,
        "MAGSYNC_BROKER_NAMESPACE": broker_namespace,
        "DATABASE_URL": f"sqlite:///{tmp_path}/ledger.db",
    }
    worker = processes.start_worker(env, tmp_path, name="offline", concurrency=1)
    try:
        assert "could not obtain a Salesforce token" in worker.log()
        assert "Starting anyway: orders are retried with backoff" in worker.log()
        assert worker.alive()
    finally:
        worker.stop()
