"""Delivery guarantees with real ``magsync worker`` processes on RabbitMQ against the sandbox org:
retries, the retry window, Retry-After, dead letters (with their reason, listed and replayed
through the CLI), the circuit breaker, the rate-limit command, orders waiting while the org's API
usage is past the halt threshold, Sentry, and RabbitMQ's consumer timeout."""

import contextlib
import copy
import itertools
import json
import subprocess
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from magsync.cli import main
from magsync.messaging.app import create_celery
from magsync.messaging.broker import Publisher
from magsync.messaging.dead_letters import DeadLetters
from magsync.settings import Settings
from tests import processes, services
from tests.helpers import delete_namespace, load_fixture, queue_consumers, wait_for
from tests.sentry_stub import SentryStub

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

SEED_ORDER = load_fixture("seed_webhook.json")["order"]
_numbers = itertools.count(1)


class Harness:
    """Org, broker namespace, Sentry stub and worker processes for one test module."""

    def __init__(self, org, namespace, sentry, logs):
        self.org = org
        self.namespace = namespace
        self.sentry = sentry
        self.logs = logs
        self.env = {
            **org.settings(),
            "CELERY_BROKER_URL": services.RABBITMQ_URL,
            "MAGSYNC_BROKER_NAMESPACE": namespace,
            "SENTRY_DSN": sentry.dsn,
            "SENTRY_ENVIRONMENT": "delivery-test",
            "MAGSYNC_RETRY_BACKOFF": "1",
            "MAGSYNC_RETRY_BACKOFF_MAX": "2",
            "MAGSYNC_CIRCUIT_THRESHOLD": "1000",
            "SALESFORCE_TIMEOUT": "5",
            "LOG_LEVEL": "INFO",
            "DATABASE_URL": f"sqlite:///{logs}/ledger.db",
            # One order per call: these tests count each order's calls, retries and probes
            # (test_e2e_coalesced covers coalescing workers).
            "MAGSYNC_BATCH_SIZE": "1",
        }
        self.settings = Settings.from_env(self.env)
        self.celery = create_celery(self.settings)
        self.publisher = Publisher(self.celery, self.celery.magsync_topology, 5)
        self.dead = DeadLetters(self.celery, self.celery.magsync_topology)
        self.workers = []

    def worker(self, name, concurrency=2, **env):
        process = processes.start_worker(
            {**self.env, **env}, self.logs, name=name, concurrency=concurrency
        )
        self.workers.append(process)
        return process

    def order(self, **changes):
        n = next(_numbers)
        order = copy.deepcopy(SEED_ORDER)
        order.update(entity_id=7000 + n, increment_id=f"7{self.namespace[-6:]}{n:04d}")
        order.update(changes)
        return order

    def publish(self, order):
        event = {
            "event": "sales_order_save_after",
            "entity_id": order["entity_id"],
            "increment_id": order["increment_id"],
            "updated_at": order["updated_at"],
            "order": order,
        }
        task_id = f"{order['increment_id']}:t{next(_numbers)}"
        self.publisher.publish(event, task_id)
        return task_id

    def records(self, number):
        return [
            r for r in self.org.records("Opportunity") if r.get("Magento_Order_ID__c") == number
        ]

    def dead_letter(self, number):
        return [x for x in self.dead.browse() if x.order == number]

    def fail_salesforce(self, **rule):
        """A fault on every data call (this module syncs one order at a time)."""
        self.org.add_fault(method="*", path="/services/data/", **rule)

    def restart_workers(self):
        """Stop every worker gracefully and start the main one again.

        A pool process sends the Sentry events it still holds as it exits: once the workers
        have stopped, every event they ever captured has reached the stub.
        """
        assert processes.shut_down(*self.workers) == [0] * len(self.workers)
        self.workers.clear()
        self.worker("main")

    def consumers(self, queue):
        return queue_consumers(services.RABBITMQ_URL, f"{self.namespace}.{queue}")

    def cli(self, *args, input=None):
        env = {k: str(v) for k, v in self.env.items()}
        return CliRunner().invoke(main, list(args), env=env, input=input)

    def close(self):
        for worker in self.workers:
            worker.stop()
        self.publisher.close()


