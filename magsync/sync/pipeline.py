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
3. The write (``magsync.sync.writes``), for an order Salesforce already has, is one upsert by
   external id, linked to the buyer's Account from the ledger. An order's first write is one
   Composite call, all or none: the buyer's Account and Contact when they are new (found by
   ``magsync.sync.buyers``: looked up by email first, one SOQL query, under the buyer's lock, so
   two first orders of one buyer make one Account and one Contact), the Opportunity upsert with
   ``AccountId``, its contact role, and for an edited order the parent's Opportunity set to lost
   with a note naming the replacement. A guest's order in ``lead`` mode is one Lead upsert.
   Every field written comes from ``magsync.mapping``.
4. The ledger records the version as applied only after Salesforce confirmed it. A worker that
   dies between the two leaves the write "in doubt": the redelivered event applies the same
   version again, which the upsert by external id makes harmless, and checks for the contact
   role (the one write that is not an upsert) before creating it. A write that failed is
   recorded ``failed`` when Salesforce answered, ``unanswered`` when a call of it may still
   land; while one may (``late_write_possible``), a write that would create records waits
   (``interrupted_write``) and an upsert is written again later.

``sync_order`` is ``prepare`` (step 1, and the duplicate check) then ``apply_one`` (steps 2 to 4).
A coalescing worker prepares each event in its own task and hands the ``Prepared`` order to the
process's coalescer (``magsync.sync.coalescer``), which applies many at once
(``magsync.sync.batch``) with the same decisions (``primary_record``, ``skip_reason``).
"""

import dataclasses
import datetime as dt
import hashlib
import json
import logging
from dataclasses import dataclass

from magsync import redact
from magsync.errors import Deferred, InvalidOrder, answered, classify_magento
from magsync.ledger import LedgerUnavailable, LockName, Version
from magsync.magento.fields import too_far_ahead
from magsync.mapping.common import customer_key
from magsync.mapping.lead import lead_record
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order

# The task shell finds all it calls here: the per-process services too.
from magsync.sync.writes import write_lead, write_opportunity

log = logging.getLogger(__name__)

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
# What Magento answers ``GET /V1/orders/{id}`` for an order it does not have (404).
NOT_IN_STORE = "The entity that was requested doesn't exist. Verify the entity and try again."
# The sources of events published by magsync's own walks of the store.
WALK_SOURCES = {"backfill": "backfill", "reconcile": "reconcile"}


@dataclass(frozen=True)
class Prepared:
    """An order event ready to apply: the order as loaded, where it came from (``rest``,
    ``webhook``, ``reconcile`` or ``backfill``) and the sender's event id, if any."""

    event: dict
    order: object
    source: str
    event_id: str | None = None
    tied: bool = False  # another event of the batch has its updated_at and other fields
    recheck: bool = False  # a late-write check: written even when the ledger has its fields
    document: dict | None = None  # the store's order as read (None: not read, or the payload)


def sync_order(event, services):
    """Sync the order an event names; returns what was done (for logs, Flower, the task shell).

    The result has ``skipped`` (``stale``, ``unchanged`` or ``duplicate``) when nothing was
    written. An event whose sender repeats its id on redelivery (``adobe_event_id``) and whose
    id the ledger has recorded is a duplicate: skipped before Magento or Salesforce is asked.
    """
    prepared = prepare(event, services)
    if not isinstance(prepared, Prepared):
        return prepared
    return apply_one(prepared, services)


def prepare(event, services, read=True):
    """The ``Prepared`` order of ``event``, or the summary of a duplicate skipped (see
    ``sync_order``). Raises ``InvalidOrder`` for an order that fails validation.

    With ``read=False`` an order the store is asked for is left unread (``order`` None) for
    ``read_orders`` to read with others.
    """
    services.ledger.ready()
    _prune_event_ids(services.ledger)
    event_id = event.get("adobe_event_id")
    recheck = bool(event.get("recheck"))
    if event_id and services.ledger.event_applied(event_id):
        return _skip_duplicate(event, event_id, services.ledger)
    # A walk of the store names itself (``backfill``); a webhook's event is read back.
    rest_source = WALK_SOURCES.get(event.get("source"), "rest")
    if services.magento is not None and not read:
        return Prepared(event, None, rest_source, event_id, recheck=recheck)
    if services.magento is not None:
        document = services.magento.get_order(event["entity_id"])
        source = rest_source
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
    return Prepared(event, order, source, event_id, recheck=recheck)


