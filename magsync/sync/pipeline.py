"""One order event through the pipeline: fetch the truth, decide under the order's lock, write.

``sync_order(event, services)`` is a plain function (the Celery task is a thin shell around it),
so it is tested without a broker. It raises the outcomes of ``magsync.errors``; the caller
decides what retrying or dead-lettering means. Step by step:

1. The order: from Magento REST when configured (the store is the truth: the fetched order's
   ``updated_at`` is the version applied, whatever the event carried), else the event's payload.
   It is validated before anything else happens (``InvalidOrder``).
2. Under the order's lock (``magsync.ledger.locks``: one holder across all workers and hosts),
   the ledger decides. The version is the order's ``updated_at`` and the hash of the fields it
   maps to. Older than the last applied version: skipped as stale. The same fields as the last
   applied version: skipped as unchanged, without any Salesforce call.
3. The write, for an order Salesforce already has, is one upsert by external id, linked to the
   buyer's Account from the ledger. An order's first write is one Composite call, all or none:
   the buyer's Account and Contact when they are new (looked up by email first, one SOQL query,
   under the buyer's lock, so two first orders of one buyer make one Account and one Contact),
   the Opportunity upsert with ``AccountId``, its contact role, and for an edited order the
   parent's Opportunity set to lost with a note naming the replacement. A guest's order in
   ``lead`` mode is one Lead upsert.
4. The ledger records the version as applied only after Salesforce confirmed it. A worker that
   dies between the two leaves the write "in doubt": the redelivered event applies the same
   version again, which the upsert by external id makes harmless, and checks for the contact
   role (the one write that is not an upsert) before creating it.
"""

import dataclasses
import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass

from magsync import redact
from magsync.errors import DeadLetter, InvalidOrder
from magsync.ledger import Applied, Customer, Ledger, Version
from magsync.magento.client import MagentoClient
from magsync.magento.fields import too_far_ahead
from magsync.mapping.common import customer_key, storable_email
from magsync.mapping.customer import account_fields, contact_fields
from magsync.mapping.lead import lead_record
from magsync.mapping.opportunity import opportunity_record, replaced_note, replaced_stage
from magsync.mapping.order import load_order
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.lookups import find_contact, find_contact_role
from magsync.salesforce.writer import (
    SalesforceWriter,
    Subrequest,
    build_session,
    reference,
)

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# What Salesforce answers when a write refers to a record that was deleted or merged away.
STALE_REFERENCES = {"INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"}


@dataclass
class Services:
    """What a worker process needs to sync orders; built once per process."""

    settings: object
    writer: SalesforceWriter
    magento: MagentoClient | None
    ledger: Ledger

    @classmethod
    def build(cls, settings):
        """Nothing here connects: the ledger and the token are fetched on first use."""
        session = build_session(settings)
        tokens = TokenProvider(settings, session)
        magento = MagentoClient(settings) if settings.magento_rest_enabled else None
        writer = SalesforceWriter(settings, tokens, session)
        return cls(settings, writer, magento, Ledger(settings))

    def close(self):
        self.ledger.close()
        self.writer.session.close()
        if self.magento is not None:
            self.magento.session.close()


_services = {}
_services_lock = threading.Lock()


def services_for(settings):
    """The current process's ``Services`` (forked worker children build their own)."""
    key = (os.getpid(), id(settings))
    with _services_lock:
        if key not in _services:
            _services[key] = Services.build(settings)
        return _services[key]


def sync_order(event, services):
    """Sync the order an event names; returns what was done (for logs, Flower, the task shell).

    The result has ``skipped`` (``stale`` or ``unchanged``) when nothing was written.
    """
    if services.magento is not None:
        document = services.magento.get_order(event["entity_id"])
        source = "rest"
        redact.remember(document)  # the store's version may name the buyer differently
    else:
        document = event["order"]
        source = "webhook"
    order = load_order(document)
    if source == "webhook" and too_far_ahead(order.updated_at, services.settings.max_clock_skew):
        # The receiver refuses these; one queued before it did must not poison the ledger.
        raise InvalidOrder(
            "Magento order failed validation",
            errors=[{"updated_at": ["Lies more than MAGSYNC_MAX_CLOCK_SKEW in the future."]}],
        )
    services.ledger.ready()
    with services.ledger.locks() as locks:
        return _apply(order, source, services, locks)


# -- deciding -----------------------------------------------------------------------------------