@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    from magsync.sandbox.salesforce import SandboxOrg

    services.require_rabbitmq()
    namespace = f"magsync-dlv-{int(time.time() * 1000) % 10**6:06d}"
    sentry = SentryStub().start()
    org = SandboxOrg(state_dir=tmp_path_factory.mktemp("delivery-org")).start()
    h = Harness(org, namespace, sentry, tmp_path_factory.mktemp("delivery-logs"))
    try:
        h.worker("main")
        yield h
    finally:
        h.close()
        org.stop()
        sentry.stop()
        delete_namespace(services.RABBITMQ_URL, namespace)


def worker_lines(worker, number, message):
    return [line for line in worker.log().splitlines() if message in line and number in line]


def test_the_worker_declares_the_dead_letter_side_at_start_up(harness):
    # The first test of the module: nothing was published yet, only the worker started.
    import amqp

    with amqp.Connection("127.0.0.1:5672") as conn:
        channel = conn.channel()
        for queue in (f"{harness.namespace}.dead", f"{harness.namespace}.orders"):
            assert channel.queue_declare(queue, passive=True).queue == queue


def test_transient_failures_are_retried_until_the_order_syncs(harness):
    order = harness.order()
    number = order["increment_id"]
    harness.fail_salesforce(kind="unavailable", count=2)
    harness.publish(order)
    [record] = wait_for(lambda: harness.records(number), what="the order after two 503s")
    assert record["Name"] == "Order 000000123 - Jane Doe".replace("000000123", number)
    [main] = harness.workers[:1]
    retried = worker_lines(main, number, "order sync will be retried")
    assert len(retried) == 2
    assert all("reason=http_503" in line for line in retried)
    # Retries are new messages: they too show as "order N (entity M)", not the buyer's details.
    assert f"order {number} (entity {order['entity_id']})" in main.log()
    assert SEED_ORDER["customer_email"] not in main.log()
    assert not harness.dead_letter(number)
    assert not [e for e in harness.sentry.events() if number in json.dumps(e)]


