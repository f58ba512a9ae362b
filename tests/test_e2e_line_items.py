"""Line items end to end with a real ``magsync worker`` (coalescing, Celery's thread pool) on
RabbitMQ, the sandbox store's REST API as the truth and the sandbox org over HTTPS: an EUR order
with a configurable product, two simple products, a coupon, tax and shipping becomes an
Opportunity whose lines add up to grand_total; its admin edit and the edit's refund leave the
org matching the store."""

import pytest

from magsync.sandbox.magento import SandboxStore
from tests.helpers import wait_for
from tests.test_e2e_coalesced import Fleet
from tests.test_line_items_sync import (
    ITEMS,
    assert_matches_store,
    lines_of,
    opportunity,
    org_schema,
)

pytestmark = pytest.mark.slow


def matches(org, store_order):
    """Whether the org holds ``store_order`` as the store has it (lines and Amount)."""
    try:
        record, _ = assert_matches_store(org, store_order)
    except (AssertionError, ValueError, KeyError):
        return False
    return record


def test_a_worker_syncs_lines_an_edit_and_a_refund(
    org_factory, rabbitmq_url, broker_namespace, tmp_path
):
    org = org_factory(schema=org_schema())
    store = SandboxStore(seed=31).start()
    fleet = None
    try:
        fleet = Fleet(
            org,
            rabbitmq_url,
            broker_namespace,
            tmp_path,
            f"sqlite:///{tmp_path / 'ledger.db'}",
            **store.settings(),
            SALESFORCE_LINE_ITEMS="true",
            SALESFORCE_MULTI_CURRENCY="true",
            SALESFORCE_REFUNDED_FIELD="Magento_Refunded__c",
        )
        fleet.worker("w1", threads=8)
        placed = store.place_order(store_id=3, coupon_code="WELCOME15", items=ITEMS)
        fleet.publish(placed)
        wait_for(lambda: matches(org, store.order(placed["entity_id"])), 60, "the order's lines")
        new_sku_calls = org.stats()["api_calls"]

        edited = store.edit(placed["entity_id"])
        fleet.publish(store.order(placed["entity_id"]))
        fleet.publish(edited)
        wait_for(lambda: matches(org, store.order(edited["entity_id"])), 60, "the edit's lines")
        wait_for(
            lambda: opportunity(org, placed["increment_id"])["StageName"] == "Closed Lost",
            60,
            "the replaced order lost",
        )
        store.invoice(edited["entity_id"])
        store.refund(edited["entity_id"])
        fleet.publish(store.order(edited["entity_id"]))
        truth = store.order(edited["entity_id"])
        refunded = wait_for(
            lambda: (record := matches(org, truth)) and record.get("Magento_Refunded__c"),
            60,
            "the refund",
        )
        wait_for(fleet.queue_empty, 30, "the queue to drain")
    finally:
        if fleet is not None:
            fleet.close()
        store.stop()
    assert str(refunded) == str(truth["total_refunded"])
    parent = opportunity(org, placed["increment_id"])
    assert len(lines_of(org, parent["Id"])) == len(
        lines_of(org, opportunity(org, edited["increment_id"])["Id"])
    )
    assert "will be retried" not in fleet.log()
    print(f"\nworker API calls: first order with new SKUs {new_sku_calls}")
