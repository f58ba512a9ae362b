"""End to end with real processes: the sandbox store sends signed webhooks to a gunicorn web
process, which publishes to RabbitMQ (through a proxy the test can cut); ``magsync worker``
(Celery, prefork) fetches the order from the store's REST API and upserts it into the sandbox org
over HTTPS.
"""

import json
import time

import pytest
import requests

from magsync.magento.signature import sign
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from tests import processes
from tests.helpers import SEED_OPPORTUNITY, delete_namespace, load_fixture, queue_depth, wait_for
from tests.tcpproxy import TcpProxy

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

SECRET = "e2e-webhook-secret"


def worker_idle(stack):
    """Nothing left in the work queue (the worker may still be finishing its last task)."""
    return queue_depth(stack["rabbitmq_url"], f"{stack['namespace']}.orders") == 0


def opportunities(org, order_number):
    return [r for r in org.records("Opportunity") if r.get("Magento_Order_ID__c") == order_number]


@pytest.fixture(scope="module")
def stack(tmp_path_factory, request):
    """Org, store, broker proxy, web and worker, shared by this module's tests."""
    from tests import services

    rabbitmq_url = services.require_rabbitmq()
    namespace = f"magsync-e2e-{int(time.time() * 1000) % 10**9}"
    logs = tmp_path_factory.mktemp("e2e-logs")
    org = SandboxOrg(state_dir=tmp_path_factory.mktemp("org")).start()
    proxy = TcpProxy("127.0.0.1", 5672).start()
    broker_env = {"MAGSYNC_BROKER_NAMESPACE": namespace, "LOG_LEVEL": "INFO"}
    web_port = processes.free_port()
    store = SandboxStore(
        webhook_url=f"http://127.0.0.1:{web_port}/magento/webhook",
        webhook_secret=SECRET,
        seed=7,
    ).start()
    started = []
    try:
        web, web_url = processes.start_web(
            {
                **broker_env,
                "CELERY_BROKER_URL": proxy.url(),
                "MAGENTO_WEBHOOK_SECRET": SECRET,
                "MAGSYNC_PUBLISH_TIMEOUT": "2",
            },
            logs,
            port=web_port,
        )
        started.append(web)
        worker_env = {
            **broker_env,
            "CELERY_BROKER_URL": rabbitmq_url,
            **org.settings(),
            **store.settings(),
            "MAGSYNC_RETRY_BACKOFF": "1",
            "MAGSYNC_RETRY_BACKOFF_MAX": "2",
            # One order per call (prefork): this module counts each order's calls.
            "MAGSYNC_BATCH_SIZE": "1",
        }
        worker = processes.start_worker(worker_env, logs, name="e2e", concurrency=2)
        started.append(worker)
        yield {
            "org": org,
            "store": store,
            "proxy": proxy,
            "web": web,
            "web_url": web_url,
            "worker": worker,
            "worker_env": worker_env,
            "logs": logs,
            "rabbitmq_url": rabbitmq_url,
            "namespace": namespace,
        }
    finally:
        for process in reversed(started):
            process.stop()
        store.stop()
        org.stop()
        proxy.close()
        delete_namespace(rabbitmq_url, namespace)


SEED_OVERRIDES = load_fixture("seed_webhook.json")["order"]


def test_seed_order_becomes_the_seed_opportunity_and_a_replay_changes_nothing(stack):
    org, store = stack["org"], stack["store"]
    order = store.place_order(
        **{k: v for k, v in SEED_OVERRIDES.items() if k not in ("entity_id", "updated_at")}
    )
    [record] = wait_for(lambda: opportunities(org, "000000123"), what="the seed Opportunity")
    assert {k: record[k] for k in SEED_OPPORTUNITY} == SEED_OPPORTUNITY
    assert record["Id"].startswith("006")

    # The same webhook again (a sender's retry): the ledger knows this version, so nothing is
    # written and Salesforce is not called at all.
    calls = org.stats()["api_calls"]
    body = json.dumps({"event": "sales_order_save_after", "order": order}).encode()
    response = requests.post(
        stack["web_url"] + "/magento/webhook",
        data=body,
        headers={"Content-Type": "application/json", "X-Magento-Signature": sign(body, SECRET)},
        timeout=10,
    )
    assert response.status_code == 202
    wait_for(
        lambda: any(
            "order event skipped" in line
            and "order=000000123" in line
            and "skipped=unchanged" in line
            for line in stack["worker"].log().splitlines()
        ),
        what="the replay to be skipped as unchanged",
    )
    assert org.stats()["api_calls"] == calls
    [again] = opportunities(org, "000000123")
    assert again["Id"] == record["Id"]
    assert {k: again[k] for k in SEED_OPPORTUNITY} == SEED_OPPORTUNITY
    [account] = [a for a in org.records("Account") if a["Id"] == again["AccountId"]]
    assert account["Name"] == "Jane Doe"


