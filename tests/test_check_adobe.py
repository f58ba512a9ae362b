"""``magsync check`` on the Adobe I/O Events intake: reported on or off, its key host reached."""

from magsync.check import CHECKS, run
from tests.adobe_io import CLIENT_ID, KeyHost

CHECKED = [c for c in CHECKS if c.name in ("settings", "adobe")]


def findings(env):
    report = run(env, checks=CHECKED)
    return {(f.subject, f.status): f for f in report.findings()}, report


def test_the_intake_is_reported_on_and_its_key_host_answers():
    host = KeyHost()
    try:
        found, _ = findings(
            {"ADOBE_IO_CLIENT_ID": CLIENT_ID, "ADOBE_IO_PUBLIC_KEY_BASE_URL": host.url}
        )
    finally:
        host.close()
    assert "intake is on (/adobe/events)" in found["ADOBE_IO_CLIENT_ID", "ok"].detail
    assert "loopback" in found["ADOBE_IO_PUBLIC_KEY_BASE_URL", "warn"].detail
    answered = found["ADOBE_IO_PUBLIC_KEY_BASE_URL", "ok"].detail
    assert answered == f"the key host {host.url} answers (HTTP 404)"
    assert host.requests == [("HEAD", "/")]
    # The seed intake is off, which is fine with Adobe's on.
    assert "intake is off" in found["MAGENTO_WEBHOOK_SECRET", "ok"].detail


def test_a_key_host_that_does_not_answer_fails_with_the_fix(unused_port):
    found, report = findings(
        {
            "ADOBE_IO_CLIENT_ID": CLIENT_ID,
            "ADOBE_IO_PUBLIC_KEY_BASE_URL": f"http://127.0.0.1:{unused_port}",
        }
    )
    failure = found["ADOBE_IO_PUBLIC_KEY_BASE_URL", "fail"]
    assert "did not answer (ConnectionError)" in failure.detail
    assert "503" in failure.fix
    assert report.exit_code == 1


def test_adobes_own_key_host_is_https():
    found, _ = findings({"ADOBE_IO_CLIENT_ID": CLIENT_ID, "ADOBE_IO_PUBLIC_KEY_BASE_URL": ""})
    assert found["ADOBE_IO_PUBLIC_KEY_BASE_URL", "ok"].detail == (
        "HTTPS: https://static.adobeioevents.com"
    )


def test_a_plain_http_key_host_is_refused_by_name():
    found, report = findings(
        {"ADOBE_IO_CLIENT_ID": CLIENT_ID, "ADOBE_IO_PUBLIC_KEY_BASE_URL": "http://keys.example"}
    )
    assert "https://" in found["ADOBE_IO_PUBLIC_KEY_BASE_URL", "fail"].detail
    assert report.exit_code == 1


def test_without_the_intake_the_key_host_is_not_checked():
    found, _ = findings({"MAGENTO_WEBHOOK_SECRET": "whsec-0123456789abcdef"})
    assert ("/adobe/events", "skip") in found
    assert not any(subject == "ADOBE_IO_CLIENT_ID" for subject, _ in found)


def test_with_neither_intake_the_check_fails():
    found, report = findings({})
    failure = found["MAGENTO_WEBHOOK_SECRET", "fail"]
    assert "nor is ADOBE_IO_CLIENT_ID" in failure.detail
    assert "ADOBE_IO_CLIENT_ID" in failure.fix
    assert report.exit_code == 1


def test_a_polled_store_without_intake_is_a_warning():
    rest = {
        "MAGENTO_BASE_URL": "http://127.0.0.1:8081",
        "MAGENTO_CONSUMER_KEY": "k" * 32,
        "MAGENTO_CONSUMER_SECRET": "s" * 32,
        "MAGENTO_ACCESS_TOKEN": "t" * 32,
        "MAGENTO_ACCESS_TOKEN_SECRET": "u" * 32,
    }
    found, _ = findings(rest)
    assert "serves only its health endpoints" in found["webhook intake", "warn"].detail
    assert ("MAGENTO_WEBHOOK_SECRET", "fail") not in found
