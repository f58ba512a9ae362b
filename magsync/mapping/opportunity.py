"""The outbound side: a canonical order to the fields of a Salesforce Opportunity.

``OpportunitySchema(settings).dump(order)`` returns exactly the Salesforce fields of the mapping,
the external-id field (``SALESFORCE_EXTERNAL_ID_FIELD``) included; ``opportunity_record`` wraps
that as a ``Record`` for the writer. For the seed's example order it yields::

    Name "Order 000000123 - Jane Doe", Amount 99.99, StageName "Prospecting",
    CloseDate "2023-11-26", Magento_Order_ID__c "000000123", Magento_Customer_Email__c
    "jane.doe@example.com", Billing_Street__c "123 Main St", Billing_City__c "Anytown",
    Billing_State__c "State", Billing_PostalCode__c "12345", Billing_Country__c "US",
    Description "Product X (SKU: PROD-XYZ, Qty: 1)", LeadSource "Magento E-commerce"

Where they apply, it adds ``CurrencyIsoCode`` (``SALESFORCE_MULTI_CURRENCY``), the replaced
order's number for an edited order (``SALESFORCE_PARENT_ORDER_FIELD``) and, for an order an edit
replaced, the canceled stage and a note naming the replacement (``SALESFORCE_REPLACED_NOTE_FIELD``).
An email Salesforce's Email fields refuse (a quoted local part) is left out. The pipeline adds
the links (``AccountId``), which depend on Salesforce ids.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from marshmallow import Schema, fields, post_dump

from magsync.mapping.common import limited, order_extras, storable_email, truncate

NAME_LIMIT = 120  # Opportunity.Name is a Text(120)
DESCRIPTION_LIMIT = 32000  # Opportunity.Description is a Long Text Area(32000)
CENTS = Decimal("0.01")


@dataclass(frozen=True)
class Record:
    """One record to upsert: its object, its external-id field and value, and its fields."""

    sobject: str
    external_id_field: str
    external_id: str
    fields: dict

    def body(self):
        """The fields without the external-id field (an upsert URL carries that one)."""
        return {k: v for k, v in self.fields.items() if k != self.external_id_field}


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


def _billing(order, attribute, kind):
    """A billing address part, cut to the length of Salesforce's address fields (a city longer
    than 40 characters must not cost the whole order a STRING_TOO_LONG)."""
    address = order.billing_address
    return limited(kind, getattr(address, attribute)) if address else None


class OpportunitySchema(Schema):
    """Dumps an ``Order`` as Opportunity fields. Settings give the names and rules."""

    Name = fields.Method("get_name")
    Amount = fields.Method("get_amount")
    StageName = fields.Method("get_stage")
    CloseDate = fields.Method("get_close_date")
    Magento_Customer_Email__c = fields.Function(lambda order: storable_email(order.customer_email))
    Billing_Street__c = fields.Method("get_street")
    Billing_City__c = fields.Function(lambda order: _billing(order, "city", "city"))
    Billing_State__c = fields.Function(lambda order: _billing(order, "region", "state"))
    Billing_PostalCode__c = fields.Function(
        lambda order: _billing(order, "postcode", "postal_code")
    )
    Billing_Country__c = fields.Function(lambda order: _billing(order, "country_id", "country"))
    Description = fields.Method("get_description")
    LeadSource = fields.Method("get_lead_source")

    def __init__(self, settings, previous_stage=None, replaced_by=None, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings
        self.previous_stage = previous_stage
        self.replaced_by = replaced_by

    def get_name(self, order):
        prefix = f"Order {order.increment_id}"
        name = order.customer_name
        if not name:
            return truncate(prefix, NAME_LIMIT)
        return truncate(f"{prefix} - {name}", NAME_LIMIT)

    def get_amount(self, order):
        return order.grand_total.quantize(CENTS, rounding=ROUND_HALF_UP)

    def get_stage(self, order):
        """The mapped stage; states outside the map (on hold, in review) keep the current one.

        An order an edit replaced is lost, whatever state it is in.
        """
        stage_map = self.settings.sf_stage_map
        if self.replaced_by:
            return replaced_stage(self.settings)
        if order.state in stage_map:
            return stage_map[order.state]
        return self.previous_stage or stage_map.get("new")

    def get_close_date(self, order):
        return self.settings.sf_close_date_offset.apply(order.created_at.date()).isoformat()

    def get_street(self, order):
        address = order.billing_address
        if not address or not address.street:
            return None
        return limited("street", "\n".join(address.street))

    def get_description(self, order):
        return describe_items(order.sold_items)

    def get_lead_source(self, order):
        return self.settings.sf_lead_source

    @post_dump(pass_original=True)
    def add_order_fields(self, data, order, **kwargs):
        data.update(order_extras(order, self.settings))
        if self.replaced_by:
            data[self.settings.sf_replaced_note_field] = replaced_note(self.replaced_by)
        data[self.settings.sf_external_id_field] = order.increment_id
        return data


def replaced_stage(settings):
    """The stage of an order an edit replaced: the canceled one of the stage map."""
    return settings.sf_stage_map.get("canceled", "Closed Lost")


def replaced_note(replacement):
    return f"Replaced by edited order {replacement}"


def opportunity_record(order, settings, previous_stage=None, replaced_by=None):
    """The Opportunity ``Record`` for ``order``, keyed on its increment id.

    ``previous_stage`` is the stage last written (kept for states outside the map);
    ``replaced_by`` the number of the edited order that replaced this one, if any.
    """
    fields_ = OpportunitySchema(
        settings, previous_stage=previous_stage, replaced_by=replaced_by
    ).dump(order)
    return Record(
        sobject="Opportunity",
        external_id_field=settings.sf_external_id_field,
        external_id=order.increment_id,
        fields=fields_,
    )
