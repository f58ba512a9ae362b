"""``scripts/run`` on a clean clone with no configuration: the sandboxes, web, worker and Flower
start, the demo orders reach the sandbox org, and everything stops cleanly."""

import os
import shutil
import signal
import subprocess
import time

import pytest
import requests

from tests import processes, services
from tests.helpers import delete_namespace

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
    env = run_env(MAGSYNC_BROKER_NAMESPACE=f"magsync-run-{os.getpid()}")
    result = scripts_run(clean_clone, env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders visible in the sandbox org: 3/3" in result.stdout
    assert "amqp://guest:***@127.0.0.1:5672//" in result.stdout
    assert "WARNING" not in result.stdout
    logs = clean_clone / "var" / "log"
    assert {p.name for p in logs.iterdir()} >= {
        "web.log",
        "worker.log",
        "flower.log",
        "sandbox-salesforce.log",
        "sandbox-magento.log",
    }
    assert (clean_clone / "var/sandbox/salesforce/ca.pem").is_file()
    delete_namespace(services.RABBITMQ_URL, env["MAGSYNC_BROKER_NAMESPACE"])


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
        MAGSYNC_BROKER_NAMESPACE=f"magsync-run-{os.getpid()}-f",
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
        lines = []
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            lines.append(line)
            if "orders visible in the sandbox org" in line or not line:
                break
        output = "".join(lines)
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
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(60)
        proc.stdout.close()
    assert proc.returncode == 0
    with pytest.raises(requests.ConnectionError):
        requests.get(flower, timeout=2)
    delete_namespace(services.RABBITMQ_URL, env["MAGSYNC_BROKER_NAMESPACE"])


def test_adobe_runs_the_demo_through_adobe_io_events(clean_clone):
    services.require_rabbitmq()
    env = run_env(MAGSYNC_BROKER_NAMESPACE=f"magsync-run-{os.getpid()}-adobe")
    result = scripts_run(clean_clone, env, "--adobe")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "orders visible in the sandbox org: 3/3" in result.stdout
    assert f"http://127.0.0.1:{env['PORT']}/adobe/events" in result.stdout
    web_log = (clean_clone / "var/log/web.log").read_text()
    assert "adobe public key fetched" in web_log
    assert "adobe event accepted" in web_log
    assert "webhook accepted" not in web_log  # the seed's route was never used
    delete_namespace(services.RABBITMQ_URL, env["MAGSYNC_BROKER_NAMESPACE"])
