"""The order's products as Opportunity line items: the lines' totals add up to grand_total to
the cent (Salesforce's Amount is their sum), whatever the discounts, tax, shipping, quantities,
currency or the amounts' spelling; configurable and bundle products; the seed mapping untouched
with line items off."""

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from magsync.mapping.lines import LineItemSchema, line_records, order_lines
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.settings import Settings
from tests.helpers import load_fixture

ON = Settings.from_env({"SALESFORCE_LINE_ITEMS": "true"})


def order_document(items, **totals):
    return {
        "entity_id": 7,
        "increment_id": "100000007",
        "state": "processing",
        "customer_email": "jane@example.com",
        "created_at": "2024-03-01 10:00:00",
        "updated_at": "2024-03-01 10:05:00",
        "items": items,
        **totals,
    }


def test_seed_order_lines_and_the_opportunity_without_line_items_unchanged():
    order = load_order(load_fixture("seed_webhook.json")["order"])
    off = Settings.from_env({})
    seed = opportunity_record(order, off, None)
    assert seed.children == ()
    assert opportunity_record(order, ON, None).fields == seed.fields
    [line] = opportunity_record(order, ON, None).children
    assert (line.sku, line.quantity, line.unit_price, line.total) == (
        "PROD-XYZ",
        Decimal("1"),
        Decimal("99.99"),
        Decimal("99.99"),
    )


def test_configurable_once_with_its_option_discount_tax_shipping_and_an_adjustment():
    document = order_document(
        [
            {
                "item_id": 31,
                "sku": "MH09-XS-Blue",
                "name": "Abominable Hoodie",
                "product_type": "configurable",
                "qty_ordered": 1,
                "price": 69,
                "row_total": 69,
                "discount_amount": 6.9,
            },
            {
                "item_id": 32,
                "parent_item_id": 31,
                "sku": "MH09-XS-Blue",
                "name": "Abominable Hoodie-XS-Blue",
                "product_type": "simple",
                "qty_ordered": 1,
                "price": 69,
                "row_total": 0,
            },
            {
                "item_id": 33,
                "sku": "RACER",
                "name": "Dress",
                "qty_ordered": 3,
                "price": 10,
                "row_total": 30,
                "discount_amount": 1,
            },
        ],
        grand_total="104.77",
        shipping_amount="10",
        tax_amount="8.67",
        discount_amount="-12.9",  # 7.90 on the items, 5.00 on shipping
    )
    lines = order_lines(load_order(document), ON)
    by_kind = [(line.kind, line.key, line.sku, line.quantity, line.unit_price) for line in lines]
    assert by_kind == [
        ("item", "100000007/31", "MH09-XS-Blue", Decimal("1"), Decimal("62.10")),
        ("item", "100000007/33", "RACER", Decimal("3"), Decimal("9.67")),  # 29 / 3, to the cent
        ("shipping", "100000007/shipping", "Shipping", Decimal("1"), Decimal("10.00")),
        ("tax", "100000007/tax", "Tax", Decimal("1"), Decimal("8.67")),
        # 5.00 off shipping and 0.01 of rounding (3 x 9.67 = 29.01)
        ("adjustment", "100000007/adjustment", "Order adjustment", Decimal("1"), Decimal("-5.01")),
    ]
    assert lines[0].description == "Option: Abominable Hoodie-XS-Blue (SKU: MH09-XS-Blue)"
    assert lines[0].name == "Abominable Hoodie-XS-Blue"
    assert sum(line.total for line in lines) == Decimal("104.77")


BUNDLE = [
    {
        "item_id": 1,
        "sku": "KIT",
        "name": "Kit",
        "product_type": "bundle",
        "qty_ordered": 1,
        "price": 50,
        "row_total": 50,
    },
    {
        "item_id": 2,
        "parent_item_id": 1,
        "sku": "KIT-A",
        "name": "A",
        "qty_ordered": 1,
        "price": 20,
        "row_total": 20,
    },
    {
        "item_id": 3,
        "parent_item_id": 1,
        "sku": "KIT-B",
        "name": "B",
        "qty_ordered": 2,
        "price": 15,
        "row_total": 30,
    },
]


