"""The control API, driven through ControlClient as other processes drive a running store."""

import pytest
import requests

from magsync.sandbox.magento import ControlClient, ControlError
from tests.helpers import Clock, wait_for


@pytest.fixture
def client(store):
    with ControlClient(store.url) as client:
        yield client


def test_settings_are_what_the_store_reports(store, client):
    settings = client.settings()
    assert settings == store.settings()
    assert settings["MAGENTO_BASE_URL"] == store.url


def test_place_an_order_with_pinned_fields(client):
    order = client.place_order(
        kind="guest",
        increment_id="000000777",
        customer_email="o'hara@example.com",
        billing_address={"firstname": "Renée", "lastname": "O'Hara"},
    )
    assert order["increment_id"] == "000000777"
    assert order["customer_is_guest"] == 1
    assert order["billing_address"]["lastname"] == "O'Hara"
    assert client.order(order["entity_id"]) == order


def test_lifecycle_through_the_control_api(client):
    order = client.place_order()
    entity_id = order["entity_id"]
    assert client.invoice(entity_id)["state"] == "processing"
    assert client.ship(entity_id)["state"] == "complete"
    assert client.comment(entity_id, "Parcel left with the neighbour")["status_histories"][0][
        "comment"
    ] == ("Parcel left with the neighbour")
    assert client.refund(entity_id)["state"] == "closed"
    with pytest.raises(ControlError) as refused:
        client.cancel(entity_id)
    assert refused.value.status == 400
    assert refused.value.body == {"message": "You have not canceled the item."}
    other = client.place_order()
    assert client.hold(other["entity_id"])["state"] == "holded"
    assert client.unhold(other["entity_id"])["state"] == "new"
    child = client.edit(other["entity_id"])
    assert child["increment_id"] == other["increment_id"] + "-1"
    assert client.order(other["entity_id"])["state"] == "canceled"


def test_unknown_orders_actions_and_routes(client):
    with pytest.raises(ControlError) as missing:
        client.invoice(4242)
    assert missing.value.status == 404
    assert missing.value.body["message"].startswith("The entity that was requested doesn't exist")
    order = client.place_order()
    with pytest.raises(ControlError) as unknown:
        client.act(order["entity_id"], "teleport")
    assert unknown.value.status == 400
    with pytest.raises(ControlError) as route:
        client._call("GET", "nothing-here")
    assert route.value.status == 404


def test_invalid_bodies_are_refused(store):
    with requests.Session() as session:
        bad_json = session.post(f"{store.url}/_sandbox/orders", data=b"{nope", timeout=5)
        not_object = session.post(f"{store.url}/_sandbox/orders", json=[1, 2], timeout=5)
    assert bad_json.status_code == 400 and not_object.status_code == 400


def test_batch_creation_and_the_truth(client):
    created = client.create_orders(5, kind="configurable", steps=["invoice", "ship"])
    assert created["count"] == 5 and len(created["increment_ids"]) == 5
    summary = client.truth(summary=True)
    by_id = {order["entity_id"]: order for order in summary}
    assert {by_id[i]["state"] for i in created["entity_ids"]} == {"complete"}
    assert {"increment_id", "updated_at", "grand_total", "customer_email"} <= set(summary[0])
    full = client.truth()
    assert len(full) == 5 and "items" in full[0]


def test_delivery_log_can_be_read_incrementally(client, store):
    client.create_orders(3)
    assert client.wait_idle(10) is True
    first = client.deliveries()
    assert len(first["entries"]) == 3 and first["next"] == 3
    client.create_orders(2)
    assert client.wait_idle(10) is True
    more = client.deliveries(since=first["next"])
    assert len(more["entries"]) == 2 and more["next"] == 5
    assert more["entries"] == store.deliveries(3)


def test_chaos_webhook_and_retry_settings(client, receiver):
    assert client.chaos() == {
        "duplicate": 0.0,
        "drop": 0.0,
        "reorder_window": 0.0,
        "burst_every": 0.0,
    }
    assert client.set_chaos(drop=0.25)["drop"] == 0.25
    assert client.set_chaos(duplicate=0.5) == {
        "duplicate": 0.5,
        "drop": 0.0,
        "reorder_window": 0.0,
        "burst_every": 0.0,
    }
    with pytest.raises(ControlError) as bad:
        client.set_chaos(drop=2)
    assert bad.value.status == 400
    target = client.set_webhook(envelope="adobe", secret="new-secret")
    assert target == {"url": receiver.url, "secret": "new-secret", "envelope": "adobe"}
    with pytest.raises(ControlError):
        client.set_webhook(envelope="soap")
    assert client.set_retry_policy(max_attempts=7)["max_attempts"] == 7
    assert client.verify_webhook()["ok"] is True


