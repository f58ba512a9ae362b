"""Webhooks: one per save, signed, in order per order, retried like a real sender, chaos knobs."""

import base64
import hashlib
import hmac
import json
import re
import socket
from collections import defaultdict

import pytest
import requests
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from magsync.sandbox.magento import SandboxStore
from tests.sandbox.magento.helpers import FAST_RETRY, WEBHOOK_SECRET, Receiver


def expected_signature(secret, body):
    """The signature computed independently of the store's code."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def outcomes(store, entity_id=None):
    return [
        (entry["outcome"], entry["status"])
        for entry in store.deliveries()
        if entity_id is None or entry["entity_id"] == entity_id
    ]


def test_every_save_sends_exactly_one_signed_webhook(store, receiver):
    order = store.place_order(kind="configurable")
    store.invoice(order["entity_id"])
    store.ship(order["entity_id"])
    assert store.wait_idle(10)
    assert len(receiver.requests) == 3
    for request in receiver.requests:
        signature = request["headers"]["X-Magento-Signature"]
        assert signature.startswith("sha256=") and len(signature) == 7 + 64
        assert hmac.compare_digest(signature, expected_signature(WEBHOOK_SECRET, request["body"]))
        assert request["headers"]["Content-Type"] == "application/json"
    bodies = receiver.bodies()
    assert [set(body) for body in bodies] == [{"event", "order"}] * 3
    assert {body["event"] for body in bodies} == {"sales_order_save_after"}
    assert [body["order"]["state"] for body in bodies] == ["new", "processing", "complete"]
    stamps = [body["order"]["updated_at"] for body in bodies]
    assert stamps == sorted(stamps) and len(set(stamps)) == 3
    assert bodies[-1]["order"] == store.order(order["entity_id"])
    log = store.deliveries()
    assert [entry["outcome"] for entry in log] == ["delivered"] * 3
    assert [entry["updated_at"] for entry in log] == stamps
    assert {"event_id", "entity_id", "increment_id", "attempt", "status", "error", "at"} <= set(
        log[0]
    )


def test_a_receiver_that_reserialises_the_json_cannot_verify_it(store, receiver):
    store.place_order(billing_address={"street": ["12/3 Rue de l'Église"], "city": "Zürich"})
    assert store.wait_idle(10)
    [request] = receiver.requests
    body = request["body"]
    assert b"12\\/3 Rue de l'\\u00c9glise" in body and body.isascii()
    assert json.loads(body)["order"]["billing_address"]["street"] == ["12/3 Rue de l'Église"]
    reserialised = json.dumps(json.loads(body)).encode()
    assert (
        expected_signature(WEBHOOK_SECRET, reserialised)
        != request["headers"]["X-Magento-Signature"]
    )


def test_the_adobe_envelope_is_a_signed_cloudevent_with_string_values(store, receiver):
    store.set_webhook(envelope="adobe")
    order = store.place_order(kind="configurable")
    assert store.wait_idle(10)
    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    event = json.loads(body)
    assert event["specversion"] == "1.0"
    assert event["type"] == "com.adobe.commerce.observer.sales_order_save_after"
    # The event id (new and deprecated names, and the header) is not the CloudEvent's own id.
    assert event["eventid"] == event["event_id"] == headers["x-adobe-event-id"]
    assert event["id"] != event["eventid"]
    assert headers["x-adobe-event-code"] == event["type"]
    assert event["source"].startswith("urn:uuid:")
    assert event["recipientclientid"] == event["recipient_client_id"]
    assert event["recipientclientid"] == store.adobe_settings()["ADOBE_IO_CLIENT_ID"]
    value = event["data"]["value"]
    assert value["entity_id"] == str(order["entity_id"])
    assert value["increment_id"] == order["increment_id"]
    assert value["grand_total"] == f"{order['grand_total']:.4f}"
    assert all(isinstance(v, str) or v is None for k, v in value.items() if k not in (
        "items", "addresses", "payment"
    ))  # fmt: skip
    assert value["items"][0]["qty_ordered"].endswith(".0000")
    assert "extension_attributes" not in value
    assert {address["address_type"] for address in value["addresses"]} == {"billing", "shipping"}
    assert event["data"]["_metadata"]["storeId"] == str(order["store_id"])
    with requests.Session() as session:
        for number in (1, 2):
            path = headers[f"x-adobe-public-key{number}-path"]
            assert re.fullmatch(r"/prod/keys/pub-key-[0-9a-f-]{36}\.pem", path)
            pem = session.get(store.url + path, timeout=5)
            key = serialization.load_pem_public_key(pem.content)
            signature = base64.b64decode(headers[f"x-adobe-digital-signature-{number}"])
            key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    # Adobe never sends the seed's HMAC header.
    assert "X-Magento-Signature" not in headers


def test_saves_of_one_order_arrive_in_save_order(store, receiver):
    orders = [store.place_order() for _ in range(12)]
    for order in orders:
        store.hold(order["entity_id"])
        store.unhold(order["entity_id"])
        store.invoice(order["entity_id"])
    assert store.wait_idle(15)
    arrivals = defaultdict(list)
    for body in receiver.bodies():
        arrivals[body["order"]["entity_id"]].append(body["order"]["updated_at"])
    assert len(arrivals) == 12
    for stamps in arrivals.values():
        assert len(stamps) == 4 and stamps == sorted(stamps)


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ([500, 200], [("retrying", 500), ("delivered", 200)]),
        ([429, 503, 200], [("retrying", 429), ("retrying", 503), ("delivered", 200)]),
        ([400], [("rejected", 400)]),
        ([404], [("rejected", 404)]),
        ([202], [("delivered", 202)]),
        ([502], [("retrying", 502)] * 3 + [("gave_up", 502)]),
    ],
)
def test_failures_are_retried_and_refusals_are_final(store, receiver, script, expected):
    receiver.script = script
    store.place_order()
    assert store.wait_idle(10)
    assert outcomes(store) == expected
    assert len(receiver.requests) == len(expected)
    attempts = [entry["attempt"] for entry in store.deliveries()]
    assert attempts == list(range(1, len(expected) + 1))


def test_retry_after_is_honoured(store, receiver):
    receiver.script = [(429, {"Retry-After": "0.4"}), 200]
    store.place_order()
    assert store.wait_idle(10)
    first, second = receiver.requests
    assert second["time"] - first["time"] >= 0.38


def test_timeouts_are_retried(receiver):
    receiver.script = [("sleep", 0.8, 200), 200]
    retry = {**FAST_RETRY, "timeout": 0.25}
    with SandboxStore(webhook_url=receiver.url, webhook_secret="s", retry=retry) as store:
        store.place_order()
        assert store.wait_idle(10)
        log = store.deliveries()
    assert [entry["outcome"] for entry in log] == ["retrying", "delivered"]
    assert log[0]["status"] is None and log[0]["error"].startswith("timeout")
    receiver.wait_finished()  # the slow answer ends before the receiver closes


def unused_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_connection_errors_are_retried_until_the_sender_gives_up():
    url = f"http://127.0.0.1:{unused_port()}/hook"
    with SandboxStore(webhook_url=url, retry=FAST_RETRY) as store:
        store.place_order()
        assert store.wait_idle(10)
        log = store.deliveries()
    assert [entry["outcome"] for entry in log] == ["retrying"] * 3 + ["gave_up"]
    assert all(entry["status"] is None and "ConnectionError" in entry["error"] for entry in log)


def test_a_failing_order_holds_back_only_its_own_later_saves(store, receiver):
    blocked = store.place_order()
    failures = {"left": 3}

    def responder(body):
        order = json.loads(body)["order"]
        if order["entity_id"] == blocked["entity_id"] and failures["left"]:
            failures["left"] -= 1
            return 503
        return None

    store.pause_delivery()
    receiver.responder = responder
    store.invoice(blocked["entity_id"])
    other = store.place_order()
    store.resume_delivery()
    assert store.wait_idle(10)
    arrivals = [(body["order"]["entity_id"], body["order"]["state"]) for body in receiver.bodies()]
    mine = [state for entity, state in arrivals if entity == blocked["entity_id"]]
    assert mine == ["new"] * 4 + ["processing"]
    assert arrivals.index((other["entity_id"], "new")) < arrivals.index(
        (blocked["entity_id"], "processing")
    )


def test_pause_and_resume_and_wait_idle(store, receiver):
    store.pause_delivery()
    store.place_order()
    assert store.wait_idle(0.2) is False
    status = store.status()["delivery"]
    assert (status["pending"], status["paused"], status["idle"]) == (1, True, False)
    assert receiver.requests == []
    store.resume_delivery()
    assert store.wait_idle(10)
    assert len(receiver.requests) == 1


def test_retargeting_sends_new_saves_to_the_new_place_with_the_new_secret(store, receiver):
    other = Receiver()
    try:
        store.place_order()
        assert store.wait_idle(10)
        store.set_webhook(url=other.url, secret="rotated-secret")
        store.place_order()
        assert store.wait_idle(10)
        assert len(receiver.requests) == 1
        [request] = other.requests
        assert request["headers"]["X-Magento-Signature"] == expected_signature(
            "rotated-secret", request["body"]
        )
        store.set_webhook(url="")
        store.place_order()
        assert store.wait_idle(10)
        assert len(other.requests) == 1
        assert store.settings()["MAGENTO_WEBHOOK_SECRET"] == "rotated-secret"
    finally:
        other.close()


def test_a_store_without_a_webhook_url_sends_nothing():
    with SandboxStore() as store:
        store.place_order()
        assert store.wait_idle(1)
        assert store.deliveries() == []
        assert store.status()["delivery"]["saves"] == 1


def test_chaos_duplicates_send_the_same_body_twice(store, receiver):
    store.set_chaos(duplicate=1.0)
    store.place_order()
    assert store.wait_idle(10)
    first, second = receiver.requests
    assert first["body"] == second["body"]
    log = store.deliveries()
    assert [entry["duplicate"] for entry in log] == [False, True]
    assert log[0]["event_id"] == log[1]["event_id"]


def test_chaos_drops_are_logged_and_never_sent(store, receiver):
    store.set_chaos(drop=0.5)
    orders = [store.place_order() for _ in range(40)]
    assert store.wait_idle(10)
    log = store.deliveries()
    dropped = {entry["entity_id"] for entry in log if entry["outcome"] == "dropped"}
    delivered = {body["order"]["entity_id"] for body in receiver.bodies()}
    assert dropped and delivered
    assert not dropped & delivered
    assert dropped | delivered == {order["entity_id"] for order in orders}
    assert store.status()["delivery"]["dropped"] == len(dropped)


def test_chaos_reordering_breaks_per_order_order(store, receiver):
    store.set_chaos(reorder_window=0.3)
    for _ in range(15):
        order = store.place_order()
        store.invoice(order["entity_id"])
        store.ship(order["entity_id"])
    assert store.wait_idle(10)
    arrivals = defaultdict(list)
    for body in receiver.bodies():
        arrivals[body["order"]["entity_id"]].append(body["order"]["updated_at"])
    assert sum(len(stamps) for stamps in arrivals.values()) == 45
    assert any(stamps != sorted(stamps) for stamps in arrivals.values())


def test_chaos_bursts_release_deliveries_together(store, receiver):
    store.set_chaos(burst_every=0.5)
    for _ in range(10):
        store.place_order()
    receiver.wait_for(10)
    assert store.wait_idle(10)
    log = store.deliveries()
    assert [entry["outcome"] for entry in log] == ["delivered"] * 10
    # Each delivery is held until the first burst at or after it was queued, so the deliveries
    # queued between two bursts go out together. (The log says when, on the sender's clock:
    # timing arrivals at the receiver would measure how busy the machine is.)
    for entry in log:
        bursts = entry["released_ms"] / 500
        assert bursts == pytest.approx(round(bursts), abs=1e-6), entry
        assert entry["queued_ms"] <= entry["released_ms"] < entry["queued_ms"] + 500, entry
    assert len({entry["released_ms"] for entry in log}) < 10


def test_the_registration_challenge_is_checked_against_the_receiver(store):
    result = store.verify_webhook()
    assert result["ok"] is True and result["status"] == 200
    assert result["answer"] == result["challenge"]


def test_a_scenario_delivers_every_save_verified_and_in_order(store, receiver):
    result = store.run_scenario(orders=120, steps=["place", "invoice", "ship"], wait=True)
    assert result["saves"] == 360 and result["idle"] is True
    assert len(receiver.requests) == 360
    arrivals = defaultdict(list)
    for request in receiver.requests:
        assert request["headers"]["X-Magento-Signature"] == expected_signature(
            WEBHOOK_SECRET, request["body"]
        )
        order = json.loads(request["body"])["order"]
        arrivals[order["entity_id"]].append((order["updated_at"], order["state"]))
    assert sorted(arrivals) == sorted(result["entity_ids"])
    for saves in arrivals.values():
        assert [state for _, state in saves] == ["new", "processing", "complete"]
        assert saves == sorted(saves)
