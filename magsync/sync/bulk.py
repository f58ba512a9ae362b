"""Many backfilled orders written with Bulk API 2.0: buyers first, one upsert job, roles after.

``write_bulk(documents, services, bulk, outcomes)`` applies whole order documents (as the store's
search returned them) that the ledger has not applied, for a backfill large enough that a call
per 200 orders would still cost too much:

1. Under one lock session holding every order's lock (as a coalesced batch takes them), the
   ledger is read again: a version it applied meanwhile (a live order) is skipped.
2. Buyers: the ledger's customers, then ``resolve_buyers`` for the rest (one SOQL query per
   chunk of emails, one Composite call of Collections creates per 200 new buyers), remembered.
3. One Bulk API 2.0 upsert job per 10,000 Opportunities on the external-id field, each linked to
   its buyer's Account; each success is recorded as applied with its record id.
4. The contact roles the new Opportunities lack, in one Bulk API insert job.

What this path does not write goes the worker's way (``outcomes.publish``, the backfill queue):
an order that is a Lead (a guest in ``lead`` mode) or an admin edit (it closes its parent), one
whose buyer Salesforce refused, one that fails validation (the worker dead-letters it), and the
rows of a job that failed as a whole or with a transient error. A row Salesforce refuses for
good is dead-lettered with its ``sf__Error`` (``outcomes.set_aside``).
"""

import dataclasses
import logging

from magsync.errors import InvalidOrder, RetryLater, classify_salesforce
from magsync.ledger import Applied, Customer, LockName
from magsync.mapping.common import customer_key
from magsync.mapping.customer import contact_role_record
from magsync.mapping.opportunity import with_account
from magsync.mapping.order import load_order
from magsync.salesforce.bulk import parse_error
from magsync.sync.buyers import resolve_buyers
from magsync.sync.pipeline import order_version, primary_record, skip_reason

log = logging.getLogger(__name__)

SOURCE = "bulk"


@dataclasses.dataclass
class Outcomes:
    """Where the orders of a bulk write end: ``publish(documents)`` hands orders to the backfill
    queue (confirmed), ``set_aside(document, error)`` dead-letters one; the counts say how many
    were synced, handed on, and set aside."""

    publish: object
    set_aside: object
    synced: int = 0
    published: int = 0
    failed: int = 0


@dataclasses.dataclass
class _Item:
    document: dict
    order: object
    state: object = None
    record: object = None
    version: object = None
    buyer: object = None


def write_bulk(documents, services, bulk, outcomes):
    """Write ``documents`` (see the module); counts land in ``outcomes``."""
    items, alone = _loaded(documents, services.settings)
    if items:
        numbers = [LockName("order", item.order.increment_id) for item in items]
        with services.ledger.locks() as locks:
            locks.acquire_many(numbers)
            alone += _write_locked(items, services, bulk, outcomes)
    if alone:
        outcomes.publish(alone)
        outcomes.published += len(alone)


def _loaded(documents, settings):
    """``(items, alone)``: orders this path writes, and the documents the worker must take."""
    items, alone = [], []
    for document in documents:
        try:
            order = load_order(document)
        except InvalidOrder:
            alone.append(document)
            continue
        lead = order.customer_is_guest and settings.guest_mode == "lead"
        if lead or order.parent_increment_id:
            alone.append(document)
        else:
            items.append(_Item(document, order))
    return items, alone


def _write_locked(items, services, bulk, outcomes):
    """Steps 1 to 4 under the orders' locks; the documents left for the worker."""
    ledger, settings = services.ledger, services.settings
    states = ledger.orders([item.order.increment_id for item in items])
    todo, skips = [], []
    for item in items:
        item.state = states.get(item.order.increment_id)
        item.record = primary_record(item.order, item.state, settings)
        if item.record.sobject != "Opportunity":
            continue  # an order first written as a Lead stays one
        item.version = order_version(item.order, item.record, SOURCE)
        reason = skip_reason(item.version, item.state)
        if reason is None:
            todo.append(item)
        else:
            skips.append((item.version, reason))
    if skips:
        ledger.skip_many(skips)
        outcomes.synced += len(skips)
    left = [item.document for item in items if item.record.sobject != "Opportunity"]
    refused = _buyers(todo, services)
    left += [item.document for item in refused]
    todo = [item for item in todo if item.buyer is not None]
    if todo:
        left += _upsert(todo, services, bulk, outcomes)
    return left


