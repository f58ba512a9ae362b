"""``scripts/run`` on a clean clone with no configuration: the sandboxes, web, worker and Flower
start, the demo orders reach the sandbox org, and everything stops cleanly. The demo runs from
any directory, keeps to a broker namespace of its own, writes its orders in their currencies, and
prints ``magsync`` commands that work against it."""

import contextlib
import os
import re
import shlex
import shutil
import signal
import stat
import subprocess
import time
import uuid

import pytest
import requests
from kombu import Connection, Exchange, Producer

from magsync.cli.env_file import read_env_file
from magsync.messaging.broker import Topology
from tests import processes, services
from tests.helpers import delete_namespace, queue_depth

pytestmark = pytest.mark.slow


@pytest.fixture
def clean_clone(tmp_path):
    """The files git tracks, copied as a fresh clone would have them (no var/, no .env)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=processes.ROOT, capture_output=True, check=True
    ).stdout.decode()
    clone = tmp_path / "clone"
    for name in filter(None, listed.split("\0")):
        source = processes.ROOT / name
        if source.is_file():
            target = clone / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return clone


def run_env(**extra):
    """No magsync settings at all; the already built virtualenv is reused as it is (installing
    from the copy would point the shared virtualenv's magsync at a temporary folder)."""
    return {
        **processes.BASE_ENV,
        "MAGSYNC_VENV": str(processes.BIN.parent),
        "MAGSYNC_SKIP_INSTALL": "1",
        "PORT": str(processes.free_port()),
        "FLOWER_PORT": str(processes.free_port()),
        "SANDBOX_ORG_PORT": str(processes.free_port()),
        "SANDBOX_STORE_PORT": str(processes.free_port()),
        **extra,
    }


def demo_namespace(output):
    """The broker namespace the demo's banner names."""
    match = re.search(r"namespace (magsync-demo-[0-9a-f]+), the demo's own", output)
    assert match, output
    return match.group(1)


def queue_exists(name):
    with Connection(services.RABBITMQ_URL) as conn:
        try:
            conn.default_channel.queue_declare(name, passive=True)
        except conn.channel_errors:
            return False
        return True


def consumers(name):
    with Connection(services.RABBITMQ_URL) as conn:
        return conn.default_channel.queue_declare(name, passive=True).consumer_count


def read_until(proc, marker, timeout=240):
    """The process's output up to and including the first line holding ``marker``."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if marker in line or not line:
            break
    return "".join(lines)


def stop(proc):
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(60)
    proc.stdout.close()
    return proc.returncode


def scripts_run(clone, env, *args, timeout=240):
    return subprocess.run(
        ["scripts/run", "--exit-when-synced", *args],
        cwd=clone,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_no_config_reaches_orders_visible_in_the_sandbox_org(clean_clone):
    services.require_rabbitmq()
    result = scripts_run(clean_clone, run_env())
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders visible in the sandbox org: 3/3" in result.stdout
    assert "amqp://guest:***@127.0.0.1:5672//" in result.stdout
    assert "WARNING" not in result.stdout
    # The demo's queues go with it.
    assert not queue_exists(f"{demo_namespace(result.stdout)}.orders")
    settings = clean_clone / "var/sandbox/magsync.env"
    assert f"settings:        {settings}" in result.stdout
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    logs = clean_clone / "var" / "log"
    assert {p.name for p in logs.iterdir()} >= {
        "web.log",
        "worker.log",
        "flower.log",
        "sandbox-salesforce.log",
        "sandbox-magento.log",
    }
    assert (clean_clone / "var/sandbox/salesforce/ca.pem").is_file()


def test_without_rabbitmq_it_falls_back_to_the_embedded_transport_and_says_so(
    clean_clone, unused_port
):
    env = run_env(CELERY_BROKER_URL=f"amqp://guest:guest@127.0.0.1:{unused_port}//")
    result = scripts_run(clean_clone, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNING: RabbitMQ is not reachable" in result.stdout
    assert "for trying magsync only" in result.stdout
    assert "orders visible in the sandbox org: 3/3" in result.stdout
    # The embedded transport keeps all of its files under var/broker.
    assert sorted(p.name for p in (clean_clone / "var/broker").iterdir()) == [
        "control",
        "processed",
        "queue",
    ]
    assert not (clean_clone / "control").exists()


def test_flower_requires_its_login_and_everything_stops_on_sigterm(clean_clone):
    services.require_rabbitmq()
    env = run_env(
        FLOWER_BASIC_AUTH="ops:s3cret-flower",
        MAGENTO_WEBHOOK_SECRET="webhook-secret-not-for-flower",
    )
    proc = subprocess.Popen(
        ["scripts/run", "--demo-orders", "1"],
        cwd=clean_clone,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    flower = f"http://127.0.0.1:{env['FLOWER_PORT']}"
    try:
        output = read_until(proc, "orders visible in the sandbox org", timeout=180)
        assert "orders visible in the sandbox org: 1/1" in output, output
        assert "s3cret-flower" not in output
        assert requests.get(flower + "/api/workers", timeout=10).status_code == 401
        # Flower asks the workers with a 1 s broadcast; a busy machine may need another ask.
        for _ in range(10):
            answer = requests.get(
                flower + "/api/workers?refresh=1", auth=("ops", "s3cret-flower"), timeout=30
            )
            assert answer.status_code == 200
            if answer.json():
                break
            time.sleep(1)
        assert answer.json(), "no worker reported to Flower"
        tasks = requests.get(flower + "/api/tasks", auth=("ops", "s3cret-flower"), timeout=30)
        for secret in ("webhook-secret-not-for-flower", "s3cret-flower", "guest:guest"):
            assert secret not in answer.text
            assert secret not in tasks.text
    finally:
        returncode = stop(proc)
    assert returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(flower, timeout=2)
    assert not queue_exists(f"{demo_namespace(output)}.orders")


def test_magsync_stack_runs_from_a_directory_outside_the_checkout(tmp_path):
    """No config/ folder, no checkout: the gunicorn settings come from the package."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert processes.ROOT not in elsewhere.parents
    result = subprocess.run(
        [str(processes.BIN / "magsync"), "stack", "--exit-when-synced", "--demo-orders", "1"],
        cwd=elsewhere,
        env=run_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders visible in the sandbox org: 1/1" in result.stdout
    assert "gthread" in (elsewhere / "var/log/web.log").read_text(encoding="utf-8")
    assert (elsewhere / "var/sandbox/magsync.env").is_file()


@pytest.fixture
def deployment_namespace():
    """A real deployment's queue on the machine's RabbitMQ, holding one order of its own."""
    services.require_rabbitmq()
    topology = Topology(f"magsync-test-{uuid.uuid4().hex[:10]}")
    with Connection(services.RABBITMQ_URL) as conn:
        topology.declare(conn)
        exchange = Exchange(topology.namespace, type="topic", durable=True)
        Producer(conn.default_channel, exchange).publish(
            {"event": "sales_order_save_after", "entity_id": 1, "increment_id": "real-1"},
            routing_key=topology.work_routing_key,
        )
    assert queue_depth(services.RABBITMQ_URL, topology.work_queue.name) == 1
    yield topology
    delete_namespace(services.RABBITMQ_URL, topology.namespace)


def test_the_demo_keeps_apart_and_prints_commands_that_work_against_it(
    tmp_path, deployment_namespace
):
    """The banner's trace, check and dead list succeed from another directory with nothing but
    the demo's settings file; the demo never touches the deployment's queue that the
    environment names; its EUR order lands in EUR."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    deployment_queue = deployment_namespace.work_queue.name
    env = run_env(MAGSYNC_BROKER_NAMESPACE=deployment_namespace.namespace)
    proc = subprocess.Popen(
        [str(processes.BIN / "magsync"), "stack"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output = read_until(proc, "Ctrl-C stops everything.")
        assert "orders visible in the sandbox org: 3/3" in output, output
        namespace = demo_namespace(output)
        commands = re.findall(r"^  \$ (.+)$", output, flags=re.MULTILINE)
        assert [shlex.split(c)[3:] for c in commands] == [
            ["trace", "000000001"],
            ["check"],
            ["dead", "list"],
        ], output
        results = [
            subprocess.run(
                shlex.split(command),
                cwd=elsewhere,
                env=processes.BASE_ENV,
                capture_output=True,
                text=True,
                timeout=120,
            )
            for command in commands
        ]
        for command, result in zip(commands, results, strict=True):
            assert result.returncode == 0, f"{command}\n{result.stdout}{result.stderr}"
        trace, check, dead = (r.stdout for r in results)
        assert "status synced" in trace
        assert "nothing failed" in check
        assert f"queue {namespace}.orders: quorum queue as expected" in check
        assert dead.strip() == "0 dead letter(s)"

        settings = read_env_file(tmp_path / "var/sandbox/magsync.env")
        assert settings["MAGSYNC_BROKER_NAMESPACE"] == namespace != "magsync"
        # The deployment's order is still there, and no demo worker ever listened for it.
        assert queue_depth(services.RABBITMQ_URL, deployment_queue) == 1
        assert consumers(deployment_queue) == 0
        assert consumers(f"{namespace}.orders") >= 1
        _assert_orders_kept_their_currency(settings)
    finally:
        returncode = stop(proc)
    assert returncode == 0
    assert queue_depth(services.RABBITMQ_URL, deployment_queue) == 1


def _assert_orders_kept_their_currency(settings):
    from magsync.sandbox.magento import ControlClient as StoreControl
    from magsync.sandbox.salesforce import ControlClient as OrgControl

    with StoreControl(settings["MAGENTO_BASE_URL"]) as store:
        orders = {o["increment_id"]: o for o in store.truth()}
    assert sorted(o["order_currency_code"] for o in orders.values()) == ["EUR", "GBP", "USD"]
    with OrgControl(settings["SALESFORCE_LOGIN_URL"], settings["SALESFORCE_CA_BUNDLE"]) as org:
        records = {r["Magento_Order_ID__c"]: r for r in org.records("Opportunity")}
    for number, order in orders.items():
        record = records[number]
        assert record["CurrencyIsoCode"] == order["order_currency_code"], record
        assert record["Amount"] == pytest.approx(float(order["grand_total"])), record


def test_adobe_runs_the_demo_through_adobe_io_events(clean_clone):
    services.require_rabbitmq()
    env = run_env()
    result = scripts_run(clean_clone, env, "--adobe")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders visible in the sandbox org: 3/3" in result.stdout
    assert f"http://127.0.0.1:{env['PORT']}/adobe/events" in result.stdout
    web_log = (clean_clone / "var/log/web.log").read_text()
    assert "adobe public key fetched" in web_log
    assert "adobe event accepted" in web_log
    assert "webhook accepted" not in web_log  # the seed's route was never used
    assert not queue_exists(f"{demo_namespace(result.stdout)}.orders")
