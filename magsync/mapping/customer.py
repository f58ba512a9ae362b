"""The buyer as Salesforce keeps them: an Account and a Contact, created once per email.

``account_fields(order)`` and ``contact_fields(order, settings)`` give the fields of a new
record; empty values are left out. The Account is named after the billing company, else the
buyer; the Contact carries the names (LastName is required: the first name or the email's local
part stand in), the email, the phone and the billing address as mailing address. An email
Salesforce cannot hold (``storable_email``) goes to the Contact's description instead.
"""

from marshmallow import Schema, fields, post_dump

from magsync.mapping.common import (
    address_fields,
    first_name,
    last_name,
    limited,
    storable_email,
    unstorable_email_note,
    without_empty,
)

ACCOUNT_ADDRESS = {
    "street": "BillingStreet",
    "city": "BillingCity",
    "state": "BillingState",
    "postal_code": "BillingPostalCode",
    "country": "BillingCountry",
    "phone": "Phone",
}
CONTACT_ADDRESS = {
    "street": "MailingStreet",
    "city": "MailingCity",
    "state": "MailingState",
    "postal_code": "MailingPostalCode",
    "country": "MailingCountry",
    "phone": "Phone",
}


def account_name(order):
    address = order.billing_address
    company = address.company.strip() if address and address.company else None
    return limited("name", company or order.customer_name or order.customer_email)


class AccountSchema(Schema):
    """A new Account's fields (created once per buyer, never upserted)."""

    class Meta:
        salesforce_object = "Account"

    Name = fields.Function(account_name)

    @post_dump(pass_original=True)
    def add_address(self, data, order, **kwargs):
        return without_empty({**data, **address_fields(order, ACCOUNT_ADDRESS)})


class ContactSchema(Schema):
    """A new Contact's fields, without ``AccountId`` (created once per buyer)."""

    class Meta:
        salesforce_object = "Contact"

    FirstName = fields.Function(first_name)
    LastName = fields.Function(last_name)
    Email = fields.Function(lambda order: storable_email(order.customer_email))
    Description = fields.Method("get_description")
    LeadSource = fields.Method("get_lead_source")

    def __init__(self, settings, **kwargs):
        super().__init__(**kwargs)
        self.settings = settings

    def get_lead_source(self, order):
        return self.settings.sf_lead_source

    def get_description(self, order):
        return unstorable_email_note(order)

    @post_dump(pass_original=True)
    def add_address(self, data, order, **kwargs):
        return without_empty({**data, **address_fields(order, CONTACT_ADDRESS)})


def account_fields(order):
    """Fields of the Account for the buyer of ``order``."""
    return AccountSchema().dump(order)


def contact_fields(order, settings):
    """Fields of the Contact for the buyer of ``order`` (without ``AccountId``)."""
    return ContactSchema(settings).dump(order)