def read_orders(prepared, services):
    """``prepared`` with each unread order (``prepare(read=False)``) read from the store, all in
    one search (``MagentoClient.get_orders``); in an order's place its own failure (not in the
    store: ``magento_order_not_found``; ``InvalidOrder``), or the search's when it failed."""
    unread = [item for item in prepared if item.order is None]
    if not unread:
        return list(prepared)
    try:
        documents = services.magento.get_orders([item.event["entity_id"] for item in unread])
    except Exception as exc:  # the search itself: every unread order meets it
        return [exc if item.order is None else item for item in prepared]
    return [item if item.order is not None else _read(item, documents) for item in prepared]


def _read(prepared, documents):
    document = documents.get(int(prepared.event["entity_id"]))
    if document is None:
        return classify_magento(404, {"message": NOT_IN_STORE})
    redact.remember(document)
    try:
        return dataclasses.replace(prepared, order=load_order(document), document=document)
    except InvalidOrder as exc:
        return exc


def apply_one(prepared, services):
    """Apply one prepared order under its locks (steps 2 to 4 of the module)."""
    with services.ledger.locks() as locks:
        return _apply(prepared, services, locks)


def order_locks(order):
    """The order's lock and its parent's (an edit's), as ``LockName`` in the global order's
    terms: the edit depth is ``edit_increment`` (1 when an edit does not say)."""
    parent = order.parent_increment_id
    if not parent:
        return [LockName("order", order.increment_id)]
    depth = max(1, order.edit_increment or 1)
    return [LockName("order", order.increment_id, depth), LockName("order", parent, depth - 1)]


def _skip_duplicate(event, event_id, ledger):
    number = str(event["increment_id"])
    ledger.skip_duplicate(number, event_id)
    summary = {"order": number, "event_id": event_id, "skipped": "duplicate"}
    log.info("order event skipped", extra=summary)
    return summary


def _prune_event_ids(ledger):
    """Forget old event ids now and then; a failure here must not hold up the order."""
    try:
        pruned = ledger.prune_events_if_due()
    except LedgerUnavailable:
        log.warning("event ids not pruned", exc_info=True)
        return
    if pruned:
        log.info("event ids pruned", extra={"pruned": pruned})


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
    """SHA-256 of what a write would send (object and fields, links excluded; line items when
    the record has them)."""
    document = {"sobject": record.sobject, "fields": record.fields}
    if record.children:
        document["children"] = [dataclasses.asdict(child) for child in record.children]
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


def decision(version, state, recheck=False):
    """``skip_reason``, except that a late-write check writes an unchanged version again."""
    reason = skip_reason(version, state)
    return None if recheck and reason == "unchanged" else reason


def late_write_possible(state, settings, now=None):
    """A write of this order that may still land began within ``MAGSYNC_LATE_WRITE_WINDOW``.

    A call that timed out, or whose worker died, may still be carried out by Salesforce after a
    newer version was written, and put the older version back. A write made now is therefore
    written again once the window has passed (the task shell publishes a ``recheck`` task of
    its own): by then the earlier call has landed or never will. A call Salesforce answered
    with a failure wrote nothing and cannot land later; the ledger keeps which it was, also
    once the order is dead-lettered (``OrderState.interrupted``).
    """
    return _late_write_wait(state, settings, now) > 0


def _late_write_wait(state, settings, now=None):
    if state is None or not state.interrupted:
        return 0.0
    now = now or dt.datetime.now(dt.UTC).replace(tzinfo=None)
    elapsed = (now - state.apply_started_at).total_seconds()
    return max(0.0, settings.late_write_window - elapsed)


def interrupted_write(record, state, settings, now=None):
    """The ``Deferred`` to raise when ``record`` must not be written yet, else None.

    An upsert by external id written now and again after the window (``late_write_possible``)
    ends right whatever lands in between. A write that creates records (the buyer's Account and
    Contact, the contact role, line items) does not: it looks them up first when the earlier
    write is in doubt, but a call that lands after the lookup creates them a second time. Such a
    write waits, in the broker, until the earlier call has landed or never will.
    """
    if record.sobject != "Opportunity":
        return None
    creates = not (state and state.record_id and state.contact_role_id) or settings.sf_line_items
    wait = _late_write_wait(state, settings, now) if creates else 0.0
    if wait <= 0:
        return None
    return Deferred(
        "an earlier write of the order may still land; written once it no longer can",
        reason="interrupted_write",
        wait=wait,
    )


def failure_status(error, state, settings):
    """The ledger status of an order whose write failed with ``error``: ``failed`` when
    Salesforce answered it and no earlier write of it may still land, else ``unanswered``
    (``OrderState.interrupted``)."""
    if answered(error) and not late_write_possible(state, settings):
        return "failed"
    return "unanswered"


