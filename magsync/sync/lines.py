"""An order's line items in the same call as its Opportunity (``SALESFORCE_LINE_ITEMS``).

``plan_lines(order, record, state, services, locks, opportunity)`` gives the ``LineWrite`` of
an Opportunity ``record`` whose children are its lines (``magsync.mapping.lines``): the line
records, each linked to its price-book entry (``magsync.sync.products``) and to the Opportunity
(a Composite reference, or its id) when it is new (Salesforce refuses both links on an update),
and the ids of the lines the order had at its last write and no longer has. ``subrequests`` are
what the Opportunity's Composite call carries for them: one Collections delete of the vanished
lines, one Collections upsert of the lines by their external id. So an order whose products are
all known costs no call more than without line items.
"""

import dataclasses
from dataclasses import dataclass

from magsync.mapping.lines import line_records
from magsync.salesforce.lookups import find_order_lines
from magsync.salesforce.writer import COLLECTION_LIMIT, Subrequest, record_results
from magsync.sync.products import price_entries

LINES, GONE = "lines", "gone"
# What Salesforce answers when a line refers to a price-book entry it no longer has or cannot use.
REFUSED_ENTRY = {"FIELD_INTEGRITY_EXCEPTION", "INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"}
# ... and when a line the ledger did not know of exists (its links cannot be written again).
REFUSED_LINES = REFUSED_ENTRY | {"INVALID_FIELD_FOR_INSERT_UPDATE"}


@dataclass(frozen=True)
class LineWrite:
    """The lines of one order's write: ``records`` (in line order), their SKUs, and the ids of
    the lines to delete."""

    records: tuple
    skus: tuple
    vanished: tuple

    def subrequests(self):
        """The Composite subrequests writing these lines (after the Opportunity's upsert)."""
        subrequests = []
        if self.vanished:
            ids = ",".join(self.vanished)
            path = f"composite/sobjects?ids={ids}&allOrNone=true"
            subrequests.append(Subrequest(GONE, "DELETE", path))
        if self.records:
            subrequests.append(Subrequest.upsert_many(LINES, list(self.records)))
        return subrequests

    def linked_to(self, opportunity_id):
        """These lines with new ones linked to the Opportunity ``opportunity_id``."""
        records = tuple(
            record.linked(OpportunityId=opportunity_id) if record.links else record
            for record in self.records
        )
        return dataclasses.replace(self, records=records)

    def confirmed(self, results):
        """``{line key: OpportunityLineItem id}`` from the Composite call's ``results``."""
        if not self.records:
            return {}
        return {
            record.external_id: outcome["id"]
            for record, outcome in zip(self.records, results[LINES], strict=True)
        }


def order_currency(order, settings):
    """The currency of the order's price-book entries: its own with multi-currency, else ``""``
    (the org's single currency)."""
    if settings.sf_multi_currency and order.order_currency_code:
        return order.order_currency_code.upper()
    return ""


def plan_lines(order, record, state, services, locks, opportunity, fresh=False):
    """The ``LineWrite`` of ``record`` (None with line items off or for another object).

    ``opportunity`` is what new lines' OpportunityId is (an id or a Composite reference). The
    lines the order has are the ledger's; Salesforce is asked instead (one query) when the
    ledger has none for an order Salesforce has, when the order is in doubt, or ``fresh`` (a
    write was refused).
    """
    settings = services.settings
    if not settings.sf_line_items or record.sobject != "Opportunity":
        return None
    lines = record.children
    if len(lines) > COLLECTION_LIMIT:
        raise ValueError(f"an order takes at most {COLLECTION_LIMIT} line items")
    entries = price_entries(lines, order_currency(order, settings), services, locks)
    number = order.increment_id
    previous = {} if fresh else services.ledger.order_lines([number]).get(number, {})
    if fresh or _ask_salesforce(previous, state):
        previous = _asked(services, record, number)
    return _line_write(record, entries, previous, settings, opportunity)


def _ask_salesforce(previous, state):
    """Whether the ledger's lines of an order may not be Salesforce's: it has none for an order
    Salesforce has, or a write of the order began and was never confirmed (in doubt)."""
    if state is None or not state.record_id:
        return False
    return not previous or state.in_doubt


def _asked(services, record, number):
    field = services.settings.sf_line_external_id_field
    return find_order_lines(services.writer, record.external_id_field, number, field)


