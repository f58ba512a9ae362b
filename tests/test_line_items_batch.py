"""Line items on the coalesced path (``magsync.sync.batch.write_batch``), on a SQLite and a
PostgreSQL ledger against the sandbox org: a batch's lines travel in the Composite call of its
Opportunities, so known SKUs cost no call more than without line items; new SKUs are made once
for the whole batch; a later batch updates lines in place and deletes vanished ones."""

import copy
from decimal import Decimal

import pytest

from magsync.ledger import Ledger, migrate
from magsync.settings import Settings
from magsync.sync import pipeline
from magsync.sync.batch import write_batch
from magsync.sync.services import Services
from tests.helpers import load_fixture

SEED = load_fixture("seed_webhook.json")["order"]
ON = {"SALESFORCE_LINE_ITEMS": "true", "SALESFORCE_MULTI_CURRENCY": "true"}


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def services(org, database_url):
    migrated = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(migrated.engine)
    migrated.close()
    built = []

    def build(**env):
        values = {"DATABASE_URL": database_url, **org.settings(), **env}
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def order(n, updated="2023-10-26 10:00:00", currency="USD", items=None, **changes):
    document = copy.deepcopy(SEED)
    number = f"{n:09d}"
    document.update(
        increment_id=number,
        entity_id=n,
        updated_at=updated,
        customer_email=f"buyer{n % 5}@example.com",
        order_currency_code=currency,
        items=items
        or [
            {
                "item_id": 10 * n + 1,
                "sku": f"SKU-{n % 4}",
                "name": "P",
                "qty_ordered": 3,
                "price": "3.33",
                "row_total": "9.99",
                "discount_amount": "1",
            },
            {"item_id": 10 * n + 2, "sku": "SKU-X", "name": "X", "qty_ordered": 1, "price": "20"},
        ],
        shipping_amount="5",
        tax_amount="2.5",
        grand_total="36.49",
    )
    document.update(changes)
    return document


def prepared(documents, svc):
    return [
        pipeline.prepare(
            {"entity_id": d["entity_id"], "increment_id": d["increment_id"], "order": d}, svc
        )
        for d in documents
    ]


def calls(org):
    return dict(org.stats()["calls_by_kind"])


def added(org, before):
    after = calls(org)
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def lines_by_order(org):
    opps = {o["Id"]: o for o in org.records("Opportunity")}
    found = {}
    for line in org.records("OpportunityLineItem"):
        number = opps[line["OpportunityId"]]["Magento_Order_ID__c"]
        found.setdefault(number, {})[line["Magento_Item_ID__c"]] = line
    return opps, found


def test_a_batch_writes_its_lines_with_its_opportunities(org, services):
    svc = services(**ON)
    documents = [order(n, currency="EUR" if n % 3 == 0 else "USD") for n in range(1, 21)]
    before = calls(org)
    outcomes = write_batch(prepared(documents, svc), svc)
    assert all(o.get("sf_created") for o in outcomes), outcomes
    # Buyers: one query, one Composite. Products (SKU-0..3, SKU-X, Shipping, Tax, Order
    # adjustment) per currency: in USD a query finds none, one the standard price book, one
    # Composite makes products and entries; in EUR a query finds the products, one their
    # entries, one Composite adds EUR entries. The Opportunities, their lines and contact
    # roles: one Composite.
    assert added(org, before) == {"query": 5, "composite": 4}
    opps, lines = lines_by_order(org)
    for opp in opps.values():
        assert Decimal(str(opp["Amount"])) == Decimal("36.49")
    assert len(lines) == 20
    for document in documents:
        got = lines[document["increment_id"]]
        number = document["increment_id"]
        assert set(got) == {
            f"{number}/{10 * document['entity_id'] + 1}",
            f"{number}/{10 * document['entity_id'] + 2}",
            f"{number}/shipping",
            f"{number}/tax",
            f"{number}/adjustment",  # 3 x 2.997 is 3 x 3.00: one cent of rounding
        }
        assert {line["CurrencyIsoCode"] for line in got.values()} == {
            document["order_currency_code"]
        }

    # Known SKUs and buyers, new orders: one Composite (Opportunities, lines, roles), as
    # without line items.
    more = [order(n) for n in range(21, 31)]
    before = calls(org)
    outcomes = write_batch(prepared(more, svc), svc)
    assert all(o.get("sf_created") for o in outcomes), outcomes
    assert added(org, before) == {"composite": 1}

    # A later version: one order lost an item, another changed quantity; one Composite call,
    # lines updated in place, the vanished one deleted.
    first_ids = {k: v["Id"] for k, v in lines["000000001"].items()}
    changed = [
        order(1, updated="2023-10-26 11:00:00", items=[order(1)["items"][0]], grand_total="16.49"),
        order(2, updated="2023-10-26 11:00:00", grand_total="36.49", state="processing"),
    ]
    before = calls(org)
    outcomes = write_batch(prepared(changed, svc), svc)
    assert all(o.get("sf_id") for o in outcomes), outcomes
    assert added(org, before) == {"composite": 1}
    opps, lines = lines_by_order(org)
    kept = lines["000000001"]
    assert "000000001/12" not in kept
    assert {k: v["Id"] for k, v in kept.items()} == {
        k: v for k, v in first_ids.items() if k in kept
    }
    [first] = [o for o in opps.values() if o["Magento_Order_ID__c"] == "000000001"]
    assert Decimal(str(first["Amount"])) == Decimal("16.49")


def test_without_line_items_a_batch_costs_what_it_did(org, services):
    svc = services()
    documents = [order(n) for n in range(1, 11)]
    before = calls(org)
    write_batch(prepared(documents, svc), svc)
    assert added(org, before) == {"query": 1, "composite": 2}
    assert org.records("OpportunityLineItem") == []


def test_a_refused_opportunity_fails_its_order_only_and_the_others_get_their_lines(
    org_factory, database_url
):
    from magsync.sandbox.salesforce.schema import packaged_schema

    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["validationRules"] = [
        {
            "name": "Large_orders_need_approval",
            "field": "Amount",
            "operator": "gt",
            "value": 250000,
            "message": "Orders over 250,000 need a manual approval.",
            "errorDisplayField": "Amount",
        }
    ]
    org = org_factory(schema=schema)
    migrated = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(migrated.engine)
    migrated.close()
    svc = Services.build(Settings.from_env({"DATABASE_URL": database_url, **org.settings(), **ON}))
    try:
        documents = [order(n) for n in range(1, 6)]
        documents[2]["grand_total"] = "300000"
        outcomes = write_batch(prepared(documents, svc), svc)
    finally:
        svc.close()
    # The lines subrequest referred to the refused Opportunity and failed as a whole: the other
    # orders' lines went in a Composite call of their own, as their contact roles did.
    assert org.stats()["calls_by_kind"] == {"query": 3, "composite": 4, "collectionsCreate": 1}
    refused = outcomes[2]
    assert getattr(refused, "reason", None) == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    opps, lines = lines_by_order(org)
    assert sorted(lines) == ["000000001", "000000002", "000000004", "000000005"]
    for opp in opps.values():
        assert Decimal(str(opp["Amount"])) == Decimal("36.49")
