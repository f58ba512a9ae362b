"""Line items end to end over HTTP: the sandbox store's REST API is the truth, ``sync_order``
writes into the sandbox org. An order with a configurable product, two simple products, a
coupon, tax and shipping in EUR (multi-currency on) becomes an Opportunity whose lines add up to
grand_total; a refund and an admin edit afterwards leave the org matching the store; the API
calls per event are counted (a new SKU, known SKUs)."""

import copy
from decimal import Decimal

import pytest

from magsync.sandbox.magento import SandboxStore
from magsync.sandbox.salesforce import SandboxOrg
from magsync.sandbox.salesforce.schema import packaged_schema
from magsync.settings import Settings
from magsync.sync.pipeline import sync_order
from magsync.sync.services import Services
from tests.helpers import event_for, load_fixture
from tests.sandbox.salesforce.helpers import https_session

LINES_ON = {
    "SALESFORCE_LINE_ITEMS": "true",
    "SALESFORCE_MULTI_CURRENCY": "true",
    "SALESFORCE_REFUNDED_FIELD": "Magento_Refunded__c",
}
ITEMS = [
    {
        "sku": "HOODIE-M-BLUE",
        "name": "Kyoto Hoodie",
        "product_type": "configurable",
        "child_name": "Kyoto Hoodie-M-Blue",
        "qty_ordered": 1,
        "price": "39.90",
    },
    {"sku": "MUG-ONE", "name": "Mug", "qty_ordered": 3, "price": "3.33"},
    {"sku": "TEE-TWO", "name": "Tee", "qty_ordered": 2, "price": "9.99"},
]


def org_schema():
    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["fields"]["Magento_Refunded__c"] = {
        "type": "currency",
        "precision": 18,
        "scale": 2,
        "label": "Refunded",
    }
    return schema


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    with SandboxOrg(state_dir=tmp_path_factory.mktemp("lines-org"), schema=org_schema()) as org:
        yield org


@pytest.fixture(scope="module")
def store():
    with SandboxStore(seed=23) as store:
        yield store


@pytest.fixture
def services(tmp_path):
    built = []

    def build(org, store=None, **env):
        values = {
            "DATABASE_URL": f"sqlite:///{tmp_path / f'ledger-{len(built)}.db'}",
            **org.settings(),
            **(store.settings() if store else {}),
            **LINES_ON,
            **env,
        }
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def opportunity(org, number):
    [record] = [r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == number]
    return record


def lines_of(org, opportunity_id):
    return sorted(
        (r for r in org.records("OpportunityLineItem") if r["OpportunityId"] == opportunity_id),
        key=lambda r: r["Magento_Item_ID__c"],
    )


def synced(store_order, svc, org):
    """Sync the order's event; ``(summary, API calls the org counted)``."""
    before = org.stats()["api_calls"]
    summary = sync_order(event_for(store_order), svc)
    return summary, org.stats()["api_calls"] - before


def expected_lines(order):
    """What the store's truth says the lines are: ``{key: (quantity, unit price)}``."""
    number = order["increment_id"]
    found = {}
    for item in order["items"]:
        if item.get("parent_item_id"):
            continue
        qty = Decimal(str(item["qty_ordered"]))
        net = Decimal(str(item["row_total"])) - Decimal(str(item.get("discount_amount") or 0))
        unit = (net / qty).quantize(Decimal("0.01"))
        found[f"{number}/{item['item_id']}"] = (qty, unit)
    for kind in ("shipping", "tax"):
        amount = Decimal(str(order[f"{kind}_amount"]))
        if amount:
            found[f"{number}/{kind}"] = (Decimal(1), amount)
    return found


def assert_matches_store(org, order):
    """The Opportunity of ``order`` has exactly its lines and Amount = grand_total."""
    record = opportunity(org, order["increment_id"])
    lines = lines_of(org, record["Id"])
    assert Decimal(str(record["Amount"])) == Decimal(str(order["grand_total"]))
    assert sum(Decimal(str(line["TotalPrice"])) for line in lines) == Decimal(
        str(order["grand_total"])
    )
    got = {line["Magento_Item_ID__c"]: line for line in lines}
    for key, (qty, unit) in expected_lines(order).items():
        assert (Decimal(str(got[key]["Quantity"])), Decimal(str(got[key]["UnitPrice"]))) == (
            qty,
            unit,
        ), key
    extra = set(got) - set(expected_lines(order)) - {f"{order['increment_id']}/adjustment"}
    assert extra == set()
    return record, lines