def _line_write(record, entries, previous, settings, opportunity):
    lines = record.children
    keys = {line.key for line in lines}
    return LineWrite(
        records=tuple(line_records(lines, settings, opportunity, entries, existing=previous)),
        skus=tuple(sorted({line.sku for line in lines})),
        vanished=tuple(record_id for key, record_id in previous.items() if key not in keys),
    )


def plan_batch(plans, services, locks, opportunity):
    """``[LineWrite or None]`` for ``plans`` (each with ``order``, ``record``, ``state``), the
    price-book entries found per currency at once and the ledger's lines in one read.
    ``opportunity(i)`` is the OpportunityId of the new lines of the ``i``-th plan."""
    settings = services.settings
    if not settings.sf_line_items:
        return [None] * len(plans)
    by_currency = {}
    for plan in plans:
        currency = order_currency(plan.order, settings)
        by_currency.setdefault(currency, []).extend(plan.record.children)
    entries = {
        currency: price_entries(lines, currency, services, locks)
        for currency, lines in by_currency.items()
    }
    known = services.ledger.order_lines([plan.order.increment_id for plan in plans])
    writes = []
    for index, plan in enumerate(plans):
        number = plan.order.increment_id
        previous = known.get(number, {})
        if _ask_salesforce(previous, plan.state):
            previous = _asked(services, plan.record, number)
        currency = order_currency(plan.order, settings)
        writes.append(
            _line_write(plan.record, entries[currency], previous, settings, opportunity(index))
        )
    return writes


# A Composite call carries at most 5 Collections subrequests; a batch's call spends one on the
# Opportunities and one on the contact roles.
HEAVY_LIMIT = 5


def batch_subrequests(writes, room=HEAVY_LIMIT - 2):
    """The subrequests writing the lines of many orders (``writes``, None for an order without
    line items): one Collections delete of the vanished lines, then Collections upserts of 200
    lines at most, an order's lines never split over two (``lines0``, ``lines1``, ...). None when
    that takes more than ``room`` Collections subrequests."""
    vanished = [record_id for w in writes if w for record_id in w.vanished]
    chunks, chunk = [], []
    for write in writes:
        if not write or not write.records:
            continue
        if len(chunk) + len(write.records) > COLLECTION_LIMIT:
            chunks.append(chunk)
            chunk = []
        chunk.extend(write.records)
    if chunk:
        chunks.append(chunk)
    gone = [vanished[i : i + COLLECTION_LIMIT] for i in range(0, len(vanished), COLLECTION_LIMIT)]
    if len(chunks) + len(gone) > room:
        return None
    subrequests = [
        Subrequest(f"{GONE}{n}", "DELETE", f"composite/sobjects?ids={','.join(ids)}")
        for n, ids in enumerate(gone)
    ]
    subrequests += [Subrequest.upsert_many(f"{LINES}{n}", c) for n, c in enumerate(chunks)]
    return subrequests


def batch_results(plans, answers):
    """Give each plan with lines its ``line_ids`` (``{key: id}``, or the ``SyncError`` of its
    first refused line) from the Composite ``answers`` (by reference id). False when a lines
    subrequest failed as a whole: its plans' ``line_ids`` stay None."""
    results = {}
    whole = True
    for reference_id, answer in answers.items():
        if not reference_id.startswith(LINES):
            continue
        if answer.ok and isinstance(answer.body, list):
            results[reference_id] = list(answer.body)
        else:
            whole = False
    cursor = _chunk_cursor(plans)
    for plan, reference_id, start in cursor:
        body = results.get(reference_id)
        if body is None:
            continue
        outcomes = body[start : start + len(plan.lines.records)]
        plan.line_ids = _plan_lines(plan.lines.records, outcomes)
    return whole


def _chunk_cursor(plans):
    """``(plan, reference id, position)`` of each plan's lines, as ``batch_subrequests`` laid
    them out."""
    laid, n, used = [], 0, 0
    for plan in plans:
        if not plan.lines or not plan.lines.records:
            continue
        if used + len(plan.lines.records) > COLLECTION_LIMIT:
            n, used = n + 1, 0
        laid.append((plan, f"{LINES}{n}", used))
        used += len(plan.lines.records)
    return laid


def _plan_lines(records, outcomes):
    found = {}
    for result in record_results(records, outcomes):
        if not result.ok:
            return result.error
        found[result.record.external_id] = result.id
    return found
