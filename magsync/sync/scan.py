"""Compare orders read from the store with what the ledger applied: what a walk must sync.

Reconciliation and backfill read the store's orders themselves (``magsync.magento.walk``) and
must spend nothing on an order Salesforce already has in that version. The test is the worker's
own (``magsync.sync.pipeline``): the version the ledger applied is as new or newer and the
fields the order maps to hash the same. Only what fails it is published, and the worker decides
again under the order's lock, so a verdict here is never a write.
"""

from typing import NamedTuple

from magsync.errors import InvalidOrder
from magsync.ledger.store import naive_utc
from magsync.mapping.order import load_order
from magsync.sync.pipeline import order_version, primary_record, skip_reason

NEW = "new"
CHANGED = "changed"
UNCHANGED = "unchanged"
INVALID = "invalid"


class Verdict(NamedTuple):
    """One walked order (the store's document as read) and what it needs."""

    document: dict
    kind: str  # NEW, CHANGED, UNCHANGED or INVALID

    @property
    def increment_id(self):
        return self.document.get("increment_id")

    @property
    def needs_sync(self):
        """Published to the worker: new, changed, or invalid (the worker dead-letters it)."""
        return self.kind != UNCHANGED


def classify(documents, ledger, settings):
    """A ``Verdict`` for each order document of ``documents``, in their order.

    One ledger read for the whole list. A document that is not a valid order is INVALID unless
    the ledger already applied a version as new (then nothing about it changed since).
    """
    documents = list(documents)
    ledger.ready()
    numbers = [d.get("increment_id") for d in documents if d.get("increment_id")]
    states = ledger.orders(numbers)
    return [
        _verdict(document, states.get(document.get("increment_id")), settings)
        for document in documents
    ]


def _verdict(document, state, settings):
    try:
        order = load_order(document)
    except InvalidOrder:
        return Verdict(document, INVALID)
    if state is None or state.updated_at is None:
        return Verdict(document, NEW)
    record = primary_record(order, state, settings)
    version = order_version(order, record, source="scan")
    reason = skip_reason(version, state)
    if reason == "stale":
        # The ledger applied a newer version than the store shows: Salesforce is ahead already.
        return Verdict(document, UNCHANGED)
    if reason == "unchanged" and naive_utc(version.updated_at) <= state.updated_at:
        return Verdict(document, UNCHANGED)
    # A newer save with the same fields still goes to the worker: it skips it without a call
    # and moves the ledger's version forward, so the next pass finds it applied.
    return Verdict(document, CHANGED)