def test_a_permanent_error_is_dead_lettered_at_once_with_the_reason(harness):
    order = harness.order()
    number = order["increment_id"]
    errors = [
        {
            "message": "Required fields are missing: [CloseDate]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["CloseDate"],
        }
    ]
    harness.fail_salesforce(kind="status", status=400, body=errors)
    harness.publish(order)
    [letter] = wait_for(lambda: harness.dead_letter(number), what="the dead letter")
    assert letter.source == "worker"
    assert letter.code == "REQUIRED_FIELD_MISSING"
    assert letter.reason["error"] == "DeadLetter"
    assert letter.reason["status"] == 400
    assert letter.reason["errors"] == [
        {
            "errorCode": "REQUIRED_FIELD_MISSING",
            "message": errors[0]["message"],
            "fields": ["CloseDate"],
        }
    ]
    assert letter.reason["attempts"] == 1
    assert letter.reason["first_failed_at"] == letter.reason["last_failed_at"]
    assert letter.event["order"]["increment_id"] == number  # the original payload, whole
    assert letter.task == "magsync.sync_order"
    [main] = harness.workers[:1]
    assert not worker_lines(main, number, "will be retried")
    assert not harness.records(number)

    # One Sentry event for the dead letter, tagged with the order, and no secret in it: every
    # event that mentions the order counts, so a logged error turned event would show up here.
    def about_this_order():
        return [e for e in harness.sentry.events() if number in json.dumps(e)]

    wait_for(about_this_order, what="the Sentry event")
    harness.restart_workers()  # a second event would have been sent by now
    events = about_this_order()
    assert len(events) == 1, [e.get("message") or e.get("logentry") for e in events]
    assert events[0]["tags"]["order"] == number
    assert events[0]["tags"]["reason"] == "REQUIRED_FIELD_MISSING"
    with open(harness.env["SALESFORCE_PRIVATE_KEY_PATH"]) as key:
        key_text = key.read().splitlines()[1]
    for raw in harness.sentry.raw():
        assert key_text.encode() not in raw

    # Workers never consume the dead-letter queue: it has no consumer, while the work queue has
    # the restarted worker's; and the dead letter outlived the restart.
    wait_for(lambda: harness.consumers("orders"), what="the worker to consume the work queue")
    assert harness.consumers("dead") == 0
    assert harness.dead_letter(number)

    # ``magsync dead list`` and ``show`` read it without removing it.
    listed = harness.cli("dead", "list")
    assert listed.exit_code == 0, listed.output
    assert f"order={number}  reason=REQUIRED_FIELD_MISSING  attempts=1" in listed.output
    shown = harness.cli("dead", "show", letter.id)
    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.output)["reason"]["errors"][0]["fields"] == ["CloseDate"]
    assert harness.dead_letter(number)

    # Fixed in the org, the order is replayed: it syncs and the dead letter is gone.
    harness.org.clear_faults()
    replayed = harness.cli("dead", "replay", letter.id)
    assert replayed.exit_code == 0, replayed.output
    assert f"replayed {letter.id}" in replayed.output
    wait_for(lambda: harness.records(number), what="the replayed order")
    assert not harness.dead_letter(number)


def test_an_invalid_order_is_dead_lettered_without_calling_salesforce(harness):
    order = harness.order(grand_total="ninety-nine")
    number = order["increment_id"]
    calls = harness.org.stats()["api_calls"]
    harness.publish(order)
    [letter] = wait_for(lambda: harness.dead_letter(number), what="the dead letter")
    assert letter.code == "invalid_order"
    assert "grand_total" in json.dumps(letter.reason["errors"])
    assert harness.org.stats()["api_calls"] == calls


def test_replay_keeps_the_dead_letter_when_the_republish_is_not_confirmed(harness, unused_port):
    order = harness.order(state="shipped")  # not a Magento state: invalid
    number = order["increment_id"]
    harness.publish(order)
    [letter] = wait_for(lambda: harness.dead_letter(number), what="the dead letter")
    unreachable = create_celery(
        harness.settings.replace(broker_url=f"amqp://guest:guest@127.0.0.1:{unused_port}//")
    )
    publisher = Publisher(unreachable, unreachable.magsync_topology, 2)
    try:
        replayed = harness.dead.replay(lambda x: x.id == letter.id, publisher=publisher)
    finally:
        publisher.close()
    assert replayed == []
    assert [x.id for x in harness.dead_letter(number)] == [letter.id]


def test_retry_after_is_honoured(harness):
    order = harness.order()
    number = order["increment_id"]
    harness.fail_salesforce(kind="throttled", headers={"Retry-After": "4"}, count=1)
    started = time.monotonic()
    harness.publish(order)
    wait_for(lambda: harness.records(number), what="the throttled order")
    assert time.monotonic() - started >= 4
    [main] = harness.workers[:1]
    [line] = worker_lines(main, number, "will be retried")
    assert "reason=throttled" in line and "countdown=4" in line


def test_an_outage_past_the_retry_window_dead_letters_with_the_attempts(harness):
    worker = harness.worker("short-window", MAGSYNC_RETRY_FOR="4")
    order = harness.order()
    number = order["increment_id"]
    harness.fail_salesforce(kind="unavailable")
    try:
        harness.publish(order)
        [letter] = wait_for(lambda: harness.dead_letter(number), timeout=40, what="the dead letter")
    finally:
        harness.org.clear_faults()
        worker.stop()
        harness.workers.remove(worker)
    assert letter.code == "retries_exhausted:http_503"
    assert letter.reason["attempts"] >= 2
    assert letter.reason["first_failed_at"] < letter.reason["last_failed_at"]