def primary_record(order, state, settings):
    """The order's own record: its Opportunity, or its Lead (a guest's order in ``lead`` mode).

    An order keeps the kind of record it was first written as, should the setting change.
    """
    if state is not None and state.sobject:
        sobject = state.sobject
    elif order.customer_is_guest and settings.guest_mode == "lead":
        sobject = "Lead"
    else:
        sobject = "Opportunity"
    if sobject == "Lead":
        return lead_record(order, settings)
    replaced_by = order.relation_child_real_id or (state.replaced_by if state else None)
    previous_stage = state.stage if state else None
    return opportunity_record(order, settings, previous_stage, replaced_by=replaced_by)


def record_hash(record):
    """SHA-256 of what a write would send (object and fields, links excluded)."""
    document = {"sobject": record.sobject, "fields": record.fields}
    text = json.dumps(document, sort_keys=True, ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def skip_reason(version, state):
    """``stale``, ``unchanged`` or None (apply) for ``version`` given the order's ledger state.

    Two versions with one ``updated_at`` (Magento keeps seconds) but different fields cannot be
    ordered; the later arrival is applied rather than dropped.
    """
    if state is None or state.updated_at is None:
        return None
    if version.updated_at.replace(tzinfo=None) < state.updated_at:
        return "stale"
    if version.payload_hash == state.payload_hash:
        return "unchanged"
    return None


def _apply(order, source, services, locks):
    settings, ledger = services.settings, services.ledger
    locks.acquire("order", order.increment_id)
    parent_number = order.parent_increment_id
    if parent_number:
        # Always after the edited order's own lock: locks are taken child first, everywhere.
        locks.acquire("order", parent_number)
    state = ledger.order(order.increment_id)
    record = primary_record(order, state, settings)
    version = Version(
        increment_id=order.increment_id,
        entity_id=order.entity_id,
        store_id=order.store_id,
        updated_at=order.updated_at,
        payload_hash=record_hash(record),
        state=order.state,
        customer_email=customer_key(order.customer_email),
        source=source,
        parent_increment_id=parent_number,
    )
    summary = {
        "order": order.increment_id,
        "updated_at": order.updated_at.strftime(TIME_FORMAT),
        "state": order.state,
        "source": source,
    }
    reason = skip_reason(version, state)
    if reason is not None:
        ledger.skip(version, reason)
        summary["skipped"] = reason
        log.info("order event skipped", extra=summary)
        return summary

    attempt = ledger.begin(version)
    calls_before = services.writer.calls
    if record.sobject == "Lead":
        applied = _write_lead(record, services)
    else:
        applied = _write_opportunity(order, record, state, services, locks)
    applied = dataclasses.replace(applied, api_calls=services.writer.calls - calls_before)
    ledger.applied(version, applied)
    summary.update(
        sobject=applied.sobject,
        sf_id=applied.record_id,
        sf_created=applied.created,
        stage=applied.stage,
        account=applied.account_id,
        api_calls=applied.api_calls,
        attempt=attempt,
    )
    message = "opportunity upserted" if applied.sobject == "Opportunity" else "lead upserted"
    # Keys of ``extra`` must not collide with LogRecord attributes ("created", "name", ...).
    log.info(message, extra={**summary, "api_usage": services.writer.last_api_usage})
    return summary


# -- writing ------------------------------------------------------------------------------------


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


def _buyer(order, state, services, locks, fresh=False):
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
    # An address Salesforce cannot hold in an Email field is in no Contact's Email: only the
    # ledger knows its buyer.
    found = find_contact(services.writer, email) if storable_email(email) else None
    if found is None:
        return Buyer(email, None, None, create_account=True, create_contact=True, new=True)
    contact_id, account_id = found
    if account_id is None:
        return Buyer(email, None, contact_id, create_account=True, link_contact=True, new=True)
    return Buyer(email, account_id, contact_id, new=True)


def _write_lead(record, services):
    [result] = services.writer.upsert([record])
    if not result.ok:
        raise result.error
    return Applied(sobject="Lead", record_id=result.id, created=result.created)


def _write_opportunity(order, record, state, services, locks, fresh=False):
    buyer = _buyer(order, state, services, locks, fresh)
    try:
        return _write_linked(order, record, state, services, buyer)
    except DeadLetter as exc:
        refused = {e.get("errorCode") for e in exc.errors} & STALE_REFERENCES
        if fresh or buyer.new or not refused:
            raise
    # The Account or Contact the ledger remembers was deleted or merged in Salesforce: forget
    # it, look the buyer up again and write once more.
    log.warning(
        "remembered customer refused by salesforce",
        extra={"order": order.increment_id, "reason": ",".join(sorted(refused))},
    )
    services.ledger.forget_customer(buyer.email)
    return _write_opportunity(order, record, state, services, locks, fresh=True)


def _write_linked(order, record, state, services, buyer):
    settings, writer, ledger = services.settings, services.writer, services.ledger
    subrequests = []

    account = buyer.account_id
    if buyer.create_account:
        subrequests.append(Subrequest.create("account", "Account", account_fields(order)))
        account = reference("account")
    contact = buyer.contact_id
    if buyer.create_contact:
        fields = {**contact_fields(order, settings), "AccountId": account}
        subrequests.append(Subrequest.create("contact", "Contact", fields))
        contact = reference("contact")
    elif buyer.link_contact:
        subrequests.append(
            Subrequest.update("contact", "Contact", buyer.contact_id, {"AccountId": account})
        )

    role_id = None
    if state is not None and state.contact_role_id and state.contact_id == buyer.contact_id:
        role_id = state.contact_role_id
    elif state is not None and state.in_doubt and buyer.existing_contact:
        # An earlier attempt may have created the role before its worker died.
        role_id = find_contact_role(
            writer, record.external_id_field, record.external_id, buyer.contact_id
        )

    parent_number = order.parent_increment_id
    parent = ledger.order(parent_number) if parent_number else None
    close_parent = bool(parent_number) and (
        parent is None or parent.replaced_by != order.increment_id
    )
    if close_parent and parent is not None and parent.sobject == "Opportunity" and parent.record_id:
        closing = {
            "StageName": replaced_stage(settings),
            settings.sf_replaced_note_field: replaced_note(order.increment_id),
        }
        subrequests.append(Subrequest.update("parent", "Opportunity", parent.record_id, closing))

    linked = dataclasses.replace(record, fields={**record.fields, "AccountId": account})
    stage = record.fields.get("StageName")
    if not subrequests and role_id is not None:
        [result] = writer.upsert([linked])
        if not result.ok:
            raise result.error
        return Applied(
            sobject="Opportunity",
            record_id=result.id,
            created=result.created,
            stage=stage,
            account_id=buyer.account_id,
            contact_id=buyer.contact_id,
            contact_role_id=role_id,
            closed_parent=parent_number if close_parent else None,
        )

    subrequests.insert(_opportunity_position(subrequests), Subrequest.upsert("opportunity", linked))
    if role_id is None:
        role = {
            "OpportunityId": reference("opportunity"),
            "ContactId": contact,
            "Role": settings.sf_contact_role,
            "IsPrimary": True,
        }
        subrequests.append(Subrequest.create("role", "OpportunityContactRole", role))
    results = writer.composite(subrequests)
    opportunity = results["opportunity"]
    account_id = results["account"]["id"] if buyer.create_account else buyer.account_id
    contact_id = results["contact"]["id"] if buyer.create_contact else buyer.contact_id
    return Applied(
        sobject="Opportunity",
        record_id=opportunity["id"],
        created=opportunity.get("created"),
        stage=stage,
        account_id=account_id,
        contact_id=contact_id,
        contact_role_id=results["role"]["id"] if role_id is None else role_id,
        new_customer=Customer(buyer.email, account_id, contact_id) if buyer.new else None,
        closed_parent=parent_number if close_parent else None,
    )


def _opportunity_position(subrequests):
    # After the Account and Contact it refers to, before the parent update and the role.
    return sum(1 for s in subrequests if s.reference_id in ("account", "contact"))


# -- outcomes the task shell decides ------------------------------------------------------------


def note_outcome(event, services, kind, error=None, attempt=None):
    """Record what became of an event that did not sync: ``retried`` or ``dead_lettered``.

    Called by the task shell, which decides retries and dead letters. The ledger keeps it in the
    order's history; a ledger that cannot be written is logged, never raised (the shell's
    decision stands either way).
    """
    number = event.get("increment_id")
    log.info(
        "order event outcome",
        extra={
            "order": number,
            "outcome": kind,
            "reason": getattr(error, "reason", None),
            "attempt": attempt,
        },
    )
    if not number:
        return
    try:
        services.ledger.ready()
        services.ledger.note(str(number), kind, error, attempt, entity_id=event.get("entity_id"))
    except Exception:  # recording the outcome must not change it
        log.warning("ledger did not record the outcome", exc_info=True, extra={"order": number})
