"""The line-item checks (``SALESFORCE_LINE_ITEMS``): what the org needs before orders can carry
their products.

- the price book (``SALESFORCE_PRICEBOOK_ID``, or the standard one) exists and is active;
- the integration user can create Product2, PricebookEntry and OpportunityLineItem records;
- the SKU field (``SALESFORCE_PRODUCT_SKU_FIELD``) exists on Product2 and can be written; a
  unique External ID is recommended (products are then upserted by it: no duplicate can ever be
  made);
- the shipping, tax and adjustment products exist, or can be created.

The line external-id field and the line fields are checked with the rest of the mapping
(``magsync.check.mapping``: ``LineItemSchema``).
"""

from urllib.parse import urlencode

from magsync.check.report import Finding
from magsync.check.salesforce import Unanswered
from magsync.salesforce.soql import literal

OBJECTS = ("Product2", "PricebookEntry", "OpportunityLineItem")
WHERE_PERMISSIONS = "the integration user's profile or permission set (Object Settings)"


def check_line_items(ctx):
    settings = ctx.settings
    if not settings.sf_line_items:
        yield Finding.skip("line items", "SALESFORCE_LINE_ITEMS is off")
        return
    org = ctx.resources["org"]
    yield from _pricebook(org, settings)
    yield from _objects(org)
    yield from _sku_field(org, settings)
    yield from _order_products(org, settings)


def _query(org, soql):
    return org.get(org.rest.data_path("query/?" + urlencode({"q": soql}))).get("records") or []


def _pricebook(org, settings):
    book = settings.sf_pricebook_id
    if book == "standard":
        soql = "SELECT Id, Name, IsActive FROM Pricebook2 WHERE IsStandard = true LIMIT 1"
    else:
        soql = f"SELECT Id, Name, IsActive FROM Pricebook2 WHERE Id = {literal(book)}"  # noqa: S608
    subject = f"price book {book}"
    try:
        records = _query(org, soql)
    except Unanswered as exc:
        yield Finding.fail(subject, f"could not be read ({exc})", "enable Products in the org")
        return
    if not records:
        yield Finding.fail(
            subject,
            "the org has no such price book",
            "set SALESFORCE_PRICEBOOK_ID to an active price book's id, or to standard",
        )
    elif not records[0].get("IsActive"):
        yield Finding.fail(
            subject,
            f"{records[0].get('Name')} is inactive: no line can use its entries",
            "activate it (Setup > Price Books) or choose another",
        )
    else:
        yield Finding.ok(subject, f"{records[0].get('Name')} exists and is active")


def _objects(org):
    for sobject in OBJECTS:
        try:
            described = org.describe(sobject)
        except Unanswered as exc:
            yield Finding.fail(
                sobject, f"describe failed: {exc}", f"grant access in {WHERE_PERMISSIONS}"
            )
            continue
        if described.get("createable"):
            yield Finding.ok(sobject, "the integration user can create them")
        else:
            yield Finding.fail(
                sobject,
                "the integration user cannot create them",
                f"give Create on {sobject} in {WHERE_PERMISSIONS}",
            )


def _sku_field(org, settings):
    name = settings.sf_product_sku_field
    subject = f"Product2.{name}"
    try:
        fields = {f["name"]: f for f in org.describe("Product2").get("fields", [])}
    except Unanswered:
        return  # reported with the objects
    field = fields.get(name)
    if field is None or not field.get("createable"):
        yield Finding.fail(
            subject,
            "missing, or the integration user cannot write it",
            "set SALESFORCE_PRODUCT_SKU_FIELD to a Text field of Product2 the user can edit",
        )
    elif field.get("externalId") and field.get("unique"):
        yield Finding.ok(subject, "a unique External ID: products are upserted by SKU")
    else:
        yield Finding.warn(
            subject,
            "not a unique External ID: products are found by SKU, created under a lock, and "
            "when several share a SKU the oldest active one is used",
            "create a Text field marked Unique and External ID (such as Magento_SKU__c) and "
            "set SALESFORCE_PRODUCT_SKU_FIELD to it",
        )


def _order_products(org, settings):
    name = settings.sf_product_sku_field
    skus = [settings.sf_shipping_product, settings.sf_tax_product, settings.sf_adjustment_product]
    values = ", ".join(literal(sku) for sku in skus)
    try:
        found = {
            (r.get(name) or "").lower()
            for r in _query(org, f"SELECT {name} FROM Product2 WHERE {name} IN ({values})")  # noqa: S608
        }
    except Unanswered:
        return  # the SKU field finding says why
    for sku in skus:
        if sku.lower() in found:
            yield Finding.ok(f"product {sku}", "exists")
        else:
            yield Finding.ok(f"product {sku}", "created with the first order that needs it")
