"""``magsync sandbox salesforce`` as a process: settings on stdout, keys kept across restarts,
options, control from another process, and a clean exit on SIGTERM and SIGINT."""

import json
import signal
import subprocess
import sys
import time

import jwt
import pytest
import requests

from magsync.sandbox.salesforce import ControlClient
from magsync.sandbox.salesforce.schema import packaged_schema
from tests.sandbox.salesforce.helpers import JWT_GRANT

SETTING_NAMES = [
    "SALESFORCE_LOGIN_URL",
    "SALESFORCE_CLIENT_ID",
    "SALESFORCE_USERNAME",
    "SALESFORCE_PRIVATE_KEY_PATH",
    "SALESFORCE_CA_BUNDLE",
]


class Running:
    """A ``magsync sandbox salesforce`` process and the settings it printed."""

    def __init__(self, *args):
        self.process = subprocess.Popen(
            [sys.executable, "-m", "magsync", "sandbox", "salesforce", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines = [self.process.stdout.readline().rstrip("\n") for _ in SETTING_NAMES]
        self.settings = dict(line.partition("=")[::2] for line in self.lines)

    def session(self):
        session = requests.Session()
        session.verify = self.settings["SALESFORCE_CA_BUNDLE"]
        session.trust_env = False
        return session

    def stop(self, sig=signal.SIGTERM):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        try:
            out, err = self.process.communicate(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.communicate()
        return self.process.returncode, out, err


@pytest.fixture
def run(tmp_path):
    running = []

    def start(*args, state_dir=None):
        process = Running("--state-dir", str(state_dir or tmp_path / "state"), *args)
        running.append(process)
        return process

    yield start
    for process in running:
        process.stop(signal.SIGKILL)


def jwt_token(settings, session):
    claims = {
        "iss": settings["SALESFORCE_CLIENT_ID"],
        "sub": settings["SALESFORCE_USERNAME"],
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 60,
    }
    with open(settings["SALESFORCE_PRIVATE_KEY_PATH"], "rb") as key:
        assertion = jwt.encode(claims, key.read(), algorithm="RS256")
    response = session.post(
        settings["SALESFORCE_LOGIN_URL"] + "/services/oauth2/token",
        data={"grant_type": JWT_GRANT, "assertion": assertion},
        timeout=10,
    )
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_prints_settings_serves_and_exits_cleanly(run, tmp_path, sig):
    org = run()
    assert [line.partition("=")[0] for line in org.lines] == SETTING_NAMES
    settings = org.settings
    assert settings["SALESFORCE_LOGIN_URL"].startswith("https://127.0.0.1:")
    assert settings["SALESFORCE_PRIVATE_KEY_PATH"] == str(tmp_path / "state" / "client_key.pem")
    assert settings["SALESFORCE_CA_BUNDLE"] == str(tmp_path / "state" / "ca.pem")
    with org.session() as session:
        grant = jwt_token(settings, session)
        assert grant["instance_url"] == settings["SALESFORCE_LOGIN_URL"]
        response = session.get(
            f"{grant['instance_url']}/services/data/v58.0/limits",
            headers={"Authorization": f"Bearer {grant['access_token']}"},
            timeout=10,
        )
        assert response.status_code == 200
    code, out, err = org.stop(sig)
    assert code == 0
    assert out == ""
    assert "Traceback" not in err


def test_keys_and_ids_survive_a_restart(run, tmp_path):
    first = run()
    ca = (tmp_path / "state" / "ca.pem").read_bytes()
    key = (tmp_path / "state" / "client_key.pem").read_bytes()
    assert first.stop()[0] == 0
    second = run()
    assert second.settings["SALESFORCE_CLIENT_ID"] == first.settings["SALESFORCE_CLIENT_ID"]
    assert second.settings["SALESFORCE_USERNAME"] == first.settings["SALESFORCE_USERNAME"]
    assert (tmp_path / "state" / "ca.pem").read_bytes() == ca
    assert (tmp_path / "state" / "client_key.pem").read_bytes() == key
    assert oct((tmp_path / "state" / "client_key.pem").stat().st_mode & 0o777) == "0o600"
    with second.session() as session:
        jwt_token(second.settings, session)
    assert second.stop()[0] == 0


def test_options_and_control_from_another_process(run, tmp_path):
    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["fields"]["StageName"]["picklist"].append("Paid")
    variant = tmp_path / "variant.json"
    variant.write_text(json.dumps(schema))
    org = run(
        "--daily-limit",
        "3",
        "--max-in-flight",
        "7",
        "--token-ttl",
        "600",
        "--latency-ms",
        "1",
        "--jitter-ms",
        "1",
        "--schema",
        str(variant),
        "--fault",
        "kind=unavailable method=GET path=/services/data/v58.0/limits count=1",
        "--fault",
        '{"kind": "throttled", "path": "/services/data/v58.0/sobjects/Lead", "probability": 1.0}',
    )
    settings = org.settings
    with (
        org.session() as session,
        ControlClient(
            settings["SALESFORCE_LOGIN_URL"], settings["SALESFORCE_CA_BUNDLE"]
        ) as control,
    ):
        token = jwt_token(settings, session)["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        base = f"{settings['SALESFORCE_LOGIN_URL']}/services/data/v58.0"
        assert session.get(f"{base}/limits", headers=headers, timeout=10).status_code == 503
        assert (
            session.post(f"{base}/sobjects/Lead", json={}, headers=headers, timeout=10).status_code
            == 429
        )
        stages = session.get(
            f"{base}/sobjects/Opportunity/describe", headers=headers, timeout=10
        ).json()
        stage = next(f for f in stages["fields"] if f["name"] == "StageName")
        assert stage["picklistValues"][-1]["value"] == "Paid"
        stats = control.stats()
        assert (stats["daily_limit"], stats["max_in_flight"], stats["faults_fired"]) == (3, 7, 2)
        assert [rule["kind"] for rule in control.fault_rules()] == ["unavailable", "throttled"]
        control.reset()
        assert [rule["kind"] for rule in control.fault_rules()] == ["unavailable", "throttled"]
        assert control.stats()["api_usage"] == 0
    assert org.stop()[0] == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--fault", "kind=explode"], "unknown fault kind"),
        (["--fault", "not-a-pair"], "expected key=value"),
        (["--schema", "/no/such/schema.json"], "does not exist"),
    ],
)
def test_bad_options_are_refused(tmp_path, args, message):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "magsync",
            "sandbox",
            "salesforce",
            "--state-dir",
            str(tmp_path / "s"),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_port_in_use(run, tmp_path):
    first = run()
    port = first.settings["SALESFORCE_LOGIN_URL"].rsplit(":", 1)[1]
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "magsync",
            "sandbox",
            "salesforce",
            "--state-dir",
            str(tmp_path / "state"),
            "--port",
            port,
        ],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
