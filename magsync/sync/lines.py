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

from dataclasses import dataclass

from magsync.mapping.lines import line_records
from magsync.salesforce.lookups import find_order_lines
from magsync.salesforce.writer import COLLECTION_LIMIT, Subrequest
from magsync.sync.products import price_entries

LINES, GONE = "lines", "gone"
# What Salesforce answers when a line refers to a price-book entry it no longer has or cannot use.
REFUSED_ENTRY = {"FIELD_INTEGRITY_EXCEPTION", "INVALID_CROSS_REFERENCE_KEY", "ENTITY_IS_DELETED"}


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
    ledger has none for an order Salesforce has, or ``fresh`` (a write was refused).
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
    if fresh or (not previous and state is not None and state.record_id):
        previous = find_order_lines(
            services.writer, record.external_id_field, number, settings.sf_line_external_id_field
        )
    keys = {line.key for line in lines}
    return LineWrite(
        records=tuple(line_records(lines, settings, opportunity, entries, existing=previous)),
        skus=tuple(sorted({line.sku for line in lines})),
        vanished=tuple(record_id for key, record_id in previous.items() if key not in keys),
    )