def test_eur_order_with_configurable_coupon_tax_shipping_then_refund_and_edit(org, store, services):
    svc = services(org, store)
    order = store.place_order(store_id=3, coupon_code="WELCOME15", items=ITEMS)
    assert order["order_currency_code"] == "EUR"
    assert Decimal(str(order["discount_amount"])) < 0
    assert Decimal(str(order["tax_amount"])) > 0
    assert Decimal(str(order["shipping_amount"])) > 0

    summary, new_sku_calls = synced(order, svc, org)
    record, lines = assert_matches_store(org, order)
    assert record["CurrencyIsoCode"] == "EUR"
    assert {line["CurrencyIsoCode"] for line in lines} == {"EUR"}
    [hoodie] = [line for line in lines if line["ProductCode"] == "HOODIE-M-BLUE"]
    assert hoodie["Description"] == "Option: Kyoto Hoodie-M-Blue (SKU: HOODIE-M-BLUE)"
    # New entries carry the catalog price; the line what was paid (15 % off).
    [mug] = [line for line in lines if line["ProductCode"] == "MUG-ONE"]
    assert (mug["ListPrice"], mug["Quantity"]) == (3.33, 3.0)
    assert mug["UnitPrice"] < 3.33
    products = {p["ProductCode"] for p in org.records("Product2")}
    assert {"HOODIE-M-BLUE", "MUG-ONE", "TEE-TWO", "Shipping", "Tax"} <= products
    # New buyer, five new SKUs: buyer lookup, product lookup, standard price book, one
    # Composite creating products and entries, one Composite with Account, Contact,
    # Opportunity, lines and contact role.
    assert new_sku_calls == summary["api_calls"] == 5

    # An admin edit: the <n>-1 order has lines of its own, the original keeps its lines, lost.
    first_ids = {line["Id"] for line in lines}
    edited = store.edit(order["entity_id"])
    summary, edit_calls = synced(edited, svc, org)
    _child, child_lines = assert_matches_store(org, store.order(edited["entity_id"]))
    assert not {line["Id"] for line in child_lines} & first_ids
    parent = opportunity(org, order["increment_id"])
    assert parent["StageName"] == "Closed Lost"
    assert {line["Id"] for line in lines_of(org, parent["Id"])} == first_ids
    assert Decimal(str(parent["Amount"])) == Decimal(str(order["grand_total"]))
    # The edit's SKUs are known: one Composite carries the order, its lines, its contact role
    # and the closing of the order it replaced.
    assert edit_calls == summary["api_calls"] == 1

    # Known SKUs, known buyer, known order: an invoice is one call, as without line items.
    store.invoice(edited["entity_id"])
    summary, invoice_calls = synced(edited, svc, org)
    assert invoice_calls == summary["api_calls"] == 1
    before_ids = {line["Magento_Item_ID__c"]: line["Id"] for line in child_lines}
    assert_matches_store(org, store.order(edited["entity_id"]))

    # A credit memo: lines and Amount stay (ordered quantities and grand_total do not change),
    # the stage says so, the refunded total is written.
    store.refund(edited["entity_id"])
    refunded = store.order(edited["entity_id"])
    summary, refund_calls = synced(edited, svc, org)
    assert refund_calls == 1
    record, lines = assert_matches_store(org, refunded)
    assert {line["Magento_Item_ID__c"]: line["Id"] for line in lines} == before_ids
    assert record["StageName"] == svc.settings.sf_stage_map[refunded["state"]] == "Closed Lost"
    assert Decimal(str(record["Magento_Refunded__c"])) == Decimal(str(refunded["total_refunded"]))
    print(
        f"\nAPI calls per event: new SKUs {new_sku_calls}, invoice {invoice_calls}, "
        f"refund {refund_calls}, admin edit {edit_calls}"
    )