def test_the_circuit_opens_in_an_outage_and_waiting_tasks_keep_their_budget(harness):
    for worker in harness.workers:
        worker.stop()
    breaker = harness.worker("breaker", MAGSYNC_CIRCUIT_THRESHOLD="2", MAGSYNC_CIRCUIT_COOLDOWN="3")
    try:
        harness.org.reset_stats()
        harness.fail_salesforce(kind="unavailable")
        orders = [harness.order() for _ in range(6)]
        started = time.monotonic()
        for order in orders:
            harness.publish(order)
        wait_for(lambda: "salesforce circuit open" in breaker.log(), what="the circuit to open")

        def outage_seen():
            # Probes after a cool-down found Salesforce still down, and the open circuit has
            # turned a dozen tasks away (put back to wait: Celery's retries that are not
            # failures); a circuit that let every task through would turn none away.
            log = breaker.log()
            retries = log.count("retry: Retry in")
            turned_away = retries - log.count("order sync will be retried")
            return log.count("salesforce circuit half-open") >= 2 and turned_away >= 12

        wait_for(outage_seen, timeout=90, what="an outage through cool-downs")
        harness.org.clear_faults()
        outage = time.monotonic() - started
        # Six orders retried every 1-2 s, yet Salesforce saw only the calls that opened the
        # circuit (2) and one probe per cool-down (3 s) from each of the two pool processes.
        # A slow machine only makes the outage longer and the bound looser.
        fired = harness.org.stats()["faults_fired"]
        assert fired <= 2 * (2 + int(outage // 3)), (fired, outage)
        for order in orders:
            wait_for(lambda o=order: harness.records(o["increment_id"]), what="every order")
        assert "salesforce circuit closed" in breaker.log()
        retried = [line for line in breaker.log().splitlines() if "will be retried" in line]
        assert len(retried) == fired  # only real failures spent an attempt
        assert not any(harness.dead_letter(o["increment_id"]) for o in orders)
    finally:
        harness.org.clear_faults()
        breaker.stop()
        harness.workers.clear()
        harness.worker("main")


def test_an_order_waits_while_the_worker_cannot_build_its_clients(harness, tmp_path):
    """The worker reads its key when it starts (the token check) and again when a pool process
    builds its Salesforce client for its first order. A key gone in between (a secret mount
    being rotated) fails that build with a ConfigError: the order is retried until the key is
    back, never acknowledged and lost."""
    for worker in harness.workers:
        worker.stop()
    harness.workers.clear()
    original = Path(harness.env["SALESFORCE_PRIVATE_KEY_PATH"]).read_bytes()
    key = tmp_path / "mounted.key"
    key.write_bytes(original)
    worker = harness.worker("keyless", SALESFORCE_PRIVATE_KEY_PATH=str(key))
    try:
        key.unlink()
        order = harness.order()
        number = order["increment_id"]
        harness.publish(order)
        retried = wait_for(
            lambda: worker_lines(worker, number, "will be retried")[1:],
            what="two retries while the key is missing",
        )
        assert all("reason=config_error" in line for line in retried)
        assert "SALESFORCE_PRIVATE_KEY_PATH cannot be read" in worker.log()
        assert not harness.records(number)
        assert not harness.dead_letter(number)
        key.write_bytes(original)
        wait_for(lambda: harness.records(number), what="the order once the key is back")
        assert not harness.dead_letter(number)
    finally:
        worker.stop()
        harness.workers.clear()
        harness.worker("main")


def test_rate_limit_command_changes_running_workers(harness):
    """``magsync rate-limit`` changes the Salesforce call rate of a running worker's pool process.

    Each order here is a new buyer's: two calls (the lookup, then one Composite). At one call a
    second, the calls of three orders take at least (calls - 1) seconds, a lower bound that a
    loaded machine can only make longer; a limit on task starts (Celery's ``rate_limit``) lets
    three orders start within two seconds.
    """
    for worker in harness.workers:
        worker.stop()
    harness.workers.clear()
    worker = harness.worker("paced", concurrency=1)
    # A worker of another deployment on the same virtual host is not told anything.
    elsewhere_namespace = f"{harness.namespace}-elsewhere"
    elsewhere = harness.worker(
        "elsewhere", concurrency=1, MAGSYNC_BROKER_NAMESPACE=elsewhere_namespace
    )
    try:
        first = harness.order(customer_email="first.pace@example.com")
        harness.publish(first)  # the pool process paces at SALESFORCE_RATE_LIMIT (20/s) first
        wait_for(lambda: harness.records(first["increment_id"]), what="the first order")

        answer = harness.cli("rate-limit", "1/s")
        assert answer.exit_code == 0, answer.output
        [line] = answer.output.splitlines()
        assert line.startswith("paced-") and line.endswith(
            ": salesforce call rate set to 1/s per worker process (1 calls a second)"
        )
        harness.org.reset_stats()
        orders = [harness.order(customer_email=f"pace{n}@example.com") for n in range(3)]
        started = time.monotonic()
        for order in orders:
            harness.publish(order)
        for order in orders:
            wait_for(lambda o=order: harness.records(o["increment_id"]), what="every order")
        elapsed = time.monotonic() - started
        calls = harness.org.stats()["api_calls"]
        assert calls >= 6
        assert elapsed >= calls - 1, (calls, elapsed)
        changed = [
            line for line in worker.log().splitlines() if "salesforce call rate changed" in line
        ]
        assert len(changed) == 1 and "calls_per_second=1.0" in changed[0]
        assert "salesforce call rate" not in elsewhere.log()
    finally:
        harness.cli("rate-limit", harness.settings.salesforce_rate_limit)
        for process in (worker, elsewhere):
            process.stop()
        harness.workers.clear()
        delete_namespace(services.RABBITMQ_URL, elsewhere_namespace)
        harness.worker("main")
    for wrong in ("fast", "0/s"):
        refused = harness.cli("rate-limit", wrong)
        assert refused.exit_code != 0 and "Invalid value for RATE" in refused.output


def test_live_orders_wait_past_the_halt_threshold_and_resume_when_usage_falls(harness):
    """Past ``MAGSYNC_API_HALT`` orders go back to RabbitMQ, again and again, without spending
    an attempt; one Sentry event says so; when the org's usage falls (read by a probe), they
    sync."""
    for worker in harness.workers:
        worker.stop()
    harness.workers.clear()
    worker = harness.worker("quota", MAGSYNC_API_PROBE_INTERVAL="1")

    def usage_alerts():
        return [
            e for e in harness.sentry.events() if e["tags"].get("alert") == "salesforce_api_usage"
        ]

    try:
        harness.org.set_limits(daily_limit=1000, api_usage=955)
        first = harness.order()
        harness.publish(first)  # no figure yet: it goes, and its answers report 95.6 %
        wait_for(lambda: harness.records(first["increment_id"]), what="the first order")
        [alert] = wait_for(usage_alerts, what="the Sentry event")
        assert "live orders wait" in alert["message"] or "live orders wait" in json.dumps(alert)

        waiting = [harness.order() for _ in range(3)]
        for order in waiting:
            harness.publish(order)
        # Each is put back and delivered again, several times, while probes (GET /limits, one a
        # second for the whole worker) find usage still past the threshold.
        for order in waiting:
            wait_for(
                lambda o=order: len(worker_lines(worker, o["increment_id"], " received")) >= 3,
                what="orders delivered again and again",
            )
        assert harness.org.stats()["calls_by_kind"].get("limits", 0) >= 2
        for order in waiting:
            number = order["increment_id"]
            assert not harness.records(number)
            assert not worker_lines(worker, number, "will be retried")
            assert not harness.dead_letter(number)
            # Put back as it came: no attempt counted, no retry window started.
            again = worker_lines(worker, number, " received")[1:]
            kwargs = "'attempts': 0, 'first_failed_at': None"  # as Celery logs them, unescaped
            assert all(kwargs in line.replace("\\", "") for line in again)
        assert "salesforce api usage above budget" in worker.log()

        harness.org.set_limits(api_usage=0)  # the rolling 24 hours freed the allowance
        for order in waiting:
            wait_for(lambda o=order: harness.records(o["increment_id"]), what="every order")
        assert "live orders resume" in worker.log()
        for order in waiting:
            number = order["increment_id"]
            assert not worker_lines(worker, number, "will be retried")
            assert not harness.dead_letter(number)
        assert len(usage_alerts()) == 1
    finally:
        harness.org.set_limits(daily_limit=5_000_000, api_usage=0)
        worker.stop()
        harness.workers.clear()
        harness.worker("main")


def _rabbitmq_env(ctl, name, value):
    subprocess.run(
        [ctl, "eval", f"application:set_env(rabbit, {name}, {value})."],
        check=True,
        capture_output=True,
    )


def test_retry_delays_wait_in_the_broker_not_in_the_worker(harness):
    """With RabbitMQ's consumer timeout at 3 s, delays of 6 s must not hold any delivery."""
    ctl = services.require_rabbitmqctl()
    for worker in harness.workers:
        worker.stop()
    harness.workers.clear()
    _rabbitmq_env(ctl, "consumer_timeout", 3000)
    _rabbitmq_env(ctl, "channel_tick_interval", 1000)
    try:
        # The lowered timeout is in force: a consumer that sits on a message is cut off.
        import amqp

        with amqp.Connection("127.0.0.1:5672") as conn:
            channel = conn.channel()
            probe = f"{harness.namespace}.timeout-probe"
            channel.queue_declare(probe, auto_delete=True)
            channel.basic_publish(amqp.Message("x"), routing_key=probe)
            channel.basic_consume(probe, callback=lambda message: None, no_ack=False)
            with pytest.raises(amqp.exceptions.PreconditionFailed):
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    with contextlib.suppress(TimeoutError):
                        conn.drain_events(timeout=1)

        worker = harness.worker("patient")
        order = harness.order()
        number = order["increment_id"]
        harness.fail_salesforce(kind="throttled", headers={"Retry-After": "6"}, count=2)
        harness.publish(order)
        wait_for(lambda: harness.records(number), timeout=45, what="the order after 12 s of delays")
        log = worker.log()
        assert len(worker_lines(worker, number, "will be retried")) == 2
        assert "PRECONDITION_FAILED" not in log
        assert "timed out" not in log
        assert worker.alive()
    finally:
        _rabbitmq_env(ctl, "consumer_timeout", 1800000)
        _rabbitmq_env(ctl, "channel_tick_interval", 60000)
        for worker in harness.workers:
            worker.stop()
        harness.workers.clear()
        harness.worker("main")


def test_purge_asks_first_then_empties_the_dead_letter_queue(harness):
    order = harness.order(grand_total="not a number")
    harness.publish(order)
    wait_for(lambda: harness.dead_letter(order["increment_id"]), what="the dead letter")
    count = len(harness.dead.browse())
    refused = harness.cli("dead", "purge", input="n\n")
    assert refused.exit_code != 0 and "Aborted" in refused.output
    assert len(harness.dead.browse()) == count
    purged = harness.cli("dead", "purge", "--yes")
    assert purged.exit_code == 0, purged.output
    assert f"{count} dead letter(s) deleted" in purged.output
    assert harness.dead.browse() == []
