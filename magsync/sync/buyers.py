"""Who bought an order, as Salesforce knows them: the buyer's Account and Contact.

A buyer is known by email (``customer_key``). The order's own ledger row knows them when the
order was written before; else the ledger's customers; else one SOQL lookup of the org's
Contacts by email, under the buyer's lock, so that two first orders of one buyer make one
Account and one Contact. ``find_buyer`` answers what the write must create or link.
"""

from dataclasses import dataclass

from magsync.mapping.common import customer_key, storable_email
from magsync.salesforce.lookups import find_contact


@dataclass(frozen=True)
class Buyer:
    """The buyer's Account and Contact as this write will link them."""

    email: str
    account_id: str | None
    contact_id: str | None
    create_account: bool = False
    create_contact: bool = False
    link_contact: bool = False  # an existing Contact without an Account gets the new one
    new: bool = False  # not in the ledger yet: remember it once written

    @property
    def existing_contact(self):
        return self.contact_id is not None and not self.create_contact


def find_buyer(order, state, services, locks, fresh=False):
    """Who bought: from the order's own row, the ledger's customers, or one SOQL lookup.

    ``fresh`` skips what the ledger remembers (Salesforce refused those ids).
    """
    ledger = services.ledger
    email = customer_key(order.customer_email)
    if not fresh and state is not None and state.contact_id and state.customer_email == email:
        return Buyer(email, state.account_id, state.contact_id)
    cached = None if fresh else ledger.customer(email)
    if cached is None:
        # The buyer's first order(s): one worker at a time looks the buyer up and creates them;
        # the others then find them in the ledger.
        locks.acquire("customer", email)
        cached = None if fresh else ledger.customer(email)
    if cached is not None:
        return Buyer(email, cached.account_id, cached.contact_id)
    return _looked_up(email, services.writer)


def _looked_up(email, writer):
    # An address Salesforce cannot hold in an Email field is in no Contact's Email: only the
    # ledger knows its buyer.
    found = find_contact(writer, email) if storable_email(email) else None
    if found is None:
        return Buyer(email, None, None, create_account=True, create_contact=True, new=True)
    contact_id, account_id = found
    if account_id is None:
        return Buyer(email, None, contact_id, create_account=True, link_contact=True, new=True)
    return Buyer(email, account_id, contact_id, new=True)
