"""The inbound side: a Magento order (webhook payload or REST body) to magsync's canonical order.

Both shapes load: the seed webhook's trimmed order, the full ``GET /rest/V1/orders/{id}`` body,
and Adobe I/O Events' ``data.value`` whose numbers arrive as strings (``"32444.000000"``).
Unknown fields are ignored; money loads as ``Decimal`` (never float arithmetic); timestamps load
as aware UTC datetimes (Magento stores UTC and prints it without an offset).
"""

import datetime as dt
from dataclasses import dataclass, field
from decimal import Decimal

from marshmallow import EXCLUDE, Schema, ValidationError, fields, post_load, validate

from magsync.errors import InvalidOrder
from magsync.magento.fields import MagentoDateTime, MagentoId, Money

ORDER_STATES = (
    "new",
    "pending_payment",
    "processing",
    "complete",
    "closed",
    "canceled",
    "holded",
    "payment_review",
)


@dataclass(frozen=True)
class Address:
    firstname: str | None = None
    lastname: str | None = None
    company: str | None = None
    street: tuple = ()
    city: str | None = None
    region: str | None = None
    postcode: str | None = None
    country_id: str | None = None
    telephone: str | None = None
    email: str | None = None

    @property
    def full_name(self):
        return " ".join(p for p in (self.firstname, self.lastname) if p) or None


@dataclass(frozen=True)
class Item:
    item_id: int | None
    sku: str
    name: str
    qty_ordered: Decimal
    price: Decimal
    parent_item_id: int | None = None
    product_type: str | None = None
    row_total: Decimal | None = None
    discount_amount: Decimal = Decimal("0")

    @property
    def net_total(self):
        """What the buyer paid for the row before tax: its total (``price x qty`` when the
        payload has none) less its own discount."""
        total = self.row_total if self.row_total is not None else self.price * self.qty_ordered
        return total - self.discount_amount

    @property
    def is_child(self):
        """A configurable product's child row: the parent row already carries price and qty."""
        return self.parent_item_id is not None


@dataclass(frozen=True)
class Order:
    """One version of a Magento order, as magsync reasons about it."""

    entity_id: int
    increment_id: str
    state: str
    grand_total: Decimal
    customer_email: str
    created_at: dt.datetime
    updated_at: dt.datetime
    store_id: int | None = None
    status: str | None = None
    base_grand_total: Decimal | None = None
    order_currency_code: str | None = None
    customer_firstname: str | None = None
    customer_lastname: str | None = None
    customer_is_guest: bool = False
    billing_address: Address | None = None
    shipping_address: Address | None = None
    items: tuple = field(default_factory=tuple)
    relation_parent_id: int | None = None
    relation_parent_real_id: str | None = None
    relation_child_real_id: str | None = None
    original_increment_id: str | None = None
    edit_increment: int | None = None
    shipping_amount: Decimal = Decimal("0")
    tax_amount: Decimal = Decimal("0")
    discount_amount: Decimal = Decimal("0")
    total_refunded: Decimal | None = None

    @property
    def customer_name(self):
        """The buyer's name; guests have none on the order, only on the billing address."""
        name = " ".join(p for p in (self.customer_firstname, self.customer_lastname) if p)
        if name:
            return name
        return self.billing_address.full_name if self.billing_address else None

    @property
    def parent_increment_id(self):
        """The order an admin edit replaced (``<n>-1`` replaces ``<n>``), or None."""
        if self.relation_parent_real_id:
            return self.relation_parent_real_id
        if self.original_increment_id and self.edit_increment:
            if self.edit_increment == 1:
                return self.original_increment_id
            return f"{self.original_increment_id}-{self.edit_increment - 1}"
        return None

    @property
    def sold_items(self):
        """Items as the buyer sees them: a configurable product counts once (its parent row)."""
        return tuple(item for item in self.items if not item.is_child)


class Flag(fields.Boolean):
    """Magento's 0/1 flags, also as strings."""

    truthy = {1, "1", "true"}
    falsy = {0, "0", "false", None, ""}


def _opt_str(**kwargs):
    return fields.String(load_default=None, allow_none=True, **kwargs)


class AddressSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    firstname = _opt_str()
    lastname = _opt_str()
    company = _opt_str()
    street = fields.Method(deserialize="load_street", load_default=())
    city = _opt_str()
    region = _opt_str()
    postcode = _opt_str()
    country_id = _opt_str()
    telephone = _opt_str()
    email = _opt_str()

    def load_street(self, value):
        if value is None:
            return ()
        if isinstance(value, str):
            return (value,)
        if isinstance(value, list) and all(isinstance(line, str) for line in value):
            return tuple(value)
        raise ValidationError("Street must be a string or a list of strings.")

    @post_load
    def make(self, data, **kwargs):
        return Address(**data)


class ItemSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    item_id = fields.Integer(load_default=None, allow_none=True, strict=False)
    sku = fields.String(required=True, validate=validate.Length(min=1))
    name = fields.String(required=True)
    qty_ordered = Money(required=True, integer_digits=8, allow_negative=False)
    price = Money(load_default=Decimal("0"), allow_none=True)
    parent_item_id = fields.Integer(load_default=None, allow_none=True, strict=False)
    parent_item = fields.Dict(load_default=None, allow_none=True)
    product_type = _opt_str()
    row_total = Money(load_default=None, allow_none=True)
    discount_amount = Money(load_default=Decimal("0"), allow_none=True)

    @post_load
    def make(self, data, **kwargs):
        parent = data.pop("parent_item")
        if data["parent_item_id"] is None and parent:
            data["parent_item_id"] = parent.get("item_id") or -1
        for name in ("price", "discount_amount"):
            if data[name] is None:
                data[name] = Decimal("0")
        return Item(**data)


class ExtensionAttributesSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    shipping_assignments = fields.List(fields.Dict(), load_default=list)


class MagentoOrderSchema(Schema):
    """A Magento 2 order, webhook or REST shape."""

    class Meta:
        unknown = EXCLUDE

    entity_id = MagentoId(required=True)
    increment_id = fields.String(required=True, validate=validate.Length(min=1, max=50))
    store_id = MagentoId(minimum=0, load_default=None, allow_none=True)
    state = fields.String(required=True, validate=validate.OneOf(ORDER_STATES))
    status = _opt_str()
    grand_total = Money(required=True)
    base_grand_total = Money(load_default=None, allow_none=True)
    order_currency_code = _opt_str(validate=validate.Length(equal=3))
    customer_email = fields.String(required=True, validate=validate.Length(min=3, max=254))
    customer_firstname = _opt_str()
    customer_lastname = _opt_str()
    customer_is_guest = Flag(load_default=False, allow_none=True)
    billing_address = fields.Nested(AddressSchema, load_default=None, allow_none=True)
    items = fields.List(fields.Nested(ItemSchema), load_default=list)
    created_at = MagentoDateTime(required=True)
    updated_at = MagentoDateTime(required=True)
    relation_parent_id = fields.Integer(load_default=None, allow_none=True, strict=False)
    relation_parent_real_id = _opt_str()
    relation_child_real_id = _opt_str()
    original_increment_id = _opt_str()
    edit_increment = fields.Integer(load_default=None, allow_none=True, strict=False)
    extension_attributes = fields.Nested(
        ExtensionAttributesSchema, load_default=None, allow_none=True
    )
    shipping_amount = Money(load_default=Decimal("0"), allow_none=True)
    tax_amount = Money(load_default=Decimal("0"), allow_none=True)
    discount_amount = Money(load_default=Decimal("0"), allow_none=True)
    total_refunded = Money(load_default=None, allow_none=True)

    @post_load
    def make(self, data, **kwargs):
        for name in ("shipping_amount", "tax_amount", "discount_amount"):
            if data[name] is None:
                data[name] = Decimal("0")
        extension = data.pop("extension_attributes") or {}
        data["shipping_address"] = _shipping_address(extension.get("shipping_assignments", []))
        data["items"] = tuple(data["items"])
        data["customer_email"] = data["customer_email"].strip()
        if "@" not in data["customer_email"]:
            raise ValidationError("Not a valid email address.", "customer_email")
        return Order(**data)


def _shipping_address(assignments):
    # Magento keeps the shipping address out of the order body proper, in the first
    # shipping assignment; virtual orders have none.
    for assignment in assignments:
        address = (assignment.get("shipping") or {}).get("address")
        if address:
            return _ADDRESS_SCHEMA.load(address)
    return None


# One instance of each for the process: making a schema (with its nested ones) costs more than
# loading an order with it, and loading keeps nothing on the instance, so threads share them.
_ADDRESS_SCHEMA = AddressSchema()
_ORDER_SCHEMA = MagentoOrderSchema()


def load_order(document):
    """A canonical ``Order`` from a Magento order dict; ``InvalidOrder`` with field errors."""
    try:
        return _ORDER_SCHEMA.load(document)
    except ValidationError as exc:
        raise InvalidOrder("Magento order failed validation", errors=[exc.messages]) from exc
