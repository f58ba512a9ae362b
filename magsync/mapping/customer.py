"""The buyer as Salesforce keeps them: an Account and a Contact, created once per email, and
the Contact's role on each of the buyer's Opportunities.

``account_record(order)`` and ``contact_record(order, settings, account)`` give the new records;
empty values are left out. The Account is named after the billing company, else the buyer; the
Contact carries the names (LastName is required: the first name or the email's local part stand
in), the email, the phone, the billing address as mailing address, and its Account. An email
Salesforce cannot hold (``storable_email``) goes to the Contact's description instead. A buyer's
existing Contact without an Account is linked to the new one (``contact_account_update``).
``contact_role_record`` makes the Contact the primary contact of an order's Opportunity, in the
role ``SALESFORCE_CONTACT_ROLE``.
"""

from marshmallow import fields, post_dump

from magsync.mapping.common import (
    address_fields,
    company,
    first_name,
    last_name,
    storable_email,
    unstorable_email_note,
    without_empty,
)
from magsync.mapping.records import CREATE, UPDATE, Link, OutboundSchema

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
    return company(order, order.customer_name or order.customer_email)


class AccountSchema(OutboundSchema):
    """A new Account's fields (created once per buyer, never upserted)."""

    class Meta:
        salesforce_object = "Account"
        salesforce_write = CREATE

    Name = fields.Function(account_name)

    @post_dump(pass_original=True)
    def add_address(self, data, order, **kwargs):
        return without_empty({**data, **address_fields(order, ACCOUNT_ADDRESS)})


class ContactSchema(OutboundSchema):
    """A new Contact's fields, with its Account when given in ``links`` (created once per
    buyer)."""

    class Meta:
        salesforce_object = "Contact"
        salesforce_write = CREATE

    FirstName = fields.Function(first_name)
    LastName = fields.Function(last_name)
    Email = fields.Function(lambda order: storable_email(order.customer_email))
    Description = fields.Function(unstorable_email_note)
    LeadSource = fields.Method("get_lead_source")
    AccountId = Link()

    def get_lead_source(self, order):
        return self.settings.sf_lead_source

    @post_dump(pass_original=True)
    def add_address(self, data, order, **kwargs):
        return without_empty({**data, **address_fields(order, CONTACT_ADDRESS)})


class ContactAccountSchema(OutboundSchema):
    """The link of a buyer's existing Contact (which has no Account) to the buyer's new one."""

    class Meta:
        salesforce_object = "Contact"
        salesforce_write = UPDATE

    AccountId = Link()


class ContactRoleSchema(OutboundSchema):
    """The buyer's Contact as the primary contact role of an order's Opportunity (created once
    per order; its links are the Opportunity and the Contact)."""

    class Meta:
        salesforce_object = "OpportunityContactRole"
        salesforce_write = CREATE

    OpportunityId = Link()
    ContactId = Link()
    Role = fields.Method("get_role")
    IsPrimary = fields.Constant(True)

    def get_role(self, order):
        return self.settings.sf_contact_role


def account_fields(order):
    """Fields of the Account for the buyer of ``order``."""
    return AccountSchema.of().dump(order)


def contact_fields(order, settings, account=None):
    """Fields of the Contact for the buyer of ``order``, linked to ``account`` when given."""
    links = {"AccountId": account} if account is not None else {}
    return ContactSchema.of(settings, links=links).dump(order)


def account_record(order):
    """The new Account for the buyer of ``order``."""
    return AccountSchema.of().new_record(order)


def contact_record(order, settings, account):
    """The new Contact for the buyer of ``order``, in ``account`` (an id or a reference)."""
    return ContactSchema.of(settings, links={"AccountId": account}).new_record(order)


def contact_account_update(order, contact_id, account):
    """The ``Update`` linking the buyer's existing Contact ``contact_id`` to ``account``."""
    return ContactAccountSchema.of(links={"AccountId": account}).update(order, contact_id)


def contact_role_record(order, settings, opportunity, contact):
    """The contact role making ``contact`` the primary contact of ``opportunity`` (ids or
    references)."""
    links = {"OpportunityId": opportunity, "ContactId": contact}
    return ContactRoleSchema.of(settings, links=links).new_record(order)
