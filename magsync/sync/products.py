"""The price-book entries an order's lines need, found or created (line items).

``price_entries(skus, currency, services, locks)`` answers ``{sku: PricebookEntry id}`` in the
configured price book (``SALESFORCE_PRICEBOOK_ID``) and the order's currency. A SKU the ledger
knows costs nothing. The others, under a per-SKU lock (``LockName("product", sku)``: workers
creating one SKU at once make one product), are looked up in Salesforce by
``SALESFORCE_PRODUCT_SKU_FIELD`` (one query for the products, one for their entries) and what is
missing is created in one Composite call: the Product2 (name, SKU, active), its standard price
book entry and, for a custom price book, its entry there, at the item's catalog price in the
order's currency (the lines carry what was paid); an inactive entry is reactivated.
What Salesforce confirmed goes into the ledger.

Several products with one SKU (``ProductCode`` is not unique): the oldest active one is used, and
the choice is logged (once: the ledger remembers it). None active: a new one is created. When the
SKU field is a unique External ID, products are upserted by it instead of created, so two
writers can never make two.

``forget(skus, services)`` drops cached ids Salesforce refused (a product or entry deleted in
the org); the caller looks them up again.
"""

import logging
import weakref
from dataclasses import dataclass
from decimal import Decimal

from magsync.errors import DeadLetter
from magsync.ledger import LockName
from magsync.mapping.records import NewRecord, Record, Update
from magsync.salesforce.lookups import (
    find_price_entries,
    find_products,
    same_id,
    standard_pricebook,
)
from magsync.salesforce.writer import Subrequest

log = logging.getLogger(__name__)

STANDARD = "standard"


@dataclass
class _Plan:
    """What one SKU needs created or changed, and the ids it already has."""

    sku: str
    name: str
    list_price: Decimal = Decimal("0")  # a new entry's UnitPrice: the catalog price
    product_id: str | None = None
    standard_entry: str | None = None
    entry: str | None = None
    inactive: str | None = None  # the wanted entry exists but is inactive


@dataclass
class _Catalog:
    """What a process learnt once of the org: the standard price book, the SKU field's kind."""

    standard: str | None = None
    sku_is_key: bool | None = None


# Per writer (one per process): what it learnt of its org.
_CATALOGS = weakref.WeakKeyDictionary()


def _catalog(services):
    return _CATALOGS.setdefault(services.writer, _Catalog())


def price_entries(lines, currency, services, locks):
    """``{sku: PricebookEntry id}`` for the SKUs of ``lines`` (see the module)."""
    settings, ledger = services.settings, services.ledger
    book = settings.sf_pricebook_id
    names = {line.sku: (line.name, line.list_price) for line in lines}
    known = ledger.price_entries(names, book, currency)
    missing = sorted(set(names) - set(known))
    if not missing:
        return known
    locks.acquire_many([LockName("product", sku.lower()) for sku in missing])
    known.update(ledger.price_entries(missing, book, currency))
    missing = [sku for sku in missing if sku not in known]
    if missing:
        known.update(_resolve(missing, names, currency, services))
    return known


def forget(skus, services):
    """Drop the ledger's ids of ``skus``; the next order looks them up again."""
    log.warning("remembered products refused by salesforce", extra={"skus": ",".join(skus)})
    services.ledger.forget_products(skus)


def _resolve(skus, names, currency, services):
    settings, writer = services.settings, services.writer
    plans = {sku: _Plan(sku, *names[sku]) for sku in skus}
    products = find_products(writer, settings.sf_product_sku_field, skus)
    for sku, records in products.items():
        plans[sku].product_id = _choose(sku, records, services)
    ids = [plan.product_id for plan in plans.values() if plan.product_id]
    if ids:
        entries = find_price_entries(writer, ids, settings.sf_multi_currency)
        for plan in plans.values():
            _place_entries(plan, entries, currency, settings)
    _create(list(plans.values()), currency, services)
    services.ledger.remember_products(
        {p.sku: p.product_id for p in plans.values()},
        {p.sku: p.entry for p in plans.values()},
        settings.sf_pricebook_id,
        currency,
    )
    return {plan.sku: plan.entry for plan in plans.values()}


def _choose(sku, records, services):
    """The oldest active product of ``sku`` (records come oldest first), else None."""
    active = [record for record in records if record.get("IsActive")]
    if not active:
        return None
    if len(records) > 1:
        log.warning(
            "several products carry one sku: the oldest active one is used",
            extra={"sku": sku, "product": active[0]["Id"], "products": len(records)},
        )
    return active[0]["Id"]


