"""``magsync check`` with line items on, against the sandbox org: the price book, the objects the
user must create, the SKU field, the order-level products, and the line fields of the mapping
(``LineItemSchema``, checked with the rest of the mapping)."""

from magsync.check import CHECKS, run
from magsync.sandbox.salesforce.schema import packaged_schema

LINE_CHECKS = [c for c in CHECKS if c.name.startswith(("settings", "salesforce-"))]
ON = {"SALESFORCE_LINE_ITEMS": "true", "MAGENTO_WEBHOOK_SECRET": "a-secret-of-32-characters-long!!"}


def report_of(org, **env):
    report = run({**org.settings(), **ON, **env}, checks=LINE_CHECKS)
    return report, " ".join(report.render().split())


def test_a_sound_org_passes_and_warns_that_productcode_is_not_unique(org_factory):
    org = org_factory()
    report, text = report_of(org)
    assert report.exit_code == 0, text
    assert "price book standard: Standard Price Book exists and is active" in text
    for sobject in ("Product2", "PricebookEntry", "OpportunityLineItem"):
        assert f"{sobject}: the integration user can create them" in text
    assert "Product2.ProductCode: not a unique External ID" in text
    assert "product Shipping: created with the first order that needs it" in text
    assert "OpportunityLineItem (LineItemSchema)" in text
    assert "Magento_Item_ID__c" in text


def test_line_items_off_skips_the_checks(org_factory):
    org = org_factory()
    report = run({**org.settings(), **ON, "SALESFORCE_LINE_ITEMS": "false"}, checks=LINE_CHECKS)
    text = " ".join(report.render().split())
    assert "line items: SALESFORCE_LINE_ITEMS is off" in text


def test_an_org_without_the_line_key_or_with_an_unknown_price_book_fails(org_factory):
    schema = packaged_schema()
    del schema["sobjects"]["OpportunityLineItem"]["fields"]["Magento_Item_ID__c"]
    org = org_factory(schema=schema)
    report, text = report_of(org, SALESFORCE_PRICEBOOK_ID="01s000000000001AAA")
    assert report.exit_code == 1, text
    assert "OpportunityLineItem.Magento_Item_ID__c: does not exist" in text
    assert "price book 01s000000000001AAA: the org has no such price book" in text


def test_a_unique_external_id_sku_field_is_recognised(org_factory):
    schema = packaged_schema()
    schema["sobjects"]["Product2"]["fields"]["Magento_SKU__c"] = {
        "type": "string",
        "length": 80,
        "label": "SKU",
        "externalId": True,
        "unique": True,
    }
    org = org_factory(schema=schema)
    report, text = report_of(org, SALESFORCE_PRODUCT_SKU_FIELD="Magento_SKU__c")
    assert report.exit_code == 0, text
    assert "Product2.Magento_SKU__c: a unique External ID: products are upserted by SKU" in text
