"""End to end on Adobe I/O Events, with real processes: the sandbox store sends the Adobe envelope,
signed with its two RSA keys, with duplicates and reordering, to ``/adobe/events`` of a gunicorn
web process that has no ``MAGENTO_WEBHOOK_SECRET``; the web fetches the store's public keys,
publishes to RabbitMQ, and ``magsync worker`` processes read each order from the store's REST API
and upsert it into the sandbox org.

The org must end with exactly the store's truth, one Opportunity per order, and an event that
Adobe delivers again must cost no Salesforce call.
"""

import json
import time

import pytest
import requests

from magsync.ledger import Ledger
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.magento.webhooks import adobe_envelope
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from tests import processes
from tests.helpers import delete_namespace, queue_depth, wait_for

pytestmark = pytest.mark.slow

CLIENT_ID = "e2e-adobe-io-project"
ORDERS = 16


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    from tests import services

    rabbitmq_url = services.require_rabbitmq()
    namespace = f"magsync-e2e-adobe-{int(time.time() * 1000) % 10**9}"
    logs = tmp_path_factory.mktemp("e2e-adobe-logs")
    org = SandboxOrg(state_dir=tmp_path_factory.mktemp("org")).start()
    web_port = processes.free_port()
    store = SandboxStore(
        webhook_url=f"http://127.0.0.1:{web_port}/adobe/events",
        envelope="adobe",
        seed=29,
        adobe_client_id=CLIENT_ID,
        chaos={"duplicate": 0.5, "reorder_window": 0.4},
        # Adobe's retry schedule, a day in under 90 s.
        retry={"time_scale": 0.001},
    ).start()
    broker_env = {
        "MAGSYNC_BROKER_NAMESPACE": namespace,
        "CELERY_BROKER_URL": rabbitmq_url,
        "LOG_LEVEL": "INFO",
    }
    rest = {k: v for k, v in store.settings().items() if k != "MAGENTO_WEBHOOK_SECRET"}
    started = []
    try:
        web_env = {**broker_env, **store.adobe_settings(), "MAGSYNC_PUBLISH_TIMEOUT": "2"}
        assert "MAGENTO_WEBHOOK_SECRET" not in web_env
        web, web_url = processes.start_web(web_env, logs, port=web_port)
        started.append(web)
        worker_env = {**broker_env, **org.settings(), **rest}
        worker = processes.start_worker(worker_env, logs, name="adobe", concurrency=2)
        started.append(worker)
        yield {
            "org": org,
            "store": store,
            "web": web,
            "web_url": web_url,
            "worker": worker,
            "ledger_url": f"sqlite:///{logs / 'ledger.db'}",
            "rabbitmq_url": rabbitmq_url,
            "namespace": namespace,
        }
    finally:
        for process in reversed(started):
            process.stop()
        store.stop()
        org.stop()
        delete_namespace(rabbitmq_url, namespace)


def opportunities(org):
    by_number = {}
    for record in org.records("Opportunity"):
        by_number.setdefault(record["Magento_Order_ID__c"], []).append(record)
    return by_number


def matches_truth(org, store, stages):
    found = opportunities(org)
    return all(
        len(found.get(o["increment_id"], [])) == 1
        and found[o["increment_id"]][0]["StageName"] == stages.get(o["state"])
        and found[o["increment_id"]][0]["Amount"] == pytest.approx(o["grand_total"])
        for o in store.truth()
    )


def idle(stack):
    return queue_depth(stack["rabbitmq_url"], f"{stack['namespace']}.orders") == 0


def history_kinds(stack, number):
    ledger = Ledger(Settings.from_env({"DATABASE_URL": stack["ledger_url"]}))
    try:
        return [event.kind for event in ledger.history(number)[1]]
    finally:
        ledger.close()


def test_duplicated_reordered_adobe_deliveries_end_as_the_stores_truth(stack):
    org, store = stack["org"], stack["store"]
    stages = Settings.from_env({}).sf_stage_map
    for n in range(ORDERS):
        order = store.place_order()
        if n % 4 in (0, 1):
            store.invoice(order["entity_id"])
        if n % 4 == 0:
            store.ship(order["entity_id"])
        if n % 4 == 2:
            store.cancel(order["entity_id"])
    assert store.wait_idle(90)
    status = store.status()["delivery"]
    assert status["duplicated"] > 0
    assert status["delivered"] == status["queued"]  # every copy accepted, none refused
    [registration] = status["registrations"]
    assert registration["ok"]  # magsync answered Adobe's registration check

    wait_for(lambda: matches_truth(org, store, stages), timeout=90, what="the store's truth")
    wait_for(lambda: idle(stack), what="the worker to finish")
    found = opportunities(org)
    assert sorted(found) == sorted(o["increment_id"] for o in store.truth())
    assert all(len(records) == 1 for records in found.values())
    web_log = stack["web"].log()
    assert "adobe public key fetched" in web_log
    assert "adobe delivery refused" not in web_log


def test_an_event_delivered_again_costs_no_salesforce_call(stack):
    org, store = stack["org"], stack["store"]
    store.wait_idle(30)
    wait_for(lambda: idle(stack), what="the worker to finish earlier orders")
    order = store.place_order()
    [delivered] = wait_for(
        lambda: [
            d
            for d in store.deliveries()
            if d["increment_id"] == order["increment_id"] and d["outcome"] == "delivered"
        ][:1],
        what="the order's delivery",
    )
    wait_for(
        lambda: "synced" in history_kinds(stack, order["increment_id"]),
        what="the order in Salesforce",
    )
    wait_for(lambda: idle(stack), what="the worker to finish")
    calls = org.stats()["api_calls"]

    # Adobe delivers the same event again (its retry after a lost answer).
    body = adobe_envelope(
        store.order(order["entity_id"]), delivered["event_id"], store.adobe_context
    )
    response = requests.post(
        stack["web_url"] + "/adobe/events",
        data=body,
        headers={
            "Content-Type": "application/cloudevents+json",
            "x-adobe-event-id": delivered["event_id"],
            **store.adobe_keys.headers(body),
        },
        timeout=10,
    )
    assert response.status_code == 202, response.text
    assert json.loads(response.text)["task_ids"] == [
        f"{order['increment_id']}:{delivered['event_id']}"
    ]
    wait_for(
        lambda: "skipped_duplicate" in history_kinds(stack, order["increment_id"]),
        what="the repeat to be skipped by its event id",
    )
    assert org.stats()["api_calls"] == calls
    assert len(opportunities(org)[order["increment_id"]]) == 1
