"""A Salesforce call whose answer never came may still be carried out after a newer version was
written (a timeout, a worker killed mid-call). An order written while an earlier write of it is
in doubt is written again once ``MAGSYNC_LATE_WRITE_WINDOW`` has passed: Salesforce ends with the
store's latest state whatever the late call put back."""

import datetime as dt
import time
import uuid

import pytest

from magsync.errors import DeadLetter, Deferred, RetryLater
from magsync.ledger import OrderState
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from magsync.sync.pipeline import late_write_possible, sync_order
from magsync.sync.services import Services
from tests.helpers import delete_namespace, event_for, wait_for

UPSERT = r"/sobjects/Opportunity/Magento_Order_ID__c/"


@pytest.fixture
def org(tmp_path):
    with SandboxOrg(state_dir=tmp_path / "org") as org:
        yield org


@pytest.fixture
def store():
    with SandboxStore(seed=23) as store:
        yield store


@pytest.fixture
def services(org, store, tmp_path):
    values = {
        "DATABASE_URL": f"sqlite:///{tmp_path / 'ledger.db'}",
        **org.settings(),
        **store.settings(),
        "SALESFORCE_TIMEOUT": "1",
        "MAGSYNC_LATE_WRITE_WINDOW": "3",
    }
    svc = Services.build(Settings.from_env(values))
    yield svc
    svc.close()


def stage(org, number):
    [record] = [r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == number]
    return record["StageName"]


def test_a_write_after_one_in_doubt_is_written_again_and_undoes_the_late_call(org, store, services):
    order = store.place_order()
    number = order["increment_id"]
    assert "recheck" not in sync_order(event_for(order), services)
    store.invoice(order["entity_id"])
    # The invoice's upsert is held past the client's timeout, then carried out all the same.
    org.add_fault(kind="hang", path_regex=UPSERT, seconds=2.5, then="proceed", count=1)
    with pytest.raises(RetryLater) as info:
        sync_order(event_for(order), services)
    assert info.value.reason == "timeout"
    store.ship(order["entity_id"])
    shipped = sync_order(event_for(order), services)
    assert shipped["state"] == "complete" and shipped["recheck"] is True
    latest = stage(org, number)

    # The held call lands after the newer write: Salesforce shows the invoice's stage again.
    wait_for(lambda: stage(org, number) != latest, timeout=10, what="the late write")
    calls = org.stats()["api_calls"]
    again = sync_order(dict(event_for(order), recheck=True), services)
    assert "skipped" not in again and "recheck" not in again
    assert stage(org, number) == latest
    assert org.stats()["api_calls"] == calls + 1


def records(org, sobject):
    return len(org.records(sobject))


def first_write_held(org, store, services):
    """A new order whose first write (the buyer, the Opportunity, its role in one Composite
    call) is held past the client's timeout, then carried out all the same; the order and the
    ``RetryLater`` its attempt raised."""
    order = store.place_order()
    org.add_fault(kind="hang", path_regex=r"/composite$", seconds=2.0, then="proceed", count=1)
    with pytest.raises(RetryLater) as info:
        sync_order(event_for(order), services)
    return order, info.value


def waits_without_a_call(org, order, services):
    """The order's next attempt waits for the window instead of writing; the ``Deferred``."""
    calls = org.stats()["api_calls"]
    with pytest.raises(Deferred) as waiting:
        sync_order(event_for(order), services)
    assert waiting.value.reason == "interrupted_write"
    assert org.stats()["api_calls"] == calls
    return waiting.value


def synced_once_the_window_passed(org, order, services, waiting):
    """The held call has landed; the order, written after the wait, created nothing twice."""
    wait_for(lambda: records(org, "OpportunityContactRole") == 1, timeout=10, what="the late call")
    time.sleep(waiting.wait)
    synced = sync_order(event_for(order), services)
    for sobject in ("Account", "Contact", "Opportunity", "OpportunityContactRole"):
        assert records(org, sobject) == 1, sobject
    return synced


def test_a_first_write_held_past_its_timeout_makes_the_next_one_wait_then_creates_nothing_twice(
    org, store, services
):
    order, error = first_write_held(org, store, services)
    number = order["increment_id"]
    assert error.reason == "timeout"
    assert services.ledger.order(number).status == "unanswered"
    # Its retry would look the role up before the held call lands, then create it a second
    # time: it waits for the window instead, without a call.
    waiting = waits_without_a_call(org, order, services)
    assert 0 < waiting.wait <= 3

    synced = synced_once_the_window_passed(org, order, services, waiting)
    assert "skipped" not in synced and "recheck" not in synced
    assert services.ledger.order(number).status == "synced"


