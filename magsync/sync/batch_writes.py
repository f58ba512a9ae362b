"""The Salesforce writes of a batch of orders: a few calls for all of them.

``write(plans, parents, services, locks)`` writes each ``Plan`` (one order version that is to be
applied) and leaves its ``outcome``: the ``Applied`` Salesforce confirmed, or the failure that
order meets. In order:

1. Leads (a guest's order in ``lead`` mode): one Collections upsert by order number.
2. Buyers: from the order's ledger row or the ledger's customers; the others under their
   customer locks, through ``buyers.resolve_buyers`` (one SOQL query per chunk of emails, one
   Composite call per 200 buyers Salesforce lacks), and remembered in the ledger at once.
3. Opportunities: one Collections upsert by order number, each linked to its buyer's Account,
   in one Composite call with the Collections create of their new contact roles (which refer to
   the upsert's results); should that create fail as a whole (an Opportunity it refers to was
   refused), the roles are created by a call of their own. With line items on, the same call
   carries the orders' lines (``magsync.sync.lines``: the products they need found or made
   first, a delete of the lines orders no longer have, upserts of 200 lines at most); lines
   that do not fit, or whose subrequest failed as a whole, are written by a call of their own.
4. Contact roles the ledger does not know and an earlier attempt may have created (an order in
   doubt whose buyer's Contact existed): looked up (one SOQL query per chunk), created if absent.
5. The Opportunities of the orders edits replaced: closed (one Collections update).

Each call carries up to 200 records (more make more calls). A record Salesforce refuses fails
only its order; a call that fails as a whole fails the orders it carried, with one shared cause
(``failed_call``), so the worker's circuit breaker counts it once. An Account or Contact the
ledger remembered but Salesforce no longer has (deleted, merged) is forgotten and the order
retried, when it looks the buyer up again.
"""

import copy
import logging
from dataclasses import dataclass

from magsync.errors import DeadLetter, RetryLater, SyncError, classify_salesforce
from magsync.ledger import Applied, LockName
from magsync.mapping.common import customer_key
from magsync.mapping.customer import contact_role_record
from magsync.mapping.opportunity import with_account
from magsync.salesforce.lookups import find_contact_roles, role_of
from magsync.salesforce.writer import Subrequest, record_results, reference
from magsync.sync.buyers import resolve_buyers
from magsync.sync.lines import REFUSED_ENTRY, batch_results, batch_subrequests, plan_batch
from magsync.sync.products import forget
from magsync.sync.writes import STALE_REFERENCES, closing_for

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class BatchBuyer:
    """A buyer's Account and Contact for a batch's write. ``existing``: the Contact was there
    before this batch (an earlier attempt may have given it a role); ``remembered``: the ids come
    from the ledger (Salesforce may have deleted them since)."""

    email: str
    account_id: str | None
    contact_id: str
    existing: bool = True
    remembered: bool = True


@dataclass
class Plan:
    """One order version of a batch that is to be written, and what became of it."""

    index: int
    order: object
    state: object  # the order's ledger state before the batch (None: never seen)
    record: object
    version: object
    summary: dict
    attempt: int = 1
    buyer: BatchBuyer | None = None
    written: object = None  # the UpsertResult of the order's own record
    role_id: str | None = None
    closed_parent: str | None = None
    outcome: object = None  # Applied, or the failure
    lines: object = None  # the order's LineWrite (line items), else None
    line_ids: dict | None = None  # what Salesforce confirmed of its lines

    @property
    def open(self):
        return self.outcome is None


def shared(exc):
    """``exc`` marked as the failure of one call that many orders meet (``failed_call``)."""
    if getattr(exc, "failed_call", None) is None:
        exc.failed_call = object()
    return exc


def fail(plans, exc):
    """Give each of ``plans`` still open its own copy of ``exc``, the failure of one call."""
    shared(exc)
    for plan in plans:
        if plan.open:
            plan.outcome = copy.copy(exc)


def _open(plans):
    return [plan for plan in plans if plan.open]


def write(plans, parents, services, locks):
    """Write ``plans``; ``parents`` are the ledger states of the orders edits replaced."""
    leads = [plan for plan in plans if plan.record.sobject == "Lead"]
    opportunities = [plan for plan in plans if plan.record.sobject != "Lead"]
    if leads:
        _upsert(leads, [plan.record for plan in leads], services.writer)
    if opportunities:
        _buyers(opportunities, services, locks)
        live = _open(opportunities)
        _upsert_with_roles(live, services, locks)
        _forget_refused_buyers(live, services.ledger)
        _roles(_open(live), services)
        _forget_refused_buyers(live, services.ledger)
        _closings(_open(live), parents, services)
    for plan in _open(plans):
        plan.outcome = _applied(plan)


def _upsert(plans, records, writer):
    if not plans:
        return
    try:
        results = writer.upsert(records)
    except SyncError as exc:
        fail(plans, exc)
        return
    _take_results(plans, results)