def calls_added(org, before):
    after = org.stats()["calls_by_kind"]
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def test_api_calls_per_order_event(stack):
    """A first order costs one Composite call (Opportunity, contact role, and the buyer's
    Account and Contact when new), plus one SOQL lookup for a buyer the ledger does not know;
    every later change of the order costs one upsert."""
    org, store = stack["org"], stack["store"]
    store.wait_idle(30)
    wait_for(lambda: worker_idle(stack), what="the worker to finish earlier orders")
    known = {o["customer_email"].strip().lower() for o in store.truth()}
    before = org.stats()["calls_by_kind"]
    placed = [store.place_order() for _ in range(5)]
    wait_for(
        lambda: all(opportunities(org, o["increment_id"]) for o in placed),
        what="five Opportunities",
    )
    wait_for(lambda: worker_idle(stack), what="the worker to finish")
    new_buyers = {o["customer_email"].strip().lower() for o in placed} - known
    expected = {"composite": 5, "query": len(new_buyers)} if new_buyers else {"composite": 5}
    assert calls_added(org, before) == expected

    before = org.stats()["calls_by_kind"]
    for order in placed:
        store.invoice(order["entity_id"])
    wait_for(
        lambda: all(
            opportunities(org, o["increment_id"])[0]["StageName"] == "Qualification" for o in placed
        ),
        what="five invoiced orders",
    )
    wait_for(lambda: worker_idle(stack), what="the worker to finish")
    assert calls_added(org, before) == {"upsert": 5}


def test_order_lifecycle_reaches_the_newest_state(stack):
    org, store = stack["org"], stack["store"]
    order = store.place_order()
    store.invoice(order["entity_id"])
    store.ship(order["entity_id"])
    number = order["increment_id"]
    wait_for(
        lambda: any(r["StageName"] == "Closed Won" for r in opportunities(org, number)),
        what="the shipped order to be Closed Won",
    )
    assert len(opportunities(org, order["increment_id"])) == 1


SIGNED = json.dumps(load_fixture("seed_webhook.json")).encode()

HTTP_CASES = [
    pytest.param({}, SIGNED, "application/json", 401, id="unsigned"),
    pytest.param(
        {"X-Magento-Signature": "sha256=" + "ab" * 32},
        SIGNED,
        "application/json",
        401,
        id="mismatch",
    ),
    pytest.param(
        {"X-Magento-Signature": "md5=abc"}, SIGNED, "application/json", 400, id="other-algorithm"
    ),
    pytest.param(
        {"X-Magento-Signature": sign(SIGNED, SECRET)}, SIGNED, "text/xml", 415, id="content-type"
    ),
    pytest.param(
        {"X-Magento-Signature": sign(b"{", SECRET)}, b"{", "application/json", 400, id="bad-json"
    ),
    pytest.param(
        {"X-Magento-Signature": sign(b'{"event": "x"}', SECRET)},
        b'{"event": "x"}',
        "application/json",
        422,
        id="unknown-event",
    ),
]


@pytest.mark.parametrize(("headers", "body", "content_type", "status"), HTTP_CASES)
def test_signature_and_envelope_cases_over_http_enqueue_nothing(
    stack, headers, body, content_type, status
):
    stack["store"].wait_idle(30)
    accepted_before = stack["web"].log().count("webhook accepted")
    response = requests.post(
        stack["web_url"] + "/magento/webhook",
        data=body,
        headers={**headers, "Content-Type": content_type},
        timeout=10,
    )
    assert response.status_code == status
    assert stack["web"].log().count("webhook accepted") == accepted_before
    assert queue_depth(stack["rabbitmq_url"], f"{stack['namespace']}.orders") == 0


def test_broker_down_gives_503_and_loses_nothing_once_back(stack):
    org, store, proxy = stack["org"], stack["store"], stack["proxy"]
    proxy.set_mode("down")
    try:
        order = store.place_order()
        wait_for(
            lambda: any(
                d["increment_id"] == order["increment_id"] and d.get("status") == 503
                for d in store.deliveries()
            ),
            what="a 503 answer while the broker is down",
        )
        assert not opportunities(org, order["increment_id"])
    finally:
        proxy.set_mode("up")
    [record] = wait_for(
        lambda: opportunities(org, order["increment_id"]),
        timeout=60,
        what="the order once the broker is back",
    )
    assert record["Magento_Order_ID__c"] == order["increment_id"]
    statuses = [
        d["status"] for d in store.deliveries() if d["increment_id"] == order["increment_id"]
    ]
    assert 503 in statuses
    assert statuses[-1] == 202