def test_an_order_dead_lettered_after_an_unanswered_write_waits_before_creating_records(
    org, store, services
):
    order, error = first_write_held(org, store, services)
    number = order["increment_id"]
    # The task shell gives up on the order (its retries spent): a dead letter, as it notes one.
    services.ledger.note(number, "dead_lettered", error, attempt=1)
    assert services.ledger.order(number).status == "dead_lettered"
    # A new save of the order (or a replay of the letter) within the window would create the
    # role a second time if the held call landed after its lookup: it waits without a call.
    store.invoice(order["entity_id"])
    waiting = waits_without_a_call(org, order, services)

    synced = synced_once_the_window_passed(org, order, services, waiting)
    assert synced["state"] == "processing" and "recheck" not in synced


def test_an_order_dead_lettered_after_a_refused_write_is_written_at_once_when_it_comes_again(
    org, store, services
):
    order = store.place_order()
    number = order["increment_id"]
    refused = [{"message": "Required fields are missing", "errorCode": "REQUIRED_FIELD_MISSING"}]
    org.add_fault(kind="status", status=400, body=refused, path_regex=r"/composite$", count=1)
    with pytest.raises(DeadLetter) as info:
        sync_order(event_for(order), services)
    services.ledger.note(number, "dead_lettered", info.value, attempt=1)
    state = services.ledger.order(number)
    assert (state.status, state.in_doubt, state.interrupted) == ("dead_lettered", True, False)
    # Replayed once the cause is fixed: Salesforce refused the call, nothing of it can land.
    synced = sync_order(event_for(order), services)
    assert "recheck" not in synced and synced["sf_created"] is True
    for sobject in ("Account", "Contact", "Opportunity", "OpportunityContactRole"):
        assert records(org, sobject) == 1, sobject


def test_a_write_salesforce_refused_is_retried_at_once_and_never_checked_again(
    org, store, services
):
    order = store.place_order()
    org.add_fault(kind="unavailable", path_regex=r"/composite$", count=1)
    with pytest.raises(RetryLater) as info:
        sync_order(event_for(order), services)
    assert info.value.status == 503
    state = services.ledger.order(order["increment_id"])
    assert (state.status, state.in_doubt) == ("failed", True)
    # A 503 wrote nothing: the retry neither waits nor needs a late-write check.
    synced = sync_order(event_for(order), services)
    assert "recheck" not in synced and synced["sf_created"] is True
    for sobject in ("Account", "Contact", "Opportunity", "OpportunityContactRole"):
        assert records(org, sobject) == 1, sobject


def test_an_unchanged_order_is_skipped_unless_it_is_a_late_write_check(org, store, services):
    order = store.place_order()
    sync_order(event_for(order), services)
    calls = org.stats()["api_calls"]
    assert sync_order(event_for(order), services)["skipped"] == "unchanged"
    assert org.stats()["api_calls"] == calls
    assert "skipped" not in sync_order(dict(event_for(order), recheck=True), services)
    assert org.stats()["api_calls"] == calls + 1


def test_a_write_in_doubt_for_longer_than_the_window_has_landed_or_never_will():
    settings = Settings.from_env({"MAGSYNC_LATE_WRITE_WINDOW": "120"})
    now = dt.datetime(2026, 11, 30, 12, 0, 0)
    began = now - dt.timedelta(seconds=119)

    def possible(status, started=began, may_land=None):
        state = OrderState("1", status=status, apply_started_at=started, write_may_land=may_land)
        return late_write_possible(state, settings, now)

    # A worker that died mid-write, or a call that went unanswered: it may still land.
    assert possible("applying", may_land=True) and possible("unanswered", may_land=True)
    # Salesforce answered the failed call: nothing of it can land.
    assert not possible("failed", may_land=False) and not possible("retrying", may_land=False)
    # A dead letter replaces the status, not what the ledger knows of the write in doubt.
    assert possible("dead_lettered", may_land=True)
    assert not possible("dead_lettered", may_land=False)
    assert not possible("dead_lettered", None, may_land=None)  # before any write began
    # Rows last written before write_may_land was kept: the status tells.
    assert possible("applying") and possible("unanswered") and not possible("failed")
    assert not possible("dead_lettered")
    assert not possible("applying", now - dt.timedelta(seconds=121))
    assert not late_write_possible(OrderState("1"), settings, now)
    assert not late_write_possible(None, settings, now)


