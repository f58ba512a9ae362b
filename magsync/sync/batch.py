"""Many orders applied together: the batch a worker process's coalescer hands over.

``write_batch(prepared, services)`` applies a list of ``pipeline.Prepared`` orders and returns
an outcome for each, in order: the summary ``pipeline.sync_order`` would return, or the exception
it would have raised. Per order the decisions are the pipeline's own (``primary_record``,
``skip_reason``, the ledger's in-doubt protocol); what changes is how many Salesforce calls the
orders share:

1. Newest only: of several events of one order, the newest version (``updated_at``; a tie goes
   to the later arrival, read again from the store under the lock when the two differ) is
   applied. Each other one is recorded as ``skipped_superseded`` once
   the newest is recorded (synced or skipped), and is retried when the newest fails.
2. An edit whose replaced order is in the same batch is applied after the batch, on its own
   (``pipeline.apply_one``), as if it had arrived next; so is a batch left with one order, which
   then costs what it costs without coalescing.
3. One lock session holds the batch: every order's lock and its parent's, taken at once in the
   global lock order (``Ledger.locks``), then the customer locks of buyers the ledger does not
   know. However many orders wait, a process holds one such session per batch in flight.
4. Stale and unchanged versions are skipped (one ledger transaction); an order whose earlier
   write may still land waits (``pipeline.interrupted_write``); the others begin, in doubt
   until applied (one transaction).
5. The writes (``magsync.sync.batch_writes``): a record Salesforce refuses fails only its
   order, a call that fails as a whole the orders it carried.
6. The ledger records every order Salesforce confirmed as applied, and the status of every
   failed write (``pipeline.failure_status``), one transaction each; then the locks are
   released.
"""

import dataclasses
import logging

from magsync.errors import Deferred, RetryLater
from magsync.ledger import Applied, Version
from magsync.salesforce.rest import dumps
from magsync.sync import batch_writes, pipeline
from magsync.sync.batch_writes import Plan

log = logging.getLogger(__name__)


def write_batch(prepared, services):
    """An outcome per ``Prepared`` order, in order (see the module)."""
    outcomes = [None] * len(prepared)
    winners, superseded = newest_only(prepared)
    prepared = _mark(prepared, superseded)
    together, alone = _apart(winners, prepared)
    if len(together) == 1:
        together, alone = [], together + alone
    if together:
        _together(together, prepared, services, outcomes)
    for index in alone:
        try:
            outcomes[index] = pipeline.apply_one(prepared[index], services)
        except Exception as exc:  # the order's own outcome, as the task would have met it
            outcomes[index] = exc
    _superseded(superseded, prepared, outcomes, services)
    return outcomes


def newest_only(prepared):
    """``(winners, superseded)``: the index of the event applied for each order, in arrival
    order, and ``{index: winner's index}`` of the others."""
    newest = {}
    for index, item in enumerate(prepared):
        number = item.order.increment_id
        best = newest.get(number)
        if best is None or _updated(item) >= _updated(prepared[best]):
            newest[number] = index
    winners = sorted(newest.values())
    superseded = {
        index: newest[item.order.increment_id]
        for index, item in enumerate(prepared)
        if newest[item.order.increment_id] != index
    }
    return winners, superseded


def _mark(prepared, superseded):
    """``prepared`` with what each winner takes over from the events it superseded: ``tied``
    when one shares its ``updated_at`` but not its fields (it is read again under the lock,
    ``pipeline.planned``), ``recheck`` when one was a late-write check."""
    marked = list(prepared)
    for loser, winner in superseded.items():
        first, second = prepared[loser], marked[winner]
        tied = second.tied or (_updated(first) == _updated(second) and first.order != second.order)
        marked[winner] = dataclasses.replace(
            second, tied=tied, recheck=second.recheck or first.recheck
        )
    return marked


def _updated(item):
    return item.order.updated_at.replace(tzinfo=None)


def _apart(winners, prepared):
    """``(together, alone)``: edits whose replaced order is in the batch wait for it."""
    numbers = {prepared[index].order.increment_id for index in winners}
    alone = [i for i in winners if prepared[i].order.parent_increment_id in numbers]
    return [i for i in winners if i not in alone], alone


def _together(indexes, prepared, services, outcomes):
    try:
        with services.ledger.locks() as locks:
            _under_locks(indexes, prepared, services, locks, outcomes)
    except Exception as exc:  # a lock, the ledger or a fault: every order still open meets it
        batch_writes.shared(exc)
        for index in indexes:
            if outcomes[index] is None:
                outcomes[index] = exc


