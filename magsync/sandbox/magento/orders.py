"""The store's orders: the book holding their current truth, the save clock, and the lifecycle.

Every change to an order is a *save*, as ``Order::save()`` is in Magento: it stamps a new
``updated_at`` and hands the saved order to the book's ``on_save`` listener (the webhook
emitter), exactly once per save, in save order.

Lifecycle actions (:data:`ACTIONS`) follow Magento's state machine for offline payment methods:

============  =====================================================  ============================
action        allowed when                                           result (state / status)
============  =====================================================  ============================
``invoice``   not canceled, holded, closed or fully invoiced         processing (complete when
                                                                     already shipped); paid
``ship``      not canceled, holded, closed or fully shipped          complete when invoiced,
                                                                     else processing
``refund``    invoiced and not yet refunded, not holded              closed; full credit memo
``cancel``    not invoiced, not complete, closed, holded             canceled
``hold``      new, pending_payment or processing                     holded (previous kept in
                                                                     ``hold_before_*``)
``unhold``    holded                                                 the state before the hold
``edit``      new or pending_payment, nothing invoiced or shipped    a new order
                                                                     ``<original>-<n>``, the
                                                                     edited one canceled
``comment``   always                                                 unchanged; a status history
                                                                     entry
============  =====================================================  ============================

A refused action raises :class:`~magsync.sandbox.magento.errors.MagentoError` (400).
"""

import threading
from datetime import UTC, datetime, timedelta

from magsync.sandbox.magento.amounts import dec, wire
from magsync.sandbox.magento.errors import MagentoError, not_found
from magsync.sandbox.magento.generator import Sequences, clone, sync_copies

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"

DEFAULT_STATUS = {
    "new": "pending",
    "pending_payment": "pending_payment",
    "processing": "processing",
    "complete": "complete",
    "closed": "closed",
    "canceled": "canceled",
    "holded": "holded",
    "payment_review": "payment_review",
}

_OPEN_STATES = ("new", "pending_payment", "processing")


def copy_order(order):
    """A deep copy of an order."""
    return clone(order)


class SaveClock:
    """Stamps saves with ``updated_at``: UTC, ``YYYY-MM-DD HH:MM:SS``.

    Magento keeps ``updated_at`` to the second, so two saves of one order within a second would
    tie and a consumer could not tell the newer state from the older. The store keeps each
    order's saves strictly ordered instead: a save gets ``max(now, previous + 1 s)``, so a burst
    of saves of one order runs that order's clock a few seconds ahead of the wall clock. Saves of
    different orders may share a second, as they do in Magento. The clock also never runs
    backwards when the wall clock is stepped back.

    ``now`` returns an aware UTC datetime (tests and scenarios may pass a simulated clock).
    """

    def __init__(self, now=None):
        self._now = now or (lambda: datetime.now(UTC))
        self._lock = threading.Lock()
        self._last = None

    def now(self):
        """The current store time as Magento writes it."""
        current = self._now().astimezone(UTC).replace(microsecond=0, tzinfo=None)
        with self._lock:
            if self._last is not None and current < self._last:
                current = self._last
            self._last = current
        return current.strftime(TIME_FORMAT)

    def stamp(self, previous=None):
        """The ``updated_at`` for a save whose previous save was stamped ``previous``."""
        current = datetime.strptime(self.now(), TIME_FORMAT)
        if previous:
            before = datetime.strptime(previous, TIME_FORMAT)
            if current <= before:
                current = before + timedelta(seconds=1)
        return current.strftime(TIME_FORMAT)


