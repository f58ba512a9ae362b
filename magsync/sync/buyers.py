"""Who bought an order, as Salesforce knows them: the buyer's Account and Contact.

A buyer is known by email (``customer_key``). The order's own ledger row knows them when the
order was written before; else the ledger's customers; else one SOQL lookup of the org's
Contacts by email, under the buyer's lock, so that two first orders of one buyer make one
Account and one Contact. ``find_buyer`` answers what one order's write must create or link.

``resolve_buyers(orders, writer, settings)`` does the same for many buyers at once (a batch of
orders, a backfill): one SOQL query per chunk of emails (``WHERE Email IN (...)``), then for each
200 buyers Salesforce lacks one Composite call holding sObject Collections creates, all or none:
their Accounts, their Contacts in them, and the link of a found Contact that has no Account to
its new one. The caller holds the buyers' locks and records what it returns in the ledger.
"""

import logging
from dataclasses import dataclass, field

from magsync.errors import RetryLater, SyncError, classify_salesforce
from magsync.ledger import Customer
from magsync.mapping.common import customer_key, storable_email
from magsync.mapping.customer import account_record, contact_account_update, contact_record
from magsync.salesforce.lookups import find_contact, find_contacts
from magsync.salesforce.writer import COLLECTION_LIMIT, Subrequest, reference

log = logging.getLogger(__name__)

# Errors that name no record of their own: the others' failure stopped them.
_KNOCK_ON = {"ALL_OR_NONE_OPERATION_ROLLED_BACK", "PROCESSING_HALTED"}
# Creating a chunk of buyers again without the ones Salesforce refused: at most this many calls.
CREATE_ROUNDS = 3


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


# -- many buyers --------------------------------------------------------------------------------


@dataclass
class Resolution:
    """What ``resolve_buyers`` found and made, by email: ``found`` (Salesforce had the Contact;
    its Account, or one made now), ``created`` (Account and Contact made now), ``failed`` (the
    outcome Salesforce gave this buyer's records)."""

    found: dict = field(default_factory=dict)
    created: dict = field(default_factory=dict)
    failed: dict = field(default_factory=dict)

    def customers(self):
        """Every ``Customer`` found or made (what the ledger should remember)."""
        return [*self.found.values(), *self.created.values()]


def resolve_buyers(orders, writer, settings, **limits):
    """The Account and Contact of each buyer of ``orders`` (``{email: order}``, emails as
    ``customer_key`` gives them; the order gives the new records' names and address).

    Raises the lookup's outcome when the SOQL query fails as a whole; a chunk whose creation
    fails ends in ``failed`` for its buyers. ``limits`` size the query chunks
    (``soql.in_chunks``).
    """
    searchable = [email for email in orders if storable_email(email)]
    contacts = find_contacts(writer, searchable, **limits) if searchable else {}
    resolution = Resolution()
    to_make = []
    for email in orders:
        contact_id, account_id = contacts.get(email, (None, None))
        if account_id is not None:
            resolution.found[email] = Customer(email, account_id, contact_id)
        else:
            to_make.append((email, contact_id))
    for start in range(0, len(to_make), COLLECTION_LIMIT):
        chunk = to_make[start : start + COLLECTION_LIMIT]
        _make(chunk, orders, writer, settings, resolution)
    return resolution


def _make(chunk, orders, writer, settings, resolution):
    """Create the Accounts (and Contacts, or links) of ``chunk`` (``[(email, contact_id or
    None)]``), leaving out and retrying without the buyers Salesforce refuses."""
    for _ in range(CREATE_ROUNDS):
        if not chunk:
            return
        try:
            refused = _create_chunk(chunk, orders, writer, settings, resolution)
        except SyncError as exc:  # the call failed as a whole: every buyer of it did
            refused = {email: exc for email, _ in chunk}
        if not refused:
            return
        resolution.failed.update(refused)
        chunk = [(email, contact) for email, contact in chunk if email not in refused]
    for email, _ in chunk:
        resolution.failed[email] = RetryLater(
            "Salesforce refused other buyers of the same call too often", reason="buyers_refused"
        )


def _subrequests(chunk, orders, settings):
    accounts, contacts, links = [], [], []
    for index, (email, contact_id) in enumerate(chunk):
        order = orders[email]
        accounts.append(account_record(order))
        account = reference(f"accounts[{index}]")
        if contact_id is None:
            contacts.append(contact_record(order, settings, account))
        else:
            links.append(contact_account_update(order, contact_id, account))
    subrequests = [Subrequest.create_many("accounts", accounts, all_or_none=True)]
    if contacts:
        subrequests.append(Subrequest.create_many("contacts", contacts, all_or_none=True))
    if links:
        subrequests.append(Subrequest.update_many("links", links, all_or_none=True))
    return subrequests


def _create_chunk(chunk, orders, writer, settings, resolution):
    """One Composite call; ``{email: outcome}`` of the buyers refused (empty: all made)."""
    results = {
        r.reference_id: r
        for r in writer.composite_each(_subrequests(chunk, orders, settings), all_or_none=True)
    }
    members = {
        "accounts": [email for email, _ in chunk],
        "contacts": [email for email, contact in chunk if contact is None],
        "links": [email for email, contact in chunk if contact is not None],
    }
    refused = _refused(results, members)
    if refused or not all(
        _succeeded(results.get(name), emails) for name, emails in members.items()
    ):
        return refused or _whole(results, chunk)
    accounts = dict(zip(members["accounts"], results["accounts"].body, strict=True))
    contacts = {}
    if members["contacts"]:
        contacts = dict(zip(members["contacts"], results["contacts"].body, strict=True))
    for email, contact_id in chunk:
        account_id = accounts[email]["id"]
        if contact_id is None:
            resolution.created[email] = Customer(email, account_id, contacts[email]["id"])
        else:
            resolution.found[email] = Customer(email, account_id, contact_id)
    log.info("buyers created", extra={"buyers": len(chunk)})
    return {}


def _succeeded(result, emails):
    """True when the subrequest made a record for each of ``emails`` (none: nothing asked)."""
    if not emails:
        return True
    if result is None or not result.ok or not isinstance(result.body, list):
        return False
    items = result.body
    return len(items) == len(emails) and all(
        isinstance(item, dict) and item.get("success") and item.get("id") for item in items
    )


def _refused(results, members):
    """``{email: outcome}`` for each record Salesforce refused for a reason of its own."""
    refused = {}
    for reference_id, emails in members.items():
        result = results.get(reference_id)
        if result is None or not isinstance(result.body, list):
            continue
        for email, item in zip(emails, result.body, strict=False):
            if not isinstance(item, dict) or item.get("success") is not False:
                continue
            errors = item.get("errors") or []
            codes = {e.get("statusCode") or e.get("errorCode") for e in errors}
            if codes - _KNOCK_ON:
                refused[email] = classify_salesforce(400, errors)
    return refused


def _whole(results, chunk):
    """The outcome of a call whose subrequests failed with no record to blame, for each buyer."""
    failed = [r for r in results.values() if not r.ok]
    cause = next(
        (
            r
            for r in failed
            if isinstance(r.body, list)
            and {e.get("errorCode") for e in r.body if isinstance(e, dict)} - _KNOCK_ON
        ),
        failed[0] if failed else None,
    )
    if cause is None:
        error = RetryLater("Salesforce did not create the buyers", reason="buyers_not_created")
    else:
        error = classify_salesforce(cause.status, cause.body)
    return {email: error for email, _ in chunk}
