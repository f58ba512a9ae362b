"""A guest's order as a Lead (``MAGSYNC_GUEST_MODE=lead``): one Lead per order, upserted by the
order number on ``SALESFORCE_LEAD_EXTERNAL_ID_FIELD``.

Salesforce requires LastName and Company: LastName is the buyer's last name (else the first
name, else the email's local part); Company is the billing address's company, else
``SALESFORCE_LEAD_COMPANY``. The description opens with the order's total, then the items.
An email Salesforce cannot hold (``storable_email``) is written in the description instead.
"""

from marshmallow import fields, post_dump

from magsync.mapping.common import (
    address_fields,
    company,
    currency_fields,
    first_name,
    last_name,
    money,
    storable_email,
    unstorable_email_note,
)
from magsync.mapping.edits import replacing_fields
from magsync.mapping.opportunity import DESCRIPTION_LIMIT, describe_items
from magsync.mapping.records import UPSERT, OutboundSchema

LEAD_ADDRESS = {
    "street": "Street",
    "city": "City",
    "state": "State",
    "postal_code": "PostalCode",
    "country": "Country",
    "phone": "Phone",
}


class LeadSchema(OutboundSchema):
    """Dumps an ``Order`` as Lead fields, the external-id field included."""

    class Meta:
        salesforce_object = "Lead"
        salesforce_write = UPSERT
        salesforce_key = "sf_lead_external_id_field"

    FirstName = fields.Function(first_name)
    LastName = fields.Function(last_name)
    Company = fields.Method("get_company")
    Email = fields.Function(lambda order: storable_email(order.customer_email))
    LeadSource = fields.Method("get_lead_source")
    Description = fields.Method("get_description")

    def get_company(self, order):
        return company(order, self.settings.sf_lead_company)

    def get_lead_source(self, order):
        return self.settings.sf_lead_source

    def get_description(self, order):
        currency = f" {order.order_currency_code}" if order.order_currency_code else ""
        head = f"Order {order.increment_id} total: {money(order.grand_total)}{currency}"
        note = unstorable_email_note(order)
        if note:
            head = f"{head}\n{note}"
        items = describe_items(order.sold_items, DESCRIPTION_LIMIT - len(head) - 1)
        return f"{head}\n{items}" if items else head

    @post_dump(pass_original=True)
    def add_order_fields(self, data, order, **kwargs):
        data.update(address_fields(order, LEAD_ADDRESS))
        data.update(currency_fields(order, self.settings))
        data.update(replacing_fields(order, self.settings))
        return data


def lead_record(order, settings):
    """The Lead ``Record`` for a guest's ``order``, keyed on its increment id."""
    return LeadSchema.of(settings).record(order)