def _buyers(items, services):
    """Give each item its buyer (a ``Customer``); the items whose buyer Salesforce refused."""
    ledger = services.ledger
    emails = {customer_key(item.order.customer_email) for item in items}
    known = ledger.customers(emails)
    for item in items:
        state, email = item.state, customer_key(item.order.customer_email)
        if state is not None and state.contact_id and state.customer_email == email:
            item.buyer = Customer(email, state.account_id, state.contact_id)
        else:
            item.buyer = known.get(email)
    missing = {}
    for item in items:
        if item.buyer is None:
            missing.setdefault(customer_key(item.order.customer_email), item.order)
    if not missing:
        return []
    resolution = resolve_buyers(missing, services.writer, services.settings)
    ledger.remember_customers(resolution.customers())
    made = {customer.email: customer for customer in resolution.customers()}
    refused = []
    for item in items:
        if item.buyer is None:
            item.buyer = made.get(customer_key(item.order.customer_email))
            if item.buyer is None:
                refused.append(item)
    log.info(
        "bulk buyers resolved",
        extra={"buyers": len(missing), "created": len(resolution.created), "refused": len(refused)},
    )
    return refused


def _upsert(items, services, bulk, outcomes):
    """The Opportunities' job, then their contact roles; the documents left for the worker."""
    ledger = services.ledger
    ledger.begin_many([item.version for item in items])
    rows = [with_account(item.record, item.buyer.account_id).payload() for item in items]
    field = items[0].record.external_id_field
    try:
        results = bulk.upsert("Opportunity", field, rows)
    except RetryLater as exc:
        log.warning("bulk job failed; its orders go to the queue", extra={"error": str(exc)})
        return [item.document for item in items]
    written, left = [], []
    for item, result in zip(items, results, strict=True):
        if result.ok:
            written.append((item, result))
        elif _refused_for_good(item, result.error, services, outcomes):
            outcomes.failed += 1
        else:
            left.append(item.document)
    roles = _roles(written, services, bulk)
    ledger.applied_many([(item.version, _applied(item, result, roles)) for item, result in written])
    outcomes.synced += len(written)
    return left


def _refused_for_good(item, error_text, services, outcomes):
    """Dead-letter a row Salesforce refused for good (True); False for a transient refusal."""
    code, message, fields = parse_error(error_text)
    error = classify_salesforce(400, [{"errorCode": code, "message": message, "fields": fields}])
    if isinstance(error, RetryLater):
        return False
    outcomes.set_aside(item.document, error)
    services.ledger.note(
        item.order.increment_id, "dead_lettered", error, attempt=1, entity_id=item.order.entity_id
    )
    return True


def _roles(written, services, bulk):
    """``{opportunity id: contact role id}`` of the roles created for ``written`` orders that
    lack theirs (one Bulk API insert job; a role that fails is created by the order's next
    write)."""
    rows = []
    for item, result in written:
        contact = item.buyer.contact_id
        state = item.state
        if state is not None and state.contact_role_id and state.contact_id == contact:
            continue
        role = contact_role_record(item.order, services.settings, result.record_id, contact)
        rows.append(role.fields)
    if not rows:
        return {}
    try:
        results = bulk.insert("OpportunityContactRole", rows, "OpportunityId")
    except RetryLater as exc:
        log.warning("bulk contact roles failed", extra={"error": str(exc)})
        return {}
    return {
        row["OpportunityId"]: result.record_id
        for row, result in zip(rows, results, strict=True)
        if result.ok
    }


def _applied(item, result, roles):
    state = item.state
    role_id = roles.get(result.record_id)
    if role_id is None and state is not None and state.contact_id == item.buyer.contact_id:
        role_id = state.contact_role_id
    return Applied(
        sobject="Opportunity",
        record_id=result.record_id,
        created=result.created,
        stage=item.record.fields.get("StageName"),
        account_id=item.buyer.account_id,
        contact_id=item.buyer.contact_id,
        contact_role_id=role_id,
    )
