"""A Salesforce call whose answer never came may still be carried out after a newer version was
written (a timeout, a worker killed mid-call). An order written while an earlier write of it is
in doubt is written again once ``MAGSYNC_LATE_WRITE_WINDOW`` has passed: Salesforce ends with the
store's latest state whatever the late call put back."""

import datetime as dt

import pytest

from magsync.errors import RetryLater
from magsync.ledger import OrderState
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from magsync.sync.pipeline import late_write_possible, sync_order
from magsync.sync.services import Services
from tests.helpers import event_for, wait_for

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
    began = OrderState("1", apply_started_at=now - dt.timedelta(seconds=119))
    assert late_write_possible(began, settings, now)
    assert not late_write_possible(
        OrderState("1", apply_started_at=now - dt.timedelta(seconds=121)), settings, now
    )
    assert not late_write_possible(OrderState("1"), settings, now)
    assert not late_write_possible(None, settings, now)