def _under_locks(indexes, prepared, services, locks, outcomes):
    orders = [prepared[index].order for index in indexes]
    locks.acquire_many([name for order in orders for name in pipeline.order_locks(order)])
    parents = {order.parent_increment_id for order in orders if order.parent_increment_id}
    states = services.ledger.orders({order.increment_id for order in orders} | parents)
    plans, skips = _decide(indexes, prepared, states, services, outcomes)
    if skips:
        services.ledger.skip_many([(plan.version, reason) for plan, reason in skips])
        for plan, reason in skips:
            outcomes[plan.index] = pipeline.report_skipped(plan.summary, reason)
    if not plans:
        return
    attempts = services.ledger.begin_many([plan.version for plan in plans])
    calls_before = services.writer.calls
    batch_writes.write(plans, states, services, locks)
    calls = services.writer.calls - calls_before
    _record(plans, attempts, calls, services, outcomes)


def _decide(indexes, prepared, states, services, outcomes):
    """``(plans, skips)``: the versions to write, and ``(plan, reason)`` of those to skip."""
    plans, skips = [], []
    for index in indexes:
        item = prepared[index]
        order = item.order
        state = states.get(order.increment_id)
        try:
            order, record, version = pipeline.planned(
                order, state, item.source, item.event_id, services, tied=item.tied
            )
            dumps(record.payload())  # a value JSON cannot carry exactly fails this order only
        except Exception as exc:  # the order's own outcome, as the task would have met it
            outcomes[index] = exc
            continue
        summary = pipeline.order_summary(order, item.source)
        plan = Plan(index, order, state, record, version, summary)
        reason = pipeline.decision(version, state, item.recheck)
        deferred = pipeline.interrupted_write(record, state, services.settings)
        if reason is None and deferred is not None:
            outcomes[index] = deferred
        elif reason is None:
            if pipeline.late_write_possible(state, services.settings):
                summary["recheck"] = True
            plans.append(plan)
        else:
            skips.append((plan, reason))
    return plans, skips


def _record(plans, attempts, calls, services, outcomes):
    """Record what Salesforce confirmed in the ledger, then give each order its outcome."""
    confirmed = [plan for plan in plans if isinstance(plan.outcome, Applied)]
    failed = [
        (plan.version, pipeline.failure_status(plan.outcome, plan.state, services.settings))
        for plan in plans
        if isinstance(plan.outcome, Exception)
    ]
    if failed:
        pipeline.note_failed(failed, services)
    for plan in confirmed:
        plan.outcome = dataclasses.replace(plan.outcome, api_calls=calls, batch=len(plans))
    if confirmed:
        services.ledger.applied_many([(plan.version, plan.outcome) for plan in confirmed])
    usage = services.writer.last_api_usage
    for plan in plans:
        if isinstance(plan.outcome, Applied):
            attempt = attempts[plan.order.increment_id]
            outcomes[plan.index] = pipeline.report_applied(
                plan.summary, plan.outcome, attempt, usage
            )
        else:
            outcomes[plan.index] = plan.outcome
    log.info(
        "order batch written",
        extra={"orders": len(plans), "synced": len(confirmed), "api_calls": calls},
    )


def _superseded(superseded, prepared, outcomes, services):
    """Record the events a newer one replaced once it is recorded; retry them if it failed."""
    done = []
    for index, winner in superseded.items():
        if isinstance(outcomes[winner], dict):
            done.append(index)
        elif isinstance(outcomes[winner], Deferred):
            outcomes[index] = outcomes[winner]  # the newer one waits: so does this one
        else:
            outcomes[index] = RetryLater(
                "a newer version of the order in the same batch was not applied",
                reason="superseded_not_applied",
                system="magsync",
            )
    if not done:
        return
    try:
        services.ledger.supersede(
            [(_version(prepared[i]), _version(prepared[superseded[i]])) for i in done]
        )
    except Exception as exc:  # the ledger: these events are retried, then found stale
        for index in done:
            outcomes[index] = exc
        return
    for index in done:
        item = prepared[index]
        summary = pipeline.order_summary(item.order, item.source)
        outcomes[index] = pipeline.report_skipped(summary, "superseded")


def _version(item):
    """What the ledger records of a superseded event (its fields were never mapped)."""
    order = item.order
    return Version(
        increment_id=order.increment_id,
        entity_id=order.entity_id,
        store_id=order.store_id,
        updated_at=order.updated_at,
        payload_hash=None,
        state=order.state,
        customer_email=None,
        source=item.source,
        parent_increment_id=order.parent_increment_id,
        event_id=item.event_id,
    )
