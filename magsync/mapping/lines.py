"""The order's products as Opportunity line items (``SALESFORCE_LINE_ITEMS``).

``order_lines(order, settings)`` returns the ``Line`` of each visible item, then the shipping,
tax and adjustment lines, such that the lines' totals add up to ``grand_total`` to the cent:

- an item: Quantity ``qty_ordered``, UnitPrice its net price ``(row_total - discount_amount) /
  qty_ordered`` to the cent; a configurable product once (its parent row, with the chosen
  variant in the Description); a bundle as its parent row, or as its bundled items when
  ``MAGSYNC_BUNDLE_LINES=children``; an item with no quantity has no line;
- shipping (``shipping_amount``) and tax (``tax_amount``), one each, when not zero, as lines of
  the products ``SALESFORCE_SHIPPING_PRODUCT`` and ``SALESFORCE_TAX_PRODUCT``;
- whatever still separates their sum from ``grand_total`` (an order-level discount not spread
  over the items, a discount on shipping, fees, the rounding of unit prices) as one line of
  ``SALESFORCE_ADJUSTMENT_PRODUCT``, negative or positive.

Salesforce computes a line's TotalPrice as UnitPrice x Quantity (to the cent, half up) and,
once an Opportunity has lines, its Amount as their sum; ``Line.total`` is that same product, so
the adjustment makes Amount equal ``grand_total``.

Each line carries its external id (``SALESFORCE_LINE_EXTERNAL_ID_FIELD``): an item's is the
order number and its Magento ``item_id``, ``<number>/<item_id>`` (unique even across stores, and
an edited ``<n>-1`` order has lines of its own); the order-level lines' are
``<number>/shipping``, ``<number>/tax`` and ``<number>/adjustment``.
``LineItemSchema`` dumps a line as the fields written; the Opportunity and the price-book entry
are links known at write time.
"""

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from marshmallow import fields, post_dump

from magsync.mapping.common import money, truncate
from magsync.mapping.records import UPSERT, Link, OutboundSchema, Record

ZERO = Decimal("0")
DESCRIPTION_LIMIT = 255  # OpportunityLineItem.Description is a Text(255)
PRODUCT_NAME_LIMIT = 255  # Product2.Name
ITEM, SHIPPING, TAX, ADJUSTMENT = "item", "shipping", "tax", "adjustment"


@dataclass(frozen=True)
class Line:
    """One line: its external id, the product's SKU and name, quantity and unit price."""

    key: str
    kind: str
    sku: str
    name: str
    quantity: Decimal
    unit_price: Decimal
    description: str | None = None
    list_price: Decimal = Decimal("0")  # the catalog price (a new price-book entry's)

    @property
    def total(self):
        """TotalPrice as Salesforce computes it: UnitPrice x Quantity to the cent, half up."""
        return (self.unit_price * self.quantity).quantize(Decimal("0.01"), ROUND_HALF_UP)


def visible_items(order, bundle_lines="parent"):
    """``[(item, variant)]``: the items a buyer sees, each with the child row that names its
    chosen variant (a configurable product's), else None."""
    children = {}
    for item in order.items:
        if item.is_child:
            children.setdefault(item.parent_item_id, []).append(item)
    shown = []
    for item in order.items:
        if item.is_child:
            continue
        own = children.get(item.item_id, []) if item.item_id is not None else []
        if item.product_type == "bundle" and bundle_lines == "children" and own:
            shown.extend((child, None) for child in own)
        elif item.product_type == "configurable" and own:
            shown.append((item, own[0]))
        else:
            shown.append((item, None))
    return shown


def _item_line(order, index, item, variant):
    quantity = item.qty_ordered
    number = order.increment_id
    key = f"{number}/{item.item_id}" if item.item_id is not None else f"{number}/#{index}"
    name = variant.name if variant is not None and variant.name else item.name
    description = None
    if variant is not None:
        description = truncate(f"Option: {variant.name} (SKU: {variant.sku})", DESCRIPTION_LIMIT)
    return Line(
        key=key,
        kind=ITEM,
        sku=item.sku,
        name=truncate(name, PRODUCT_NAME_LIMIT),
        quantity=quantity,
        unit_price=money(item.net_total / quantity),
        description=description,
        list_price=money(max(item.price, ZERO)),
    )


def _order_line(order, kind, product, amount):
    return Line(
        key=f"{order.increment_id}/{kind}",
        kind=kind,
        sku=product,
        name=product,
        quantity=Decimal("1"),
        unit_price=money(amount),
    )


def order_lines(order, settings):
    """The ``Line`` list of ``order`` (see the module): items, shipping, tax, adjustment."""
    lines = [
        _item_line(order, index, item, variant)
        for index, (item, variant) in enumerate(visible_items(order, settings.bundle_lines))
        if item.qty_ordered > 0
    ]
    for kind, product, amount in (
        (SHIPPING, settings.sf_shipping_product, order.shipping_amount),
        (TAX, settings.sf_tax_product, order.tax_amount),
    ):
        if money(amount) != ZERO:
            lines.append(_order_line(order, kind, product, amount))
    rest = money(order.grand_total) - sum((line.total for line in lines), ZERO)
    if rest != ZERO:
        lines.append(_order_line(order, ADJUSTMENT, settings.sf_adjustment_product, rest))
    return lines


def line_items_on(settings):
    return bool(settings.sf_line_items)


def _sample_lines(order, settings):
    return order_lines(order, settings)


class LineItemSchema(OutboundSchema):
    """Dumps a ``Line`` as OpportunityLineItem fields, keyed on the line's external id."""

    class Meta:
        salesforce_object = "OpportunityLineItem"
        salesforce_write = UPSERT
        salesforce_key = "sf_line_external_id_field"
        salesforce_enabled = staticmethod(line_items_on)
        # ``magsync check`` dumps each line of a sample order, not the order itself.
        salesforce_rows = staticmethod(_sample_lines)

    Quantity = fields.Function(lambda line: line.quantity)
    UnitPrice = fields.Function(lambda line: line.unit_price)
    Description = fields.Function(
        lambda line: line.description, metadata={"salesforce": {"type": "text", "length": 255}}
    )
    # Salesforce sets both when a line is created and refuses them on an update.
    OpportunityId = Link(create_only=True)
    PricebookEntryId = Link(create_only=True)

    @post_dump(pass_original=True)
    def add_key(self, data, line, **kwargs):
        data[self.external_id_field(self.settings)] = line.key
        return data

    def record(self, line):
        """The ``Record`` upserting ``line`` under its external id, with the links given."""
        fields_ = self.dump(line)
        links = {name: fields_.pop(name) for name in self.link_names() if name in fields_}
        return Record(
            sobject=self.Meta.salesforce_object,
            external_id_field=self.external_id_field(self.settings),
            external_id=line.key,
            fields=fields_,
            links=links,
        )


def line_records(lines, settings, opportunity, entries, existing=()):
    """The line ``Record`` list. A new line is linked to ``opportunity`` (an id or a Composite
    reference) and to its price-book entry (``entries``: SKU -> PricebookEntry id); a line in
    ``existing`` (keys of lines Salesforce has) is not: both links are create-only."""
    records = []
    for line in lines:
        links = {}
        if line.key not in existing:
            links = {"OpportunityId": opportunity, "PricebookEntryId": entries[line.sku]}
        records.append(LineItemSchema.of(settings, links=links).record(line))
    return records