def _upsert_with_roles(plans, services, locks=None):
    """Upsert the Opportunities and create the roles known to be new, with the orders' line
    items (``SALESFORCE_LINE_ITEMS``), in one Composite call."""
    records = [with_account(plan.record, plan.buyer.account_id) for plan in plans]
    for plan in plans:
        _known_role(plan)
    try:
        writes = plan_batch(plans, services, locks, lambda i: reference(f"opportunities[{i}]"))
    except SyncError as exc:  # the batch's products could not be found or made
        fail(plans, exc)
        return
    for plan, lines in zip(plans, writes, strict=True):
        plan.lines = lines
    eager = [
        (index, plan)
        for index, plan in enumerate(plans)
        if plan.role_id is None and not _doubtful(plan)
    ]
    # Lines too many for one call are written after the orders (``_lines_after``).
    line_subrequests = batch_subrequests(writes) or []
    if (len(plans) == 1 or not eager) and not line_subrequests:
        _upsert(plans, records, services.writer)
        _take_lines(plans, {}, services)
        return
    roles = [
        contact_role_record(
            plan.order,
            services.settings,
            reference(f"opportunities[{index}]"),
            plan.buyer.contact_id,
        )
        for index, plan in eager
    ]
    subrequests = [Subrequest.upsert_many("opportunities", records), *line_subrequests]
    if roles:
        subrequests.append(Subrequest.create_many("roles", roles))
    try:
        answers = {a.reference_id: a for a in services.writer.composite_each(subrequests)}
    except SyncError as exc:
        fail(plans, exc)
        return
    upserted = answers["opportunities"]
    if not upserted.ok or not isinstance(upserted.body, list):
        fail(plans, classify_salesforce(upserted.status, upserted.body))
        return
    _take_results(plans, record_results(records, upserted.body))
    _take_lines(plans, answers, services)
    _take_roles([plan for _, plan in eager], roles, answers.get("roles"))


def _take_roles(eager_plans, roles, created):
    if created is None or not created.ok or not isinstance(created.body, list):
        # No role was made (a reference to a refused Opportunity fails the whole
        # subrequest): ``_roles`` creates them.
        return
    for plan, result in zip(eager_plans, record_results(roles, created.body), strict=True):
        if not plan.open:
            continue
        if result.ok:
            plan.role_id = result.id
        else:
            plan.outcome = result.error


def _take_lines(plans, answers, services):
    """Each plan's line results from the Composite ``answers``; lines left unwritten (a
    subrequest referred to a refused Opportunity, or they did not fit) are written on their
    own."""
    batch_results(plans, answers)
    _lines_after(plans, services)


def _lines_after(plans, services):
    """Write the lines still unwritten of the open plans, with their Opportunities' ids."""
    live = []
    for plan in plans:
        if not plan.open or plan.lines is None or plan.line_ids is not None:
            continue
        if not plan.lines.records and not plan.lines.vanished:
            plan.line_ids = {}
            continue
        plan.lines = plan.lines.linked_to(plan.written.id)
        live.append(plan)
    groups = [live] if batch_subrequests([p.lines for p in live], room=5) else [[p] for p in live]
    for group in groups:
        if not group:
            continue
        subrequests = batch_subrequests([plan.lines for plan in group], room=5)
        try:
            answers = {a.reference_id: a for a in services.writer.composite_each(subrequests)}
        except SyncError as exc:
            fail(group, exc)
            continue
        batch_results(group, answers)
    for plan in plans:
        _line_outcome(plan, services)


def _line_outcome(plan, services):
    if not plan.open or plan.lines is None:
        return
    if isinstance(plan.line_ids, SyncError):
        error, plan.line_ids = plan.line_ids, None
        codes = {e.get("errorCode") for e in error.errors}
        if codes & REFUSED_ENTRY:
            forget(plan.lines.skus, services)
            error = RetryLater(
                f"{error}; its products are looked up again",
                reason="stale_product",
                status=error.status,
            )
        plan.outcome = error


def _take_results(plans, results):
    for plan, result in zip(plans, results, strict=True):
        if result.ok:
            plan.written = result
        else:
            plan.outcome = result.error


def _applied(plan):
    if plan.record.sobject == "Lead":
        return Applied(sobject="Lead", record_id=plan.written.id, created=plan.written.created)
    return Applied(
        sobject="Opportunity",
        record_id=plan.written.id,
        created=plan.written.created,
        stage=plan.record.fields.get("StageName"),
        account_id=plan.buyer.account_id,
        contact_id=plan.buyer.contact_id,
        contact_role_id=plan.role_id,
        closed_parent=plan.closed_parent,
        lines=plan.line_ids,
    )


# -- buyers -------------------------------------------------------------------------------------