def seed_order(**changes):
    order = copy.deepcopy(load_fixture("seed_webhook.json")["order"])
    order["order_currency_code"] = "USD"  # multi-currency is on in this module
    order.update(changes)
    return order


def test_known_skus_cost_what_an_order_without_line_items_costs(org, services, tmp_path):
    with_lines = services(org)
    without = services(org, SALESFORCE_LINE_ITEMS="false")
    warm = seed_order(increment_id="LI-100", customer_email="warm@example.com")
    sync_order(event_for(warm), with_lines)
    sync_order(
        event_for(seed_order(increment_id="NL-100", customer_email="warm2@example.com")), without
    )
    counts = {}
    for name, svc, number, email in (
        ("lines", with_lines, "LI-101", "warm@example.com"),
        ("plain", without, "NL-101", "warm2@example.com"),
    ):
        order = seed_order(increment_id=number, customer_email=email)
        counts[name] = [synced(order, svc, org)[1]]
        order["updated_at"] = "2023-10-26 11:00:00"
        order["state"] = "processing"
        counts[name].append(synced(order, svc, org)[1])
    assert counts["lines"] == counts["plain"] == [1, 1]


def test_vanished_lines_are_deleted_and_changed_ones_updated_in_place(org, services):
    svc = services(org)
    items = [
        {"item_id": 9101, "sku": "PROD-A", "name": "A", "qty_ordered": 1, "price": 10},
        {"item_id": 9102, "sku": "PROD-B", "name": "B", "qty_ordered": 2, "price": 5},
    ]
    order = seed_order(increment_id="LI-200", items=items, grand_total=20)
    sync_order(event_for(order), svc)
    record = opportunity(org, "LI-200")
    first = {line["Magento_Item_ID__c"]: line["Id"] for line in lines_of(org, record["Id"])}
    assert set(first) == {"LI-200/9101", "LI-200/9102"}

    later = seed_order(
        increment_id="LI-200",
        items=[dict(items[0], qty_ordered=3)],
        grand_total=30,
        updated_at="2023-10-26 12:00:00",
    )
    summary = sync_order(event_for(later), svc)
    assert summary["api_calls"] == 1
    now = lines_of(org, record["Id"])
    keys = [(line["Magento_Item_ID__c"], line["Quantity"]) for line in now]
    assert keys == [("LI-200/9101", 3.0)]
    assert now[0]["Id"] == first["LI-200/9101"]
    assert opportunity(org, "LI-200")["Amount"] == 30.0


def test_a_remembered_entry_salesforce_lost_is_looked_up_again(org, services):
    svc = services(org)
    sync_order(event_for(seed_order(increment_id="LI-300", customer_email="lost@example.com")), svc)
    [entry_id] = svc.ledger.price_entries(["PROD-XYZ"], "standard", "USD").values()
    with https_session(org) as session:
        gone = session.delete(
            f"{org.url}/services/data/v58.0/sobjects/PricebookEntry/{entry_id}",
            headers={"Authorization": f"Bearer {org.issue_access_token()}"},
        )
    assert gone.status_code == 204
    sync_order(event_for(seed_order(increment_id="LI-301", customer_email="lost@example.com")), svc)
    record = opportunity(org, "LI-301")
    [line] = lines_of(org, record["Id"])
    assert line["PricebookEntryId"] != entry_id
    assert svc.ledger.price_entries(["PROD-XYZ"], "standard", "USD") == {
        "PROD-XYZ": line["PricebookEntryId"]
    }


def test_several_products_with_one_sku_the_oldest_active_is_used(org, services, caplog):
    svc = services(org)
    inactive = org.insert("Product2", [{"Name": "Old", "ProductCode": "DUP-1", "IsActive": False}])[
        0
    ]
    oldest_active, _ = org.insert(
        "Product2",
        [
            {"Name": "Dup", "ProductCode": "DUP-1", "IsActive": True},
            {"Name": "Dup 2", "ProductCode": "DUP-1", "IsActive": True},
        ],
    )
    items = [{"item_id": 9401, "sku": "DUP-1", "name": "Dup", "qty_ordered": 1, "price": 99.99}]
    sync_order(event_for(seed_order(increment_id="LI-400", items=items)), svc)
    [line] = lines_of(org, opportunity(org, "LI-400")["Id"])
    assert line["Product2Id"] == oldest_active != inactive
    assert sum("several products carry one sku" in r.getMessage() for r in caplog.records) == 1


