"""The outbound side: a canonical order to the fields of a Salesforce Opportunity.

``OpportunitySchema(settings).dump(order)`` returns exactly the Salesforce fields of the mapping,
the external-id field (``SALESFORCE_EXTERNAL_ID_FIELD``) included; ``opportunity_record`` wraps
that as a ``Record`` for the writer. For the seed's example order it yields::

    Name "Order 000000123 - Jane Doe", Amount 99.99, StageName "Prospecting",
    CloseDate "2023-11-26", Magento_Order_ID__c "000000123", Magento_Customer_Email__c
    "jane.doe@example.com", Billing_Street__c "123 Main St", Billing_City__c "Anytown",
    Billing_State__c "State", Billing_PostalCode__c "12345", Billing_Country__c "US",
    Description "Product X (SKU: PROD-XYZ, Qty: 1)", LeadSource "Magento E-commerce"

Where they apply, it adds ``CurrencyIsoCode`` (``SALESFORCE_MULTI_CURRENCY``), the order's
``total_refunded`` (in ``SALESFORCE_REFUNDED_FIELD`` when set) and what an edit
writes (``magsync.mapping.edits``): for an edited order the number of the order it replaces, for
an order an edit replaced the canceled stage and a note naming the replacement. An email
Salesforce's Email fields refuse (a quoted local part) is left out. The link to the buyer's
Account (``AccountId``) is added at write time (``with_account``): it depends on Salesforce ids.
"""

import dataclasses
from decimal import Decimal

from marshmallow import fields, post_dump

from magsync.mapping.common import (
    address_fields,
    currency_fields,
    money,
    storable_email,
    truncate,
)
from magsync.mapping.edits import replaced_fields, replacing_fields
from magsync.mapping.lines import order_lines
from magsync.mapping.records import UPSERT, Link, OutboundSchema

NAME_LIMIT = 120  # Opportunity.Name is a Text(120)
DESCRIPTION_LIMIT = 32000  # Opportunity.Description is a Long Text Area(32000)
BILLING_ADDRESS = {
    "street": "Billing_Street__c",
    "city": "Billing_City__c",
    "state": "Billing_State__c",
    "postal_code": "Billing_PostalCode__c",
    "country": "Billing_Country__c",
}


def _number(value):
    """A quantity as Magento means it: ``1.0000`` is 1, ``1.5000`` is 1.5."""
    normalized = value.normalize()
    return format(normalized, "f")


def describe_items(items, limit=DESCRIPTION_LIMIT):
    """One line per sold item, ``Name (SKU: X, Qty: N)``, cut to ``limit`` with a count."""
    lines = [f"{i.name} (SKU: {i.sku}, Qty: {_number(i.qty_ordered)})" for i in items]
    text = "\n".join(lines)
    if len(text) <= limit:
        return text
    kept = []
    for index, line in enumerate(lines):
        tail = f"\n… and {len(lines) - index} more items"
        if len("\n".join([*kept, line])) + len(tail) > limit:
            return "\n".join(kept) + tail
        kept.append(line)
    return text  # pragma: no cover - the loop always returns when text exceeds the limit


class OpportunitySchema(OutboundSchema):
    """Dumps an ``Order`` as Opportunity fields. Settings give the names and rules."""

    class Meta:
        salesforce_object = "Opportunity"
        salesforce_write = UPSERT
        salesforce_key = "sf_external_id_field"

    Name = fields.Method("get_name")
    Amount = fields.Method("get_amount")
    StageName = fields.Method("get_stage")
    CloseDate = fields.Method("get_close_date")
    Magento_Customer_Email__c = fields.Function(lambda order: storable_email(order.customer_email))
    Description = fields.Method("get_description")
    LeadSource = fields.Method("get_lead_source")
    AccountId = Link()

    def __init__(self, settings, previous_stage=None, replaced_by=None, **kwargs):
        super().__init__(settings, **kwargs)
        self.previous_stage = previous_stage
        self.replaced_by = replaced_by

    def get_name(self, order):
        prefix = f"Order {order.increment_id}"
        name = order.customer_name
        if not name:
            return truncate(prefix, NAME_LIMIT)
        return truncate(f"{prefix} - {name}", NAME_LIMIT)

    def get_amount(self, order):
        return money(order.grand_total)

    def get_stage(self, order):
        """The mapped stage; states outside the map (on hold, in review) keep the current one.

        An order an edit replaced is lost, whatever state it is in (``add_order_fields``).
        """
        stage_map = self.settings.sf_stage_map
        if order.state in stage_map:
            return stage_map[order.state]
        return self.previous_stage or stage_map.get("new")

    def get_close_date(self, order):
        return self.settings.sf_close_date_offset.apply(order.created_at.date()).isoformat()

    def get_description(self, order):
        return describe_items(order.sold_items)

    def get_lead_source(self, order):
        return self.settings.sf_lead_source

    @post_dump(pass_original=True)
    def add_order_fields(self, data, order, **kwargs):
        data.update(address_fields(order, BILLING_ADDRESS))
        data.update(currency_fields(order, self.settings))
        data.update(replacing_fields(order, self.settings))
        if self.replaced_by:
            data.update(replaced_fields(self.replaced_by, self.settings))
        if self.settings.sf_refunded_field:
            data[self.settings.sf_refunded_field] = money(order.total_refunded or Decimal("0"))
        return data


def opportunity_record(order, settings, previous_stage=None, replaced_by=None):
    """The Opportunity ``Record`` for ``order``, keyed on its increment id, without links; with
    line items on (``SALESFORCE_LINE_ITEMS``), its ``Line`` list as the record's children.

    ``previous_stage`` is the stage last written (kept for states outside the map);
    ``replaced_by`` the number of the edited order that replaced this one, if any.
    """
    schema = OpportunitySchema.of(settings, previous_stage=previous_stage, replaced_by=replaced_by)
    record = schema.record(order)
    if settings.sf_line_items:
        record = dataclasses.replace(record, children=tuple(order_lines(order, settings)))
    return record


def with_account(record, account):
    """The Opportunity ``record`` linked to the buyer's Account: its id, or a Composite
    reference to the Account the same call creates."""
    return record.linked(AccountId=account)