def _apply(prepared, services, locks):
    order, source = prepared.order, prepared.source
    # The edited order before its parent, as every session takes them (``magsync.ledger.locks``).
    locks.acquire_many(order_locks(order))
    state = services.ledger.order(order.increment_id)
    order, record, version = planned(
        order, state, source, prepared.event_id, services, tied=prepared.tied
    )
    summary = order_summary(order, source)
    reason = decision(version, state, prepared.recheck)
    if reason is not None:
        services.ledger.skip(version, reason)
        return report_skipped(summary, reason)
    deferred = interrupted_write(record, state, services.settings)
    if deferred is not None:
        raise deferred
    if late_write_possible(state, services.settings):
        summary["recheck"] = True
    return _write(order, record, state, version, services, locks, summary)


def planned(order, state, source, event_id, services, tied=False):
    """``(order, record, version)`` to decide on, under the order's lock.

    Magento keeps ``updated_at`` to the second, so two saves within one second (placed and
    invoiced by one request, a refund right after) are two versions with one ``updated_at``.
    When the version in hand ties with the ledger's (or, with ``tied``, with another event of the
    batch) and maps to other fields, which is newer cannot be told from the two: this one may
    have been read before the other was saved and reached the lock after it. The store is read
    again, under the lock, and that version is the one decided on: it is at least as new as any
    version a worker applied before the lock was taken. Without REST the later arrival wins.
    """
    record = primary_record(order, state, services.settings)
    version = order_version(order, record, source, event_id)
    if services.magento is not None and (tied or ties(version, state)):
        document = services.magento.get_order(order.entity_id)
        redact.remember(document)
        order = load_order(document)
        record = primary_record(order, state, services.settings)
        version = order_version(order, record, source, event_id)
    return order, record, version


def ties(version, state):
    """``version`` has the ``updated_at`` of the ledger's last applied version, other fields."""
    return (
        state is not None
        and state.updated_at is not None
        and version.updated_at.replace(tzinfo=None) == state.updated_at
        and version.payload_hash != state.payload_hash
    )


def order_summary(order, source):
    """What a sync's result and log lines say of every order."""
    return {
        "order": order.increment_id,
        "updated_at": order.updated_at.strftime(TIME_FORMAT),
        "state": order.state,
        "source": source,
    }


def report_skipped(summary, reason):
    """``summary`` of an event skipped for ``reason``, logged."""
    summary["skipped"] = reason
    log.info("order event skipped", extra=summary)
    return summary


def report_applied(summary, applied, attempt, api_usage):
    """``summary`` of a version Salesforce confirmed (``applied``), logged."""
    summary.update(
        sobject=applied.sobject,
        sf_id=applied.record_id,
        sf_created=applied.created,
        stage=applied.stage,
        account=applied.account_id,
        api_calls=applied.api_calls,
        attempt=attempt,
    )
    if applied.batch is not None:
        summary["batch"] = applied.batch
    message = "opportunity upserted" if applied.sobject == "Opportunity" else "lead upserted"
    # Keys of ``extra`` must not collide with LogRecord attributes ("created", "name", ...).
    log.info(message, extra={**summary, "api_usage": api_usage})
    return summary


def order_version(order, record, source, event_id=None):
    """The ``Version`` of ``order`` as ``record`` would write it."""
    return Version(
        increment_id=order.increment_id,
        entity_id=order.entity_id,
        store_id=order.store_id,
        updated_at=order.updated_at,
        payload_hash=record_hash(record),
        state=order.state,
        customer_email=customer_key(order.customer_email),
        source=source,
        parent_increment_id=order.parent_increment_id,
        event_id=event_id,
    )


def _write(order, record, state, version, services, locks, summary):
    """Write ``version`` and record it as applied once Salesforce confirmed it."""
    attempt = services.ledger.begin(version)
    calls_before = services.writer.calls
    try:
        if record.sobject == "Lead":
            applied = write_lead(record, services)
        else:
            applied = write_opportunity(order, record, state, services, locks)
    except Exception as exc:
        note_failed([(version, failure_status(exc, state, services.settings))], services)
        raise
    applied = dataclasses.replace(applied, api_calls=services.writer.calls - calls_before)
    services.ledger.applied(version, applied)
    return report_applied(summary, applied, attempt, services.writer.last_api_usage)


def note_failed(failures, services):
    """Record ``(version, status)`` of writes that failed (``failure_status``), under the
    orders' locks. A ledger that cannot be written leaves them ``applying``: in doubt, as a
    worker that died would, which only makes a later write wait (``interrupted_write``)."""
    try:
        services.ledger.failed(failures)
    except Exception:  # the write's own failure is the outcome
        log.warning("ledger did not record the failed writes", exc_info=True)


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