def test_pause_resume_and_idle(client, receiver):
    paused = client.pause()
    assert paused["paused"] is True
    client.create_orders(2)
    assert client.wait_idle(0.2) is False
    assert client.status()["delivery"]["pending"] == 2
    assert client.resume()["paused"] is False
    assert client.wait_idle(10) is True
    assert len(receiver.requests) == 2


def test_scenarios_run_in_the_foreground_and_in_the_background(client, receiver):
    result = client.run_scenario(orders=5, steps=["invoice"], wait=True)
    assert result["saves"] == 10 and result["idle"] is True
    started = client.run_scenario(background=True, orders=20, steps=["invoice", "ship"], lag=3)
    assert started["finished"] is False or started["result"]

    def finished():
        state = client.scenario(started["id"])
        return state if state["finished"] else None

    state = wait_for(finished, timeout=20, what="the background scenario to finish")
    assert state["error"] is None
    assert state["progress"] == {"done": 60, "total": 60}
    assert len(state["result"]["entity_ids"]) == 20
    assert client.wait_idle(10)
    assert len(receiver.requests) == 70
    with pytest.raises(ControlError) as bad:
        client.run_scenario(orders=1, steps=["teleport"])
    assert bad.value.status == 400


def test_a_paced_scenario_takes_its_duration(store):
    result = store.run_scenario(orders=10, steps=[], duration=0.5)
    assert result["elapsed"] >= 0.4  # the tenth save is due 9 x 0.05 s after the first


@pytest.mark.parametrize(("burst", "waits"), [(1, [0.05] * 9), (2, [0.1] * 4), (5, [0.25])])
def test_a_paced_scenario_spreads_its_saves_evenly(store, burst, waits):
    from magsync.sandbox.magento import scenario

    clock = Clock()
    run = scenario.ScenarioRun({})
    result = scenario.run(
        store, run, orders=10, steps=[], duration=0.5, burst=burst, clock=clock, sleep=clock.sleep
    )
    # The store takes no time on this clock: every wait is the pacing's.
    assert clock.slept == pytest.approx(waits)
    assert result["elapsed"] == pytest.approx(sum(waits))
    assert result["saves"] == 10


def test_interleaved_steps_follow_the_lag():
    from magsync.sandbox.magento.scenario import plan

    place = [(0, None), (1, None), (2, None)]
    invoice = [(0, "invoice"), (1, "invoice"), (2, "invoice")]
    assert plan(3, ["invoice"], 0) == [
        place[0],
        invoice[0],
        place[1],
        invoice[1],
        place[2],
        invoice[2],
    ]
    assert plan(3, ["invoice"], 1) == [
        place[0],
        place[1],
        invoice[0],
        place[2],
        invoice[1],
        invoice[2],
    ]
    assert plan(3, ["invoice"], 2) == [*place, *invoice]


def test_the_adobe_public_keys_are_served(store):
    paths = store.adobe_keys.paths
    with requests.Session() as session:
        for path in paths:
            answer = session.get(f"{store.url}{path}", timeout=5)
            assert answer.status_code == 200
            assert answer.content.startswith(b"-----BEGIN PUBLIC KEY-----")
        assert session.get(f"{store.url}/prod/keys/pub-key-other.pem", timeout=5).status_code == 404


def test_a_client_that_hangs_up_mid_answer_leaves_no_traceback(capfd):
    import socket
    import struct

    from magsync.sandbox.magento import SandboxStore

    with SandboxStore(seed=9) as store:
        store.create_orders(150)
        host, port = store.url.removeprefix("http://").split(":")
        handled = store.status()["connections_handled"]
        for _ in range(5):
            with socket.create_connection((host, int(port))) as sock:
                sock.sendall(f"GET /_sandbox/orders HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
                # Reset at once: the store's answer (all orders) meets a closed connection.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        # Once the store is done with all five, whatever it had to say about them is on stderr.
        wait_for(
            lambda: store.status()["connections_handled"] >= handled + 5,
            timeout=20,
            what="the store to finish with the five connections",
        )
        assert store.order(1)["entity_id"] == 1  # still serving
    err = capfd.readouterr().err
    assert "Traceback" not in err, err