def test_with_a_unique_external_id_sku_field_products_are_upserted(tmp_path, services):
    schema = org_schema()
    schema["sobjects"]["Product2"]["fields"]["Magento_SKU__c"] = {
        "type": "string",
        "length": 80,
        "label": "SKU",
        "externalId": True,
        "unique": True,
    }
    with SandboxOrg(state_dir=tmp_path / "org", schema=schema) as own:
        svc = services(own, SALESFORCE_PRODUCT_SKU_FIELD="Magento_SKU__c")
        before = own.stats()["calls_by_kind"]
        sync_order(event_for(seed_order(increment_id="LI-500")), svc)
        after = own.stats()["calls_by_kind"]
        [product] = own.records("Product2")
        assert product["Magento_SKU__c"] == "PROD-XYZ"
        assert after.get("describe", 0) - before.get("describe", 0) == 1
        record = opportunity(own, "LI-500")
        assert [line["Product2Id"] for line in lines_of(own, record["Id"])] == [product["Id"]]


def test_a_ledger_that_lost_the_lines_asks_salesforce_and_writes_in_place(org, services):
    items = [{"item_id": 9601, "sku": "PROD-L", "name": "L", "qty_ordered": 2, "price": 4}]
    sync_order(
        event_for(seed_order(increment_id="LI-600", items=items, grand_total=8)), services(org)
    )
    first = lines_of(org, opportunity(org, "LI-600")["Id"])
    # Another ledger (a restored backup, say) has never seen the order's lines.
    later = seed_order(
        increment_id="LI-600",
        items=[dict(items[0], qty_ordered=3)],
        grand_total=12,
        updated_at="2023-10-26 12:00:00",
    )
    sync_order(event_for(later), services(org))
    [line] = lines_of(org, opportunity(org, "LI-600")["Id"])
    assert (line["Id"], line["Quantity"]) == (first[0]["Id"], 3.0)


def test_two_workers_making_one_new_sku_at_once_make_one_product(tmp_path):
    import threading

    with SandboxOrg(state_dir=tmp_path / "org", schema=org_schema(), latency_ms=30) as own:
        env = {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'shared.db'}",
            **own.settings(),
            **LINES_ON,
        }
        workers = [Services.build(Settings.from_env(env)) for _ in range(4)]
        workers[0].ledger.ready()
        items = [{"item_id": 9700, "sku": "RACE-1", "name": "Race", "qty_ordered": 1, "price": 5}]
        errors = []

        def sync(n, svc):
            try:
                document = seed_order(
                    increment_id=f"LI-70{n}",
                    customer_email=f"race{n}@example.com",
                    items=[dict(items[0], item_id=9700 + n)],
                    grand_total=5,
                )
                sync_order(event_for(document), svc)
            except Exception as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=sync, args=(n, w)) for n, w in enumerate(workers)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        for svc in workers:
            svc.close()
        assert errors == []
        race = [p for p in own.records("Product2") if p["ProductCode"] == "RACE-1"]
        assert len(race) == 1
        assert len(own.records("OpportunityLineItem")) == 4


def test_without_multi_currency_lines_use_the_org_currency(tmp_path, services):
    with SandboxOrg(state_dir=tmp_path / "org") as own:
        svc = services(own, SALESFORCE_MULTI_CURRENCY="false", SALESFORCE_REFUNDED_FIELD="")
        document = seed_order(increment_id="LI-800")
        del document["order_currency_code"]
        summary = sync_order(event_for(document), svc)
        assert summary["api_calls"] == 5  # buyer, products, price book, products made, order
        record = opportunity(own, "LI-800")
        [line] = lines_of(own, record["Id"])
        assert (record["Amount"], line["TotalPrice"]) == (99.99, 99.99)
        assert svc.ledger.price_entries(["PROD-XYZ"], "standard", "") == {
            "PROD-XYZ": line["PricebookEntryId"]
        }