def test_a_bundle_is_its_parent_line_unless_children_are_asked_for():
    order = load_order(order_document(BUNDLE, grand_total=50))
    assert [line.sku for line in order_lines(order, ON)] == ["KIT"]
    children = Settings.from_env(
        {"SALESFORCE_LINE_ITEMS": "true", "MAGSYNC_BUNDLE_LINES": "children"}
    )
    lines = order_lines(order, children)
    assert [(line.sku, line.quantity, line.unit_price) for line in lines] == [
        ("KIT-A", Decimal("1"), Decimal("20.00")),
        ("KIT-B", Decimal("2"), Decimal("15.00")),
    ]


def test_line_records_carry_their_key_and_links_and_no_amount_of_their_own():
    order = load_order(load_fixture("seed_webhook.json")["order"])
    [record] = line_records(order_lines(order, ON), ON, "@{opportunity.id}", {"PROD-XYZ": "01u1"})
    assert record.sobject == "OpportunityLineItem"
    assert (record.external_id_field, record.external_id) == ("Magento_Item_ID__c", "000000123/1")
    assert record.links == {"OpportunityId": "@{opportunity.id}", "PricebookEntryId": "01u1"}
    assert "TotalPrice" not in record.fields
    assert record.fields["UnitPrice"] == Decimal("99.99")
    assert LineItemSchema.Meta.salesforce_enabled(ON)
    assert not LineItemSchema.Meta.salesforce_enabled(Settings.from_env({}))


cents = st.integers(min_value=0, max_value=10_000_000).map(lambda c: Decimal(c) / 100)
quantities = st.one_of(
    st.integers(min_value=1, max_value=97).map(Decimal),
    st.integers(min_value=1, max_value=4000).map(lambda q: Decimal(q) / 1000),
)


def spell(amount, how):
    """An amount as Magento's REST (number), Adobe I/O (4-decimal string) or a bare string."""
    return {"number": float(amount), "db": f"{amount:.4f}", "text": str(amount)}[how]


@st.composite
def orders(draw):
    how = draw(st.sampled_from(["number", "db", "text"]))
    items = []
    subtotal = Decimal("0")
    for index in range(draw(st.integers(min_value=0, max_value=6))):
        qty = draw(quantities)
        price = draw(cents)
        row_total = (price * qty).quantize(Decimal("0.01"))
        discount = min(draw(cents), row_total)
        subtotal += row_total - discount
        items.append(
            {
                "item_id": 100 + index,
                "sku": f"SKU-{index % 3}",
                "name": f"P{index}",
                "qty_ordered": spell(qty, how),
                "price": spell(price, how),
                "row_total": spell(row_total, how),
                "discount_amount": spell(discount, how),
            }
        )
    shipping, tax, order_discount = draw(cents), draw(cents), draw(cents)
    grand_total = max(Decimal("0"), subtotal + shipping + tax - order_discount)
    currency = draw(st.sampled_from(["USD", "EUR", "JPY", "GBP"]))
    document = order_document(
        items,
        grand_total=spell(grand_total, how),
        shipping_amount=spell(shipping, how),
        tax_amount=spell(tax, how),
        discount_amount=spell(-order_discount, how),
        order_currency_code=currency,
    )
    return document, grand_total


@settings(max_examples=300, deadline=None)
@given(orders())
def test_the_lines_always_add_up_to_the_grand_total(case):
    document, grand_total = case
    lines = order_lines(load_order(document), ON)
    assert sum((line.total for line in lines), Decimal("0")) == grand_total
    assert all(line.quantity > 0 for line in lines)
    assert len({line.key for line in lines}) == len(lines)
    assert sum(1 for line in lines if line.kind == "adjustment") <= 1