def _buyers(plans, services, locks):
    """Give each plan its ``BatchBuyer``, or the failure to find or make the buyer."""
    waiting = {}
    for plan in plans:
        email = customer_key(plan.order.customer_email)
        state = plan.state
        if state is not None and state.contact_id and state.customer_email == email:
            plan.buyer = BatchBuyer(email, state.account_id, state.contact_id)
        else:
            waiting.setdefault(email, []).append(plan)
    if not waiting:
        return
    found = {
        email: BatchBuyer(email, customer.account_id, customer.contact_id)
        for email, customer in services.ledger.customers(waiting).items()
    }
    missing = [email for email in waiting if email not in found]
    if missing:
        # As one order's write does: the buyer's lock, then the ledger again (another worker
        # may have made them meanwhile), then Salesforce.
        locks.acquire_many([LockName("customer", email) for email in missing])
        found.update(_remembered(services.ledger, missing))
        found.update(_resolved([e for e in missing if e not in found], waiting, services))
    for email, group in waiting.items():
        buyer = found[email]
        if isinstance(buyer, BaseException):
            fail(group, buyer)
        else:
            for plan in group:
                plan.buyer = buyer


def _remembered(ledger, emails):
    return {
        email: BatchBuyer(email, customer.account_id, customer.contact_id)
        for email, customer in ledger.customers(emails).items()
    }


def _resolved(emails, waiting, services):
    """``{email: BatchBuyer or failure}`` of buyers the ledger does not know."""
    if not emails:
        return {}
    orders = {email: waiting[email][0].order for email in emails}
    try:
        resolution = resolve_buyers(orders, services.writer, services.settings)
    except SyncError as exc:
        return {email: exc for email in emails}
    services.ledger.remember_customers(resolution.customers())
    buyers = dict(resolution.failed)
    for email, customer in resolution.found.items():
        buyers[email] = BatchBuyer(email, customer.account_id, customer.contact_id, True, False)
    for email, customer in resolution.created.items():
        buyers[email] = BatchBuyer(email, customer.account_id, customer.contact_id, False, False)
    return buyers


def _forget_refused_buyers(plans, ledger):
    """Orders Salesforce refused because a remembered Account or Contact is gone: forget the
    buyer and retry the order, which then looks them up again."""
    forgotten = set()
    for plan in plans:
        error = plan.outcome
        if not isinstance(error, DeadLetter) or not plan.buyer.remembered:
            continue
        if not {e.get("errorCode") for e in error.errors} & STALE_REFERENCES:
            continue
        if plan.buyer.email not in forgotten:
            log.warning(
                "remembered customer refused by salesforce",
                extra={"order": plan.order.increment_id, "reason": error.reason},
            )
            ledger.forget_customer(plan.buyer.email)
            forgotten.add(plan.buyer.email)
        plan.outcome = RetryLater(
            "Salesforce no longer has the buyer's Account or Contact; looked up again on retry",
            reason="customer_refused",
            system="magsync",
            status=error.status,  # Salesforce answered: nothing of the write can land later
        )


# -- contact roles and edits --------------------------------------------------------------------


def _known_role(plan):
    """The role the ledger knows for the order and its buyer, when it does."""
    state = plan.state
    if state is not None and state.contact_role_id and state.contact_id == plan.buyer.contact_id:
        plan.role_id = state.contact_role_id


def _doubtful(plan):
    # An earlier attempt may have created the role before its worker died.
    return plan.state is not None and plan.state.in_doubt and plan.buyer.existing


def _roles(plans, services):
    """Find or create each order's contact role still unknown (see the module)."""
    for plan in plans:
        _known_role(plan)
    need = [plan for plan in plans if plan.role_id is None]
    _roles_in_doubt(need, services.writer)
    create = [plan for plan in need if plan.open and plan.role_id is None]
    if not create:
        return
    records = [
        contact_role_record(plan.order, services.settings, plan.written.id, plan.buyer.contact_id)
        for plan in create
    ]
    try:
        results = services.writer.create(records)
    except SyncError as exc:
        fail(create, exc)
        return
    for plan, result in zip(create, results, strict=True):
        if result.ok:
            plan.role_id = result.id
        else:
            plan.outcome = result.error


def _roles_in_doubt(plans, writer):
    doubtful = [plan for plan in plans if _doubtful(plan)]
    if not doubtful:
        return
    try:
        roles = find_contact_roles(writer, [plan.written.id for plan in doubtful])
    except SyncError as exc:
        fail(doubtful, exc)
        return
    for plan in doubtful:
        plan.role_id = role_of(roles, plan.written.id, plan.buyer.contact_id)


def _closings(plans, parents, services):
    """Close the Opportunity of each order an edit of the batch replaced."""
    updates = []
    for plan in plans:
        parent = plan.order.parent_increment_id
        closed, update = closing_for(plan.order, parents.get(parent), services.settings)
        plan.closed_parent = closed
        if update is not None:
            updates.append((plan, update))
    if not updates:
        return
    try:
        results = services.writer.update([update for _, update in updates])
    except SyncError as exc:
        fail([plan for plan, _ in updates], exc)
        return
    for (plan, _), result in zip(updates, results, strict=True):
        if not result.ok:
            plan.outcome = result.error
