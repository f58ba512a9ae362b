"""The write of one order version: which records go to Salesforce, in which call.

- A Lead (a guest's order in ``lead`` mode): one upsert by external id.
- An Opportunity whose buyer and contact role Salesforce already has: one upsert, linked to the
  buyer's Account.
- Otherwise one Composite call, all or none: the buyer's Account and Contact when they are new
  (or the link of an existing Contact to a new Account), the Opportunity upsert, its contact
  role, and for an edited order the update closing the Opportunity of the order it replaced.
- With line items on (``SALESFORCE_LINE_ITEMS``) always that one Composite call, the order's
  lines in it (``magsync.sync.lines``): its cost stays one call when the products are known.

``magsync.mapping`` says what each record holds; this module decides which records a write needs
and returns what Salesforce confirmed (an ``Applied``).
"""

import dataclasses
import logging

from magsync.errors import DeadLetter
from magsync.ledger import Applied, Customer
from magsync.mapping.customer import (
    account_record,
    contact_account_update,
    contact_record,
    contact_role_record,
)
from magsync.mapping.edits import closing_update
from magsync.mapping.opportunity import with_account
from magsync.salesforce.lookups import find_contact_role
from magsync.salesforce.writer import Subrequest, reference
from magsync.sync.buyers import find_buyer
from magsync.sync.lines import REFUSED_ENTRY, REFUSED_LINES, plan_lines
from magsync.sync.products import forget

log = logging.getLogger(__name__)

# What Salesforce answers when a write refers to a record that was deleted or merged away.
STALE_REFERENCES = {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"}


def write_lead(record, services):
    """Upsert a guest's Lead."""
    result = _upsert(record, services.writer)
    return Applied(sobject="Lead", record_id=result.id, created=result.created)


def write_opportunity(order, record, state, services, locks, fresh=False):
    """Write the Opportunity ``record`` of ``order`` with its buyer, contact role, line items
    (``SALESFORCE_LINE_ITEMS``) and, for an edit, the closing of the order it replaced.

    When Salesforce refuses the Account or Contact the ledger remembers (deleted or merged), or a
    price-book entry it remembers for a line, the ids are forgotten, looked up again and the
    write made once more.
    """
    buyer = find_buyer(order, state, services, locks, fresh)
    lines = plan_lines(order, record, state, services, locks, reference("opportunity"), fresh)
    try:
        return _write_linked(order, record, state, services, buyer, lines)
    except DeadLetter as exc:
        codes = {e.get("errorCode") for e in exc.errors}
        stale_buyer = bool(codes & STALE_REFERENCES) and not buyer.new
        stale_lines = lines is not None and bool(codes & REFUSED_LINES)
        if fresh or not (stale_buyer or stale_lines):
            raise
    if stale_buyer:
        log.warning(
            "remembered customer refused by salesforce",
            extra={"order": order.increment_id, "reason": ",".join(sorted(codes))},
        )
        services.ledger.forget_customer(buyer.email)
    if stale_lines and codes & REFUSED_ENTRY:
        forget(lines.skus, services)
    return write_opportunity(order, record, state, services, locks, fresh=True)


def _write_linked(order, record, state, services, buyer, lines=None):
    settings, writer = services.settings, services.writer
    subrequests, account, contact = _buyer_writes(order, buyer, settings)
    role_id = _known_role(record, state, buyer, writer)
    closed_parent, closing = _closing(order, services.ledger, settings)
    if closing is not None:
        subrequests.append(
            Subrequest.update("parent", closing.sobject, closing.record_id, closing.fields)
        )
    linked = with_account(record, account)
    applied = Applied(
        sobject="Opportunity",
        record_id=None,
        created=None,
        stage=record.fields.get("StageName"),
        account_id=buyer.account_id,
        contact_id=buyer.contact_id,
        contact_role_id=role_id,
        closed_parent=closed_parent,
    )
    if not subrequests and role_id is not None and lines is None:
        result = _upsert(linked, writer)
        return dataclasses.replace(applied, record_id=result.id, created=result.created)
    # After the Account and Contact it refers to, then its lines, before the parent and the role.
    position = sum(1 for s in subrequests if s.reference_id in ("account", "contact"))
    own = [Subrequest.upsert("opportunity", linked), *(lines.subrequests() if lines else ())]
    subrequests[position:position] = own
    if role_id is None:
        role = contact_role_record(order, settings, reference("opportunity"), contact)
        subrequests.append(Subrequest.create("role", role.sobject, role.fields))
    results = writer.composite(subrequests)
    account_id = results["account"]["id"] if buyer.create_account else buyer.account_id
    contact_id = results["contact"]["id"] if buyer.create_contact else buyer.contact_id
    return dataclasses.replace(
        applied,
        record_id=results["opportunity"]["id"],
        created=results["opportunity"].get("created"),
        account_id=account_id,
        contact_id=contact_id,
        contact_role_id=results["role"]["id"] if role_id is None else role_id,
        new_customer=Customer(buyer.email, account_id, contact_id) if buyer.new else None,
        lines=lines.confirmed(results) if lines else None,
    )


def _upsert(record, writer):
    [result] = writer.upsert([record])
    if not result.ok:
        raise result.error
    return result


def _buyer_writes(order, buyer, settings):
    """``(subrequests, account, contact)``: what creates or links the buyer's records, and the
    Account and Contact to link to (ids, or references to records these subrequests create)."""
    subrequests = []
    account = buyer.account_id
    if buyer.create_account:
        new = account_record(order)
        subrequests.append(Subrequest.create("account", new.sobject, new.fields))
        account = reference("account")
    contact = buyer.contact_id
    if buyer.create_contact:
        new = contact_record(order, settings, account)
        subrequests.append(Subrequest.create("contact", new.sobject, new.fields))
        contact = reference("contact")
    elif buyer.link_contact:
        link = contact_account_update(order, buyer.contact_id, account)
        subrequests.append(Subrequest.update("contact", link.sobject, link.record_id, link.fields))
    return subrequests, account, contact


def _known_role(record, state, buyer, writer):
    """The id of the order's contact role for this buyer when Salesforce has it, else None."""
    if state is not None and state.contact_role_id and state.contact_id == buyer.contact_id:
        return state.contact_role_id
    if state is not None and state.in_doubt and buyer.existing_contact:
        # An earlier attempt may have created the role before its worker died.
        return find_contact_role(
            writer, record.external_id_field, record.external_id, buyer.contact_id
        )
    return None


def _closing(order, ledger, settings):
    number = order.parent_increment_id
    if not number:
        return None, None
    return closing_for(order, ledger.order(number), settings)


def closing_for(order, parent, settings):
    """For an edited order: ``(number, update)``, the replaced order's number when this write
    closes it (None once it is closed) and the ``Update`` closing its Opportunity (None when
    Salesforce has none); ``parent`` is the replaced order's ledger state (None: never seen)."""
    number = order.parent_increment_id
    if not number:
        return None, None
    if parent is None:
        return number, None
    if parent.replaced_by == order.increment_id:
        return None, None
    if parent.sobject == "Opportunity" and parent.record_id:
        return number, closing_update(order, parent.record_id, settings)
    return number, None
