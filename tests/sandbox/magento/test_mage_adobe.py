"""The Adobe envelope's sender as Adobe I/O Events behaves: registration check first, Adobe's retry
schedule (scaled), which answers it retries, its recipient, and key rotation."""

import base64
import datetime as dt

import pytest
import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.magento.webhooks import adobe_retries, adobe_retry_delay

# Adobe's day of retries in about 1.7 s: delays of 1.2 ms, 2.4 ms, ... then 18 ms.
FAST_DAY = 0.00002


@pytest.fixture
def adobe_store(receiver):
    with SandboxStore(
        webhook_url=receiver.url,
        envelope="adobe",
        seed=3,
        senders=2,
        adobe_client_id="project-client-id",
        retry={"time_scale": FAST_DAY, "timeout": 2.0},
    ) as store:
        yield store


def outcomes(store):
    return [(entry["outcome"], entry["status"]) for entry in store.deliveries()]


def test_adobes_retry_schedule():
    assert [adobe_retry_delay(n) for n in range(1, 8)] == [60, 120, 240, 480, 900, 900, 900]
    assert adobe_retry_delay(2, time_scale=0.5) == 60
    assert [adobe_retries(s) for s in (None, 429, 500, 503, 505, 599)] == [True] * 4 + [False, True]
    assert not any(adobe_retries(s) for s in (200, 301, 400, 401, 403, 404, 413))


def test_the_registration_check_runs_before_the_first_delivery(adobe_store, receiver):
    adobe_store.place_order()
    assert adobe_store.wait_idle(10)
    assert receiver.challenges == 1
    adobe_store.place_order()
    assert adobe_store.wait_idle(10)
    assert receiver.challenges == 1  # once per URL
    [registration] = adobe_store.status()["delivery"]["registrations"]
    assert registration["ok"] and registration["url"] == receiver.url
    assert len(receiver.requests) == 2


def test_a_url_that_fails_the_check_gets_no_delivery(adobe_store, receiver):
    receiver.echo_challenge = False
    adobe_store.place_order()
    assert adobe_store.wait_idle(15)
    assert receiver.requests == []
    log = adobe_store.deliveries()
    assert log[-1]["outcome"] == "gave_up"
    assert all("registration check failed" in entry["error"] for entry in log)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([503, 500, 429, 202], [("retrying", 503), ("retrying", 500), ("retrying", 429),
                                ("delivered", 202)]),
        ([505], [("rejected", 505)]),
        ([400], [("rejected", 400)]),
        ([401], [("rejected", 401)]),
    ],
)  # fmt: skip
def test_only_429_and_5xx_but_505_are_retried(adobe_store, receiver, script, expected):
    receiver.script = script
    adobe_store.place_order()
    assert adobe_store.wait_idle(10)
    assert outcomes(adobe_store) == expected


def test_retries_stop_after_a_scaled_day(adobe_store, receiver):
    receiver.script = [503]
    adobe_store.place_order()
    assert adobe_store.wait_idle(20)
    log = adobe_store.deliveries()
    assert [entry["outcome"] for entry in log] == ["retrying"] * (len(log) - 1) + ["gave_up"]
    # 1, 2, 4 and 8 minutes, then every 15 for 24 hours: at most 4 + 95 retries and the first
    # try, and not one given up before the (scaled) day has passed.
    assert len(log) <= 100
    first, last = (dt.datetime.fromisoformat(log[i]["at"]) for i in (0, -1))
    started = first - dt.timedelta(milliseconds=log[0]["elapsed_ms"])
    assert (last - started).total_seconds() >= 86400 * FAST_DAY - 0.01


def test_the_recipient_is_the_configured_client_id(adobe_store, receiver):
    adobe_store.place_order()
    assert adobe_store.wait_idle(10)
    [event] = receiver.bodies()
    assert event["recipientclientid"] == event["recipient_client_id"] == "project-client-id"
    assert adobe_store.adobe_settings() == {
        "ADOBE_IO_CLIENT_ID": "project-client-id",
        "ADOBE_IO_PUBLIC_KEY_BASE_URL": adobe_store.url,
    }


def verifies(pem, signature, body):
    key = serialization.load_pem_public_key(pem)
    try:
        key.verify(base64.b64decode(signature), body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def test_key_rotation_replaces_key_1_at_the_same_path(adobe_store, receiver):
    one, two = adobe_store.adobe_keys.paths
    with requests.Session() as session:
        old_pem = session.get(adobe_store.url + one, timeout=5).content
        assert adobe_store.rotate_adobe_key(1) == one
        new_pem = session.get(adobe_store.url + one, timeout=5).content
        pem_two = session.get(adobe_store.url + two, timeout=5).content
    assert new_pem != old_pem
    adobe_store.place_order()
    assert adobe_store.wait_idle(10)
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert headers["x-adobe-public-key1-path"] == one
    assert verifies(new_pem, headers["x-adobe-digital-signature-1"], body)
    assert not verifies(old_pem, headers["x-adobe-digital-signature-1"], body)
    assert verifies(pem_two, headers["x-adobe-digital-signature-2"], body)


def test_rotation_through_the_control_api(adobe_store):
    from magsync.sandbox.magento import ControlClient

    with ControlClient(adobe_store.url) as client:
        described = client.adobe()
        assert described["key_paths"] == list(adobe_store.adobe_keys.paths)
        assert described["ADOBE_IO_CLIENT_ID"] == "project-client-id"
        before = adobe_store.adobe_keys.public_pem(1)
        assert client.rotate_adobe_key(2)["path"] == adobe_store.adobe_keys.paths[1]
        assert adobe_store.adobe_keys.public_pem(1) != before