class OrderBook:
    """The current truth of every order, keyed by ``entity_id``.

    Orders are published as snapshots: a save replaces an order's dict and never changes a
    published one, so the REST layer may serialise what it got without holding the lock.
    Methods meant for callers outside the store return copies.

    ``on_save(order)`` is called under the book's lock for every save, in save order.
    """

    def __init__(self, generator, clock=None, on_save=None):
        self.generator = generator
        self.clock = clock or SaveClock()
        self.on_save = on_save
        self.ids = Sequences()
        self.lock = threading.RLock()
        self._orders = {}
        self._by_increment = {}
        self._symbols = generator.settings["currency_symbols"]

    # -- reading -----------------------------------------------------------------------------

    def snapshot(self, entity_id):
        """The published dict of one order (do not modify); 404 when unknown."""
        with self.lock:
            order = self._orders.get(entity_id)
        if order is None:
            raise not_found()
        return order

    def snapshots(self):
        """All published order dicts, by ``entity_id`` (do not modify)."""
        with self.lock:
            return [self._orders[key] for key in sorted(self._orders)]

    def get(self, entity_id):
        """A copy of one order's current truth."""
        return copy_order(self.snapshot(entity_id))

    def truth(self):
        """Copies of every order's current truth, by ``entity_id``."""
        return [copy_order(order) for order in self.snapshots()]

    def by_increment_id(self, increment_id):
        """A copy of the order with that order number; 404 when unknown."""
        with self.lock:
            entity_id = self._by_increment.get(increment_id)
        if entity_id is None:
            raise not_found()
        return self.get(entity_id)

    def __len__(self):
        with self.lock:
            return len(self._orders)

    # -- writing -----------------------------------------------------------------------------

    def place(self, kind=None, **overrides):
        """Place a new order (see :meth:`OrderGenerator.new_order`); returns a copy of it."""
        if "entity_id" in overrides:
            raise ValueError("entity_id is assigned by the store")
        with self.lock:
            increment_id = overrides.get("increment_id")
            if increment_id is not None and increment_id in self._by_increment:
                raise MagentoError(400, "Unique constraint violation found")
            order = self.generator.new_order(self.ids, self.clock.now(), kind, overrides)
            self._publish(order)
            return copy_order(order)

    def apply(self, entity_id, action, **params):
        """Run a lifecycle action; returns a copy of the resulting order.

        For ``edit`` that is the new order; the canceled original is saved too.
        """
        handler = ACTIONS.get(action)
        if handler is None:
            raise ValueError(f"unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
        with self.lock:
            work = copy_order(self.snapshot(entity_id))
            result, saves = handler(self, work, **params)
            for order in saves:
                self._publish(order)
            return copy_order(result)

    def save(self, order):
        """Stamp ``updated_at`` on a working copy; returns the stamp."""
        order["updated_at"] = self.clock.stamp(order.get("updated_at"))
        return order["updated_at"]

    def _publish(self, order):
        sync_copies(order)
        self._orders[order["entity_id"]] = order
        self._by_increment[order["increment_id"]] = order["entity_id"]
        if self.on_save is not None:
            self.on_save(order)

    def money_text(self, order, amount):
        """An amount as Magento's order comments print it: ``$12.34``."""
        symbol = self._symbols.get(order["order_currency_code"], order["order_currency_code"])
        return f"{symbol}{dec(amount):,.2f}"


# -- lifecycle --------------------------------------------------------------------------------


def _refuse(message, parameters=None):
    return MagentoError(400, message, parameters)


def _visible(order):
    """Rows that carry amounts: simple products and configurable parents (not their children)."""
    return [row for row in order["items"] if "parent_item_id" not in row]


def _set_state(order, state):
    order["state"] = state
    order["status"] = DEFAULT_STATUS[state]


def _touch_items(order, stamp):
    for row in order["items"]:
        row["updated_at"] = stamp


def _qty(row, key):
    return dec(row.get(key, 0))


def _fully(order, key):
    """True when every row has ``key`` (qty_invoiced, qty_shipped) up to what is still due."""
    return all(
        _qty(row, key)
        >= _qty(row, "qty_ordered")
        - _qty(row, "qty_canceled")
        - (_qty(row, "qty_refunded") if key == "qty_shipped" else 0)
        for row in order["items"]
    )


def _invoiced(order):
    return dec(order.get("total_invoiced", 0)) > 0


def _sum(*values):
    return wire(sum((dec(v) for v in values), dec(0)))


def invoice(book, order):
    """Invoice everything and capture it offline: the order is paid."""
    if order["state"] not in _OPEN_STATES or _fully(order, "qty_invoiced"):
        raise _refuse("The order does not allow an invoice to be created.")
    stamp = book.save(order)
    for prefix in ("", "base_"):
        order[f"{prefix}subtotal_invoiced"] = order[f"{prefix}subtotal"]
        order[f"{prefix}tax_invoiced"] = order[f"{prefix}tax_amount"]
        order[f"{prefix}shipping_invoiced"] = order[f"{prefix}shipping_amount"]
        order[f"{prefix}discount_invoiced"] = order[f"{prefix}discount_amount"]
        order[f"{prefix}discount_tax_compensation_invoiced"] = 0
        order[f"{prefix}total_invoiced"] = order[f"{prefix}grand_total"]
        order[f"{prefix}total_paid"] = order[f"{prefix}grand_total"]
        order[f"{prefix}total_due"] = 0
    for row in order["items"]:
        row["qty_invoiced"] = row["qty_ordered"]
        if "parent_item_id" in row:
            continue
        for prefix in ("", "base_"):
            row[f"{prefix}row_invoiced"] = row[f"{prefix}row_total"]
            row[f"{prefix}tax_invoiced"] = row[f"{prefix}tax_amount"]
            row[f"{prefix}discount_invoiced"] = row[f"{prefix}discount_amount"]
            row[f"{prefix}discount_tax_compensation_invoiced"] = 0
    _touch_items(order, stamp)
    payment = order["payment"]
    payment.update(
        amount_paid=order["grand_total"],
        base_amount_paid=order["base_grand_total"],
        shipping_captured=order["shipping_amount"],
        base_shipping_captured=order["base_shipping_amount"],
    )
    _set_state(order, "complete" if _fully(order, "qty_shipped") else "processing")
    return order, [order]


def ship(book, order):
    """Ship everything still to ship."""
    if order["state"] not in (*_OPEN_STATES, "complete") or _fully(order, "qty_shipped"):
        raise _refuse("The order does not allow a shipment to be created.")
    stamp = book.save(order)
    for row in order["items"]:
        row["qty_shipped"] = wire(
            _qty(row, "qty_ordered") - _qty(row, "qty_canceled") - _qty(row, "qty_refunded")
        )
    _touch_items(order, stamp)
    _set_state(order, "complete" if _fully(order, "qty_invoiced") else "processing")
    return order, [order]


def refund(book, order):
    """A full offline credit memo of what was invoiced; the order closes."""
    refunded = dec(order.get("total_refunded", 0))
    if (
        order["state"] in ("canceled", "closed", "holded", "payment_review")
        or not _invoiced(order)
        or refunded >= dec(order["total_paid"])
    ):
        raise _refuse("The order does not allow a creditmemo to be created.")
    stamp = book.save(order)
    for prefix in ("", "base_"):
        order[f"{prefix}subtotal_refunded"] = order[f"{prefix}subtotal_invoiced"]
        order[f"{prefix}tax_refunded"] = order[f"{prefix}tax_invoiced"]
        order[f"{prefix}shipping_refunded"] = order[f"{prefix}shipping_invoiced"]
        order[f"{prefix}shipping_tax_refunded"] = 0
        order[f"{prefix}discount_refunded"] = order[f"{prefix}discount_invoiced"]
        order[f"{prefix}discount_tax_compensation_refunded"] = 0
        order[f"{prefix}adjustment_positive"] = 0
        order[f"{prefix}adjustment_negative"] = 0
        order[f"{prefix}total_refunded"] = order[f"{prefix}total_paid"]
        order[f"{prefix}total_offline_refunded"] = order[f"{prefix}total_paid"]
    for row in order["items"]:
        row["qty_refunded"] = row.get("qty_invoiced", 0)
        if "parent_item_id" in row:
            continue
        for prefix in ("", "base_"):
            row[f"{prefix}amount_refunded"] = row[f"{prefix}row_invoiced"]
            row[f"{prefix}tax_refunded"] = row[f"{prefix}tax_invoiced"]
            row[f"{prefix}discount_refunded"] = row[f"{prefix}discount_invoiced"]
            row[f"{prefix}discount_tax_compensation_refunded"] = 0
    _touch_items(order, stamp)
    order["payment"].update(
        amount_refunded=order["total_refunded"],
        base_amount_refunded=order["base_total_refunded"],
        shipping_refunded=order["shipping_refunded"],
        base_shipping_refunded=order["base_shipping_refunded"],
    )
    _set_state(order, "closed")
    _add_history(
        book,
        order,
        stamp,
        f"We refunded {book.money_text(order, order['total_refunded'])} offline.",
        "creditmemo",
    )
    return order, [order]


def cancel(book, order):
    """Cancel what is not invoiced."""
    if order["state"] not in _OPEN_STATES or _invoiced(order):
        raise _refuse("You have not canceled the item.")
    _cancel(book, order)
    return order, [order]


def _cancel(book, order):
    stamp = book.save(order)
    for row in order["items"]:
        row["qty_canceled"] = wire(_qty(row, "qty_ordered") - _qty(row, "qty_invoiced"))
    _touch_items(order, stamp)
    for prefix in ("", "base_"):
        order[f"{prefix}subtotal_canceled"] = order[f"{prefix}subtotal"]
        order[f"{prefix}tax_canceled"] = order[f"{prefix}tax_amount"]
        order[f"{prefix}shipping_canceled"] = order[f"{prefix}shipping_amount"]
        # Magento books the canceled discount as a positive amount.
        order[f"{prefix}discount_canceled"] = wire(abs(dec(order[f"{prefix}discount_amount"])))
        order[f"{prefix}total_canceled"] = order[f"{prefix}grand_total"]
    order["payment"].update(
        amount_canceled=order["grand_total"], base_amount_canceled=order["base_grand_total"]
    )
    _set_state(order, "canceled")


def hold(book, order):
    """Put the order on hold, remembering its state and status."""
    if order["state"] not in _OPEN_STATES:
        raise _refuse("A hold action is not available.")
    book.save(order)
    order["hold_before_state"] = order["state"]
    order["hold_before_status"] = order["status"]
    _set_state(order, "holded")
    return order, [order]


def unhold(book, order):
    """Release a hold: back to the state and status it had."""
    if order["state"] != "holded":
        raise _refuse("You cannot remove the hold.")
    book.save(order)
    order["state"] = order.pop("hold_before_state", "processing")
    order["status"] = order.pop("hold_before_status", DEFAULT_STATUS[order["state"]])
    return order, [order]


def edit(book, order, **overrides):
    """Admin edit: a new order ``<original>-<n>`` replaces this one, which is canceled.

    ``overrides`` pins top-level fields of the new order (addresses are laid over the copied
    ones). The new order is saved first, then the canceled original, as Magento does.
    """
    if (
        order["state"] not in ("new", "pending_payment")
        or _invoiced(order)
        or any(_qty(row, "qty_shipped") for row in order["items"])
    ):
        raise _refuse("This order cannot be edited.")
    ids = book.ids
    child = copy_order(order)
    now = book.clock.now()
    original = order.get("original_increment_id", order["increment_id"])
    number = order.get("edit_increment", 0) + 1
    child_id = ids.next("order")
    for key in (
        "hold_before_state",
        "hold_before_status",
        "relation_child_id",
        "relation_child_real_id",
    ):
        child.pop(key, None)
    child.update(
        entity_id=child_id,
        increment_id=f"{original}-{number}",
        original_increment_id=original,
        edit_increment=number,
        # Magento's REST output carries these relation ids as strings.
        relation_parent_id=str(order["entity_id"]),
        relation_parent_real_id=order["increment_id"],
        quote_id=ids.next("quote"),
        protect_code=f"{book.generator.rng.getrandbits(128):032x}",
        created_at=now,
        updated_at=now,
        status_histories=[],
    )
    _set_state(child, "new")
    new_item_ids = {}
    for row in child["items"]:
        new_item_ids[row["item_id"]] = ids.next("order_item")
    for row in child["items"]:
        row["item_id"] = new_item_ids[row["item_id"]]
        row["quote_item_id"] = ids.next("quote_item")
        row["order_id"] = child_id
        row["created_at"] = row["updated_at"] = now
        if "parent_item_id" in row:
            row["parent_item_id"] = new_item_ids[row["parent_item_id"]]
    for tax in child["extension_attributes"].get("item_applied_taxes", []):
        tax["item_id"] = new_item_ids[tax["item_id"]]
    assignment = child["extension_attributes"]["shipping_assignments"][0]
    shipping = assignment["shipping"]["address"]
    shipping.update(entity_id=ids.next("order_address"), parent_id=child_id)
    billing = child["billing_address"]
    billing.update(entity_id=ids.next("order_address"), parent_id=child_id)
    child["billing_address_id"] = billing["entity_id"]
    child["payment"].update(entity_id=ids.next("payment"), parent_id=child_id)
    for key, value in overrides.items():
        if key in ("billing_address", "shipping_address"):
            target = billing if key == "billing_address" else shipping
            target.update(value)
        elif key in ("entity_id", "items"):
            raise ValueError(f"{key} cannot be pinned on an edit")
        else:
            child[key] = value
    if "increment_id" in overrides and overrides["increment_id"] in book._by_increment:
        raise MagentoError(400, "Unique constraint violation found")

    order["relation_child_id"] = str(child_id)
    order["relation_child_real_id"] = child["increment_id"]
    _cancel(book, order)
    return child, [child, order]


def comment(book, order, comment="", notify=False):
    """Add an order comment (a save without a state change)."""
    stamp = book.save(order)
    _add_history(book, order, stamp, comment, "order", notify)
    return order, [order]


def _add_history(book, order, stamp, text, entity_name, notify=False):
    entry = {
        "comment": text,
        "created_at": stamp,
        "entity_id": book.ids.next("status_history"),
        "entity_name": entity_name,
        "is_customer_notified": 1 if notify else 0,
        "is_visible_on_front": 0,
        "parent_id": order["entity_id"],
        "status": order["status"],
    }
    # Newest first, as Magento lists them.
    order["status_histories"].insert(0, entry)


ACTIONS = {
    "invoice": invoice,
    "ship": ship,
    "refund": refund,
    "cancel": cancel,
    "hold": hold,
    "unhold": unhold,
    "edit": edit,
    "comment": comment,
}
"""Lifecycle actions by name: ``handler(book, working_copy, **params) -> (result, saves)``."""
