"""``magsync sandbox magento`` as a process: settings on stdout, serving, clean exit on signals."""

import json
import signal
import subprocess
import sys

import pytest
import requests

from tests.sandbox.magento.helpers import oauth_for

SETTING_NAMES = [
    "MAGENTO_BASE_URL",
    "MAGENTO_CONSUMER_KEY",
    "MAGENTO_CONSUMER_SECRET",
    "MAGENTO_ACCESS_TOKEN",
    "MAGENTO_ACCESS_TOKEN_SECRET",
    "MAGENTO_WEBHOOK_SECRET",
]


def magento(*args):
    return [sys.executable, "-m", "magsync", "sandbox", "magento", *args]


@pytest.mark.parametrize("stop_with", [signal.SIGTERM, signal.SIGINT])
def test_the_command_prints_settings_serves_and_exits_cleanly(receiver, stop_with):
    command = magento(
        "--port", "0", "--webhook-url", receiver.url, "--webhook-secret", "cli-secret",
        "--seed", "3", "--orders", "2", "--retry-base", "0.05",
    )  # fmt: skip
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            lines = [process.stdout.readline().rstrip("\n") for _ in SETTING_NAMES]
            settings = dict(line.split("=", 1) for line in lines)
            assert list(settings) == SETTING_NAMES
            assert settings["MAGENTO_WEBHOOK_SECRET"] == "cli-secret"
            for name in SETTING_NAMES[1:5]:
                assert len(settings[name]) == 32 and settings[name].isalnum()
            receiver.wait_for(2)
            with requests.Session() as session:
                answer = session.get(
                    settings["MAGENTO_BASE_URL"] + "/rest/V1/orders/1",
                    auth=oauth_for(settings),
                    timeout=10,
                )
            assert answer.status_code == 200 and answer.json()["entity_id"] == 1
            status = subprocess.run(
                magento("status", "--url", settings["MAGENTO_BASE_URL"]),
                capture_output=True,
                text=True,
                timeout=60,
                check=True,
            )
            assert json.loads(status.stdout)["orders"] == 2
        finally:
            process.send_signal(stop_with)
            code = process.wait(timeout=15)
        errors = process.stderr.read()
    assert code == 0, errors


def test_control_subcommands_drive_a_running_store(quiet_store):
    url = quiet_store.url
    created = subprocess.run(
        magento("create", "2", "--step", "invoice", "--url", url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    first = json.loads(created.stdout)["entity_ids"][0]
    assert quiet_store.order(first)["state"] == "processing"
    shipped = subprocess.run(
        magento("act", str(first), "ship", "--url", url),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert json.loads(shipped.stdout)["state"] == "complete"
    refused = subprocess.run(
        magento("act", str(first), "cancel", "--url", url),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert refused.returncode == 1 and "You have not canceled the item." in refused.stderr
    truth = subprocess.run(
        magento("truth", "--url", url), capture_output=True, text=True, timeout=60, check=True
    )
    assert [order["entity_id"] for order in json.loads(truth.stdout)] == [1, 2]


def test_pinned_credentials_must_look_like_magentos(quiet_store):
    result = subprocess.run(
        magento("--port", "0", "--consumer-key", "Not-A-Key"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "32 lowercase letters and digits" in result.stderr


def test_the_webhook_command_retargets_a_running_store_or_turns_its_webhooks_off(
    quiet_store, receiver
):
    from click.testing import CliRunner

    from magsync.sandbox.magento.cli import command

    runner = CliRunner()
    url = ["--url", quiet_store.url]
    result = runner.invoke(command, ["webhook", *url, "--to", receiver.url])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["url"] == receiver.url
    quiet_store.place_order()
    receiver.wait_for(1)

    result = runner.invoke(command, ["webhook", *url, "--off"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["url"] is None
    quiet_store.place_order()  # a store without any webhook module: the save sends nothing
    assert quiet_store.wait_idle(10)
    assert quiet_store.status()["delivery"]["queued"] == 1
    assert len(receiver.bodies()) == 1
    assert runner.invoke(command, ["webhook", *url, "--off", "--to", receiver.url]).exit_code == 2
