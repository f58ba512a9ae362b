"""End to end with the clock: reconciliation makes up for webhooks that never came.

Real processes: the sandbox store (webhooks dropped at random, or none at all), a gunicorn web
process when there are webhooks, ``magsync worker`` (Celery, thread pool) and ``magsync clock``
(Celery beat, a reconcile pass every few seconds) on the real RabbitMQ, in a namespace of the
test's own, against the sandbox org over HTTPS. Orders move through their lifecycles while the
webhooks go missing; the org must end with every order's latest state, one record per order,
within two reconcile intervals of the last change.
"""

import time

import pytest

from magsync.ledger import Ledger
from magsync.sandbox.magento import SandboxStore
from magsync.settings import Settings
from tests import processes
from tests.helpers import delete_namespace, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.rabbitmq]

INTERVAL = 5  # seconds between reconcile passes
OVERLAP = 5
ORDERS = 120
SECRET = "e2e-reconcile-webhook-secret"


@pytest.fixture
def stack(tmp_path, org_factory):
    """Start the processes for a store (``run(store)``); everything is stopped afterwards."""
    from tests import services

    rabbitmq_url = services.require_rabbitmq()
    namespace = f"magsync-e2e-reconcile-{int(time.time() * 1000) % 10**9}"
    org = org_factory()
    started, stores = [], []
    broker_env = {
        "MAGSYNC_BROKER_NAMESPACE": namespace,
        "CELERY_BROKER_URL": rabbitmq_url,
        "LOG_LEVEL": "INFO",
    }

    def run(store, web_port=None):
        stores.append(store)
        if web_port is not None:
            web_env = {**broker_env, "MAGENTO_WEBHOOK_SECRET": SECRET}
            started.append(processes.start_web(web_env, tmp_path, port=web_port)[0])
        env = {
            **broker_env,
            **org.settings(),
            **store.settings(),
            "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
            "MAGSYNC_RECONCILE_INTERVAL": str(INTERVAL),
            "MAGSYNC_RECONCILE_OVERLAP": str(OVERLAP),
        }
        if web_port is None:
            env.pop("MAGENTO_WEBHOOK_SECRET")  # polling only: no intake anywhere
        started.append(processes.start_worker(env, tmp_path, name="reconcile", concurrency=16))
        clock = processes.Process(
            "clock", [str(processes.BIN / "magsync"), "clock"], env, tmp_path / "clock.log"
        )
        started.append(clock)
        clock.wait_for_log("beat: Starting", timeout=30)
        return {"org": org, "env": env, "clock": clock, "worker": started[-2]}

    yield run
    for process in reversed(started):
        process.stop()
    for store in stores:
        store.stop()
    delete_namespace(rabbitmq_url, namespace)


def differences(org, store):
    """Orders whose Opportunities are not exactly one holding the store's latest state."""
    stages = Settings.from_env({}).sf_stage_map
    found = {}
    for record in org.records("Opportunity"):
        found.setdefault(record["Magento_Order_ID__c"], []).append(record)
    wrong = []
    for order in store.truth():
        records = found.get(order["increment_id"], [])
        if not (
            len(records) == 1
            and records[0]["StageName"] == stages.get(order["state"])
            and records[0]["Amount"] == pytest.approx(order["grand_total"])
        ):
            wrong.append(order["increment_id"])
    return wrong


def converge(org, store):
    """Seconds from the last change until the org holds the store's truth."""
    last_change = time.monotonic()
    wait_for(lambda: not differences(org, store), timeout=6 * INTERVAL, what="the store's truth")
    return time.monotonic() - last_change


def lifecycles(store):
    """Orders placed, invoiced and shipped, some cancelled instead, over about ten seconds."""
    result = store.run_scenario(orders=ORDERS, steps=["invoice", "ship"], lag=7, duration=8)
    for entity_id in result["entity_ids"][:10]:
        store.comment(entity_id, "left at the door")
    cancelled = [store.place_order()["entity_id"] for _ in range(10)]
    for entity_id in cancelled:
        store.cancel(entity_id)
    return ORDERS + 10


def watermark(env):
    ledger = Ledger(Settings.from_env(env))
    try:
        return ledger.watermark(Settings.from_env(env).store_key)
    finally:
        ledger.close()


def test_with_30_percent_of_webhooks_dropped_the_clock_makes_up_for_them(stack):
    web_port = processes.free_port()
    store = SandboxStore(
        webhook_url=f"http://127.0.0.1:{web_port}/magento/webhook",
        webhook_secret=SECRET,
        seed=41,
        chaos={"drop": 0.3},
    ).start()
    running = stack(store, web_port=web_port)
    org = running["org"]

    count = lifecycles(store)
    took = converge(org, store)

    assert len(store.truth()) == count
    assert store.status()["delivery"]["dropped"] > 0.2 * count
    assert differences(org, store) == []
    assert took <= 2 * INTERVAL, f"converged {took:.1f} s after the last change"
    print(
        f"\n{count} orders, 30% of webhooks dropped: converged {took:.1f} s after the last change"
    )
    worker_log = running["worker"].log()
    assert "reconcile pass done" in worker_log
    assert watermark(running["env"]).updated_at is not None


def test_polling_only_without_any_webhook(stack):
    store = SandboxStore(seed=43).start()  # no webhook URL: the store sends nothing
    running = stack(store)
    org = running["org"]

    count = lifecycles(store)
    took = converge(org, store)

    assert store.status()["delivery"]["queued"] == 0
    assert len(store.truth()) == count
    assert took <= 2 * INTERVAL, f"converged {took:.1f} s after the last change"
    print(f"\n{count} orders, no webhooks: converged {took:.1f} s after the last change")
    # Polling only: new orders are expected, not a broken intake.
    assert "webhook never came" not in running["worker"].log()
    # The ledger says where each order came from.
    number = store.truth()[0]["increment_id"]
    ledger = Ledger(Settings.from_env(running["env"]))
    try:
        _, history = ledger.history(number)
    finally:
        ledger.close()
    sources = {e.detail.get("source") for e in history if e.kind == "received"}
    assert sources == {"reconcile"}
    # Beat kept its schedule in memory: no celerybeat-schedule file in the working folder.
    assert not list(processes.ROOT.glob("celerybeat-schedule*"))