def _place_entries(plan, entries, currency, settings):
    book = settings.sf_pricebook_id
    for entry in entries:
        if not same_id(entry.get("Product2Id"), plan.product_id):
            continue
        if settings.sf_multi_currency and (entry.get("CurrencyIsoCode") or "") != currency:
            continue
        standard = bool((entry.get("Pricebook2") or {}).get("IsStandard"))
        if standard:
            plan.standard_entry = entry["Id"]
        wanted = standard if book == STANDARD else same_id(entry.get("Pricebook2Id"), book)
        if wanted:
            plan.entry = entry["Id"]
            if not entry.get("IsActive"):
                plan.inactive = entry["Id"]


def _entry_fields(book_id, plan, product, currency, settings):
    fields_ = {
        "Pricebook2Id": book_id,
        "Product2Id": product,
        "UnitPrice": plan.list_price,
        "IsActive": True,
    }
    if settings.sf_multi_currency and currency:
        fields_["CurrencyIsoCode"] = currency
    return fields_


def _product_record(plan, settings, sku_is_key):
    fields_ = {"Name": plan.name, settings.sf_product_sku_field: plan.sku, "IsActive": True}
    if sku_is_key:
        return Record("Product2", settings.sf_product_sku_field, plan.sku, fields_)
    return NewRecord("Product2", fields_)


def _subrequests(plans, currency, services):
    """The Composite subrequests creating what ``plans`` lack, and where each plan's new ids
    will be: ``(subrequests, slots)`` with slots ``[(plan, attribute, reference, index)]``."""
    settings = services.settings
    catalog = _catalog(services)
    custom = None if settings.sf_pricebook_id == STANDARD else settings.sf_pricebook_id
    new = [p for p in plans if not p.product_id]
    subrequests, slots = [], []
    if new:
        sku_is_key = _sku_is_key(services, catalog)
        records = [_product_record(p, settings, sku_is_key) for p in new]
        if sku_is_key:
            subrequests.append(Subrequest.upsert_many("products", records))
        else:
            subrequests.append(Subrequest.create_many("products", records, all_or_none=True))
        slots += [(p, "product_id", "products", i) for i, p in enumerate(new)]

    def product_of(plan):
        if plan.product_id:
            return plan.product_id
        return f"@{{products[{new.index(plan)}].id}}"

    for reference_id, book, attribute, wanted in (
        ("standard", None, "standard_entry", [p for p in plans if not p.standard_entry]),
        ("custom", custom, "entry", [p for p in plans if custom and not p.entry]),
    ):
        if wanted:
            book = book or _standard_book(services)
            records = [
                NewRecord(
                    "PricebookEntry", _entry_fields(book, p, product_of(p), currency, settings)
                )
                for p in wanted
            ]
            subrequests.append(Subrequest.create_many(reference_id, records, all_or_none=True))
            slots += [(p, attribute, reference_id, i) for i, p in enumerate(wanted)]
    inactive = [p for p in plans if p.inactive]
    if inactive:
        updates = [Update("PricebookEntry", p.inactive, {"IsActive": True}) for p in inactive]
        subrequests.append(Subrequest.update_many("activate", updates, all_or_none=True))
    return subrequests, slots


def _create(plans, currency, services):
    subrequests, slots = _subrequests(plans, currency, services)
    if not subrequests:
        return
    results = services.writer.composite(subrequests)
    for plan, attribute, reference_id, index in slots:
        outcome = results[reference_id][index]
        if not outcome.get("success"):
            raise DeadLetter(
                f"Salesforce refused a product of SKU {plan.sku}", reason="product_refused"
            )
        setattr(plan, attribute, outcome["id"])
    for plan in plans:
        if services.settings.sf_pricebook_id == STANDARD:
            plan.entry = plan.entry or plan.standard_entry
        log.info(
            "product ready",
            extra={"sku": plan.sku, "product": plan.product_id, "entry": plan.entry},
        )


def _standard_book(services):
    catalog = _catalog(services)
    if catalog.standard is None:
        catalog.standard = standard_pricebook(services.writer)
        if catalog.standard is None:
            raise DeadLetter(
                "Salesforce has no standard price book (are products enabled?)",
                reason="no_standard_pricebook",
            )
    return catalog.standard


def _sku_is_key(services, catalog):
    """Whether the SKU field is a unique External ID (then products are upserted by it)."""
    name = services.settings.sf_product_sku_field
    if not name.endswith("__c"):
        return False  # only custom fields can be External IDs (ProductCode cannot)
    if catalog.sku_is_key is None:
        described = services.writer.describe("Product2")
        field_ = next((f for f in described.get("fields", []) if f.get("name") == name), {})
        catalog.sku_is_key = bool(field_.get("externalId") and field_.get("unique"))
    return catalog.sku_is_key
