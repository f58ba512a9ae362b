"""``pipeline.sync_order`` without a broker: the webhook payload or the store's REST truth, mapped
and upserted into the sandbox org."""

import pytest

from magsync.errors import DeadLetter, InvalidOrder, RetryLater
from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.settings import Settings
from magsync.sync.pipeline import sync_order
from magsync.sync.services import Services
from tests.helpers import SEED_OPPORTUNITY, event_for, load_fixture


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with SandboxOrg(state_dir=tmp_path_factory.mktemp("pipeline-org")) as org:
        yield org


@pytest.fixture(scope="module")
def store():
    with SandboxStore(seed=11) as store:
        yield store


@pytest.fixture
def services(tmp_path):
    """Build ``Services`` for an org (and a store), each with a fresh ledger; closed after."""
    built = []

    def build(org, store=None, **env):
        values = {
            "DATABASE_URL": f"sqlite:///{tmp_path / f'ledger-{len(built)}.db'}",
            **org.settings(),
            **(store.settings() if store else {}),
            **env,
        }
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def by_number(org, number):
    return [r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == number]


def test_without_rest_settings_the_payload_is_mapped(org, services):
    svc = services(org)
    assert svc.magento is None
    summary = sync_order(event_for(load_fixture("seed_webhook.json")["order"]), svc)
    assert summary["source"] == "webhook"
    [record] = by_number(org, "000000123")
    assert {k: record[k] for k in SEED_OPPORTUNITY} == SEED_OPPORTUNITY
    assert summary["sf_id"] == record["Id"]


def test_with_rest_settings_the_store_is_the_truth(org, store, services):
    order = store.place_order()
    stale = event_for(order)  # the webhook of the placement: state new
    store.invoice(order["entity_id"])
    summary = sync_order(stale, services(org, store))
    assert summary["source"] == "rest"
    assert summary["state"] == "processing"
    [record] = by_number(org, order["increment_id"])
    assert record["StageName"] == "Qualification"


def test_an_order_the_store_does_not_have_is_a_dead_letter(org, store, services):
    event = event_for(load_fixture("seed_webhook.json")["order"])
    event["entity_id"] = 987654
    with pytest.raises(DeadLetter) as info:
        sync_order(event, services(org, store))
    assert info.value.reason == "magento_order_not_found"


def test_wrong_magento_secret_is_retried_not_dead_lettered(org, store, services):
    order = store.place_order()
    with pytest.raises(RetryLater) as info:
        sync_order(event_for(order), services(org, store, MAGENTO_CONSUMER_SECRET="x" * 32))
    assert info.value.reason == "magento_unauthorized"
    assert not by_number(org, order["increment_id"])


def test_an_invalid_order_is_a_dead_letter_before_any_salesforce_call(org, services):
    order = dict(load_fixture("seed_webhook.json")["order"], increment_id="000000999")
    order["grand_total"] = "ninety-nine"
    calls = org.stats()["api_calls"]
    with pytest.raises(InvalidOrder) as info:
        sync_order(event_for(order), services(org))
    assert "grand_total" in info.value.errors[0]
    assert org.stats()["api_calls"] == calls


def test_a_dead_letter_before_anything_was_synced_is_in_the_ledger(org, services):
    from magsync.sync.pipeline import note_outcome

    svc = services(org)  # a ledger that no event has created yet
    error = InvalidOrder("Magento order failed validation", errors=[{"grand_total": ["x"]}])
    note_outcome({"increment_id": "000000999", "entity_id": 999}, svc, "dead_lettered", error, 1)
    state, history = svc.ledger.history("000000999")
    assert (state.status, state.entity_id) == ("dead_lettered", 999)
    assert state.last_error == "invalid_order: Magento order failed validation"
    assert [(e.kind, e.detail["reason"]) for e in history] == [("dead_lettered", "invalid_order")]