def test_a_worker_checks_a_late_write_with_a_task_of_its_own(org, store, tmp_path):
    """A real coalescing worker: the invoice's write is held past the timeout and lands after the
    shipment's; the shipment's late-write check, a task of its own, writes the shipment again."""
    from magsync.messaging.app import create_celery
    from magsync.messaging.broker import Publisher
    from tests import processes, services

    services.require_rabbitmq()
    namespace = f"magsync-late-{uuid.uuid4().hex[:8]}"
    env = {
        **org.settings(),
        **store.settings(),
        "CELERY_BROKER_URL": services.RABBITMQ_URL,
        "MAGSYNC_BROKER_NAMESPACE": namespace,
        "DATABASE_URL": f"sqlite:///{tmp_path / 'worker-ledger.db'}",
        "SALESFORCE_TIMEOUT": "1",
        "MAGSYNC_LATE_WRITE_WINDOW": "5",
        "MAGSYNC_RETRY_BACKOFF": "1",
        "MAGSYNC_RETRY_BACKOFF_MAX": "1",
        "LOG_LEVEL": "INFO",
    }
    settings = Settings.from_env(env)
    won, qualified = settings.sf_stage_map["complete"], settings.sf_stage_map["processing"]
    celery = create_celery(settings)
    publisher = Publisher(celery, celery.magsync_topology, 5)
    worker = processes.start_worker(env, tmp_path, name="late", concurrency=20)
    try:
        order = store.place_order()
        number = order["increment_id"]
        publisher.publish(event_for(order), f"{number}:placed")
        wait_for(lambda: org.records("Opportunity"), what="the placed order")
        store.invoice(order["entity_id"])
        # The invoice's upsert is held 3 s, past the worker's 1 s timeout, then carried out.
        org.add_fault(kind="hang", path_regex=UPSERT, seconds=3, then="proceed", count=1)
        publisher.publish(event_for(order), f"{number}:invoiced")
        time.sleep(0.6)  # the invoice's write is on its way
        store.ship(order["entity_id"])
        publisher.publish(event_for(order), f"{number}:shipped")

        wait_for(lambda: stage(org, number) == won, 15, "the shipment")
        # The held invoice lands after the shipment was written: the older stage is back...
        wait_for(lambda: stage(org, number) == qualified, 15, "the late write")
        # ...until the shipment's late-write check, a task of its own, writes it again.
        wait_for(lambda: stage(org, number) == won, 20, "the late-write check")
        assert f"{number}:recheck:" in worker.log()
    finally:
        worker.stop()
        publisher.close()
        delete_namespace(services.RABBITMQ_URL, namespace)


def test_an_order_that_waits_keeps_its_retry_budget_and_frees_the_breakers_probe(monkeypatch):
    """The task shell puts a ``Deferred`` order back with the wait as countdown and its attempts
    as they were; had it been let through as the circuit breaker's probe, the next one goes."""
    from celery.exceptions import Retry

    from magsync.worker import task as shell
    from magsync.worker.circuit import HALF_OPEN, CircuitBreaker

    breaker = CircuitBreaker(threshold=1, cooldown=30, clock=lambda: clock[0])
    clock = [0.0]
    breaker.failure()
    clock[0] = 30.0

    class Context:
        settings = Settings.from_env({})
        pacing = type("Pacing", (), {"wait_time": staticmethod(lambda kind: 0.0)})()

        def __init__(self):
            self.breaker = breaker

        def sync(self, event):
            assert breaker.state == HALF_OPEN  # this order is the probe
            raise Deferred("an earlier write may still land", reason="interrupted_write", wait=7.2)

    retried = {}

    class Task:
        app = object()
        request = type("Request", (), {"args": [{"increment_id": "000000123", "entity_id": 1}]})()

        def retry(self, countdown, kwargs, **options):
            retried.update(countdown=countdown, **kwargs)
            return Retry("waits", when=countdown)

    monkeypatch.setattr(shell.WorkerContext, "of", classmethod(lambda cls, app: Context()))
    with pytest.raises(Retry):
        shell._sync(Task(), Task.request.args[0], "live", 3, 1700000000.0)
    assert retried == {"countdown": 8, "attempts": 3, "first_failed_at": 1700000000.0}
    assert breaker.wait_time() == 0  # the probe was given back
