"""Generated orders look like the recorded ones, add up, and follow Magento's lifecycle."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from magsync.sandbox.magento.errors import MagentoError
from magsync.sandbox.magento.generator import OrderGenerator
from magsync.sandbox.magento.orders import OrderBook, SaveClock
from tests.sandbox.magento.helpers import load_order

# Keys present only for some orders of a kind (a customer without birthday, no cart rule...).
OPTIONAL_TOP = {
    "customer_dob",
    "customer_gender",
    "coupon_code",
    "discount_description",
    "applied_rule_ids",
    "customer_note",
}
OPTIONAL_ITEM = {"applied_rule_ids", "weight"}
OPTIONAL_ADDRESS = {"region", "region_code", "region_id"}
OPTIONAL_PAYMENT = {"po_number"}
# Magento writes these as JSON integers, never as decimals.
INTEGER_KEYS = {
    "entity_id", "item_id", "order_id", "parent_item_id", "product_id", "quote_item_id",
    "quote_id", "store_id", "customer_id", "customer_group_id", "customer_is_guest",
    "customer_note_notify", "billing_address_id", "customer_address_id", "parent_id",
    "is_virtual", "is_qty_decimal", "no_discount", "free_shipping", "total_item_count",
    "edit_increment", "region_id", "option_value", "customer_gender",
}  # fmt: skip


def json_type(value):
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    return {str: "string", type(None): "null", list: "array", dict: "object"}[type(value)]


def shape_problems(expected, actual, where, optional=frozenset()):
    """Differences in key set and value types between a recorded and a generated object."""
    problems = []
    missing = set(expected) - set(actual) - optional
    extra = set(actual) - set(expected) - optional
    if missing:
        problems.append(f"{where}: missing {sorted(missing)}")
    if extra:
        problems.append(f"{where}: unexpected {sorted(extra)}")
    for key in set(expected) & set(actual):
        if json_type(expected[key]) != json_type(actual[key]):
            problems.append(f"{where}.{key}: {json_type(actual[key])}, recorded {expected[key]!r}")
        elif key in INTEGER_KEYS and not isinstance(actual[key], int):
            problems.append(f"{where}.{key}: {actual[key]!r} is not an integer")
    return problems


def role(row):
    if "parent_item_id" in row:
        return "child"
    return row["product_type"]


ROLE_ROWS = {role(row): row for row in load_order("configurable")["items"]}
ROLE_TAX = load_order("configurable")["extension_attributes"]["applied_taxes"][0]


def order_shape_problems(recorded, order):
    problems = shape_problems(recorded, order, "order", OPTIONAL_TOP)
    for index, row in enumerate(order["items"]):
        reference = ROLE_ROWS[role(row)]
        problems += shape_problems(reference, row, f"items[{index}]", OPTIONAL_ITEM)
        if "parent_item" in row:
            problems += shape_problems(
                ROLE_ROWS["configurable"], row["parent_item"], "parent_item", OPTIONAL_ITEM
            )
        for option in (
            row.get("product_option", {})
            .get("extension_attributes", {})
            .get("configurable_item_options", [])
        ):
            problems += shape_problems(
                {"option_id": "93", "option_value": 1}, option, "configurable_item_options"
            )
    problems += shape_problems(
        recorded["billing_address"], order["billing_address"], "billing", OPTIONAL_ADDRESS
    )
    problems += shape_problems(recorded["payment"], order["payment"], "payment", OPTIONAL_PAYMENT)
    extension, expected_extension = order["extension_attributes"], recorded["extension_attributes"]
    problems += shape_problems(expected_extension, extension, "extension_attributes")
    [assignment] = extension["shipping_assignments"]
    [expected_assignment] = expected_extension["shipping_assignments"]
    problems += shape_problems(expected_assignment["shipping"], assignment["shipping"], "shipping")
    problems += shape_problems(
        expected_assignment["shipping"]["address"],
        assignment["shipping"]["address"],
        "shipping.address",
        OPTIONAL_ADDRESS,
    )
    problems += shape_problems(
        expected_assignment["shipping"]["total"], assignment["shipping"]["total"], "total"
    )
    for tax in extension["applied_taxes"]:
        problems += shape_problems(ROLE_TAX, tax, "applied_taxes")
    return problems


@pytest.fixture
def book():
    return OrderBook(OrderGenerator(seed=3))


@pytest.mark.parametrize(
    ("kind", "pins"),
    [
        ("registered", {}),
        ("guest", {}),
        ("configurable", {"customer_is_guest": 0}),
    ],
)
def test_generated_orders_have_the_keys_and_types_of_the_recorded_ones(book, kind, pins):
    recorded = load_order(kind)
    for _ in range(40):
        order = book.place(kind=kind, **pins)
        assert order_shape_problems(recorded, order) == []
    if kind == "configurable":
        assert {"configurable", "child"} <= {role(row) for row in order["items"]}


def test_edited_orders_have_the_keys_and_types_of_the_recorded_one(book):
    recorded = load_order("edited")
    for _ in range(10):
        original = book.place(kind="registered")
        edited = book.apply(original["entity_id"], "edit")
        assert order_shape_problems(recorded, edited) == []


def test_the_shape_check_catches_a_missing_or_retyped_field(book):
    recorded = load_order("registered")
    order = book.place(kind="registered")
    del order["base_grand_total"]
    order["customer_id"] = str(order["customer_id"])
    order["items"][0]["qty_ordered"] = "1"
    problems = order_shape_problems(recorded, order)
    assert any("missing ['base_grand_total']" in p for p in problems)
    assert any("customer_id" in p for p in problems)
    assert any("qty_ordered" in p for p in problems)


def D(value):
    return Decimal(str(value))


def test_amounts_add_up_in_both_currencies(book):
    for _ in range(150):
        order = book.place()
        visible = [row for row in order["items"] if "parent_item_id" not in row]
        for prefix in ("", "base_"):
            subtotal = sum(D(row[f"{prefix}row_total"]) for row in visible)
            discount = sum(D(row[f"{prefix}discount_amount"]) for row in visible)
            tax = sum(D(row[f"{prefix}tax_amount"]) for row in visible)
            assert D(order[f"{prefix}subtotal"]) == subtotal
            assert D(order[f"{prefix}discount_amount"]) == -discount
            assert D(order[f"{prefix}tax_amount"]) == tax
            assert D(order[f"{prefix}grand_total"]) == (
                subtotal - discount + D(order[f"{prefix}shipping_amount"]) + tax
            )
        assert order["total_due"] == order["grand_total"]
        assert order["total_item_count"] == len(visible)
        assert D(order["total_qty_ordered"]) == sum(D(row["qty_ordered"]) for row in visible)
        rate = D(order["base_to_order_rate"])
        assert abs(D(order["base_subtotal"]) * rate - D(order["subtotal"])) <= D("0.05") * len(
            visible
        )
        assert order["payment"]["amount_ordered"] == order["grand_total"]


def test_configurable_children_and_copies_are_consistent(book):
    for _ in range(40):
        order = book.place(kind="configurable")
        rows = {row["item_id"]: row for row in order["items"]}
        children = [row for row in order["items"] if "parent_item_id" in row]
        assert children
        for child in children:
            parent = rows[child["parent_item_id"]]
            assert parent["product_type"] == "configurable"
            assert child["product_type"] == "simple"
            assert child["row_total"] == 0 and child["base_price"] == 0
            assert child["price"] == parent["price"]
            assert child["sku"] == parent["sku"]
            assert child["parent_item"] == parent
        [assignment] = order["extension_attributes"]["shipping_assignments"]
        assert assignment["items"] == order["items"]


def test_guests_have_names_only_on_their_addresses(book):
    for _ in range(20):
        order = book.place(kind="guest")
        assert order["customer_is_guest"] == 1 and order["customer_group_id"] == 0
        for key in ("customer_id", "customer_firstname", "customer_lastname"):
            assert order.get(key) is None
        assert order["billing_address"]["firstname"] and order["billing_address"]["lastname"]
        assert "customer_address_id" not in order["billing_address"]
        shipping = order["extension_attributes"]["shipping_assignments"][0]["shipping"]["address"]
        assert shipping["customer_address_id"] == 0


def test_orders_vary_the_way_real_stores_do(book):
    orders = [book.place() for _ in range(300)]
    assert {order["store_id"] for order in orders} == {1, 2, 3, 4, 5}
    assert {order["order_currency_code"] for order in orders} >= {"USD", "EUR", "GBP", "JPY"}
    assert any(order["base_currency_code"] != order["order_currency_code"] for order in orders)
    assert {order["customer_is_guest"] for order in orders} == {0, 1}
    assert any(order["discount_amount"] < 0 for order in orders)
    discounted_rows = [row for order in orders for row in order["items"] if row["discount_amount"]]
    assert discounted_rows and all(row["discount_amount"] > 0 for row in discounted_rows)
    assert any(order["tax_amount"] > 0 for order in orders)
    assert any(order["tax_amount"] == 0 for order in orders)
    names = [order["billing_address"]["lastname"] for order in orders]
    assert any(not name.isascii() for name in names)
    assert any("'" in name for name in names)
    emails = [order["customer_email"] for order in orders]
    assert any("'" in email for email in emails)
    assert any('"' in email for email in emails)
    assert any(len(row["name"]) > 200 for order in orders for row in order["items"])
    assert any(len(order.get("customer_note", "")) > 200 for order in orders)
    methods = {order["payment"]["method"] for order in orders}
    assert len(methods) >= 3
    shipping = {
        order["extension_attributes"]["shipping_assignments"][0]["shipping"]["method"]
        for order in orders
    }
    assert len(shipping) == 3


def fixed_clock(start=datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)):
    current = {"now": start}
    return (lambda: current["now"]), current


def test_the_same_seed_gives_the_same_orders():
    clock, _ = fixed_clock()
    first = OrderBook(OrderGenerator(seed=42), SaveClock(clock))
    second = OrderBook(OrderGenerator(seed=42), SaveClock(clock))
    other = OrderBook(OrderGenerator(seed=43), SaveClock(clock))
    a = [first.place() for _ in range(20)]
    assert a == [second.place() for _ in range(20)]
    assert a != [other.place() for _ in range(20)]


def test_pinned_fields_are_kept_and_the_rest_fits_around_them(book):
    pins = {
        "increment_id": "000000123",
        "customer_email": "jane.doe@example.com",
        "customer_firstname": "Jane",
        "customer_lastname": "Doe",
        "grand_total": 99.99,
        "created_at": "2023-10-26 10:00:00",
        "billing_address": {
            "firstname": "Jane",
            "lastname": "Doe",
            "street": ["123 Main St"],
            "city": "Anytown",
            "region": "State",
            "postcode": "12345",
            "country_id": "US",
            "telephone": "555-1234",
        },
        "items": [{"sku": "PROD-XYZ", "name": "Product X", "qty_ordered": 1, "price": 99.99}],
    }
    order = book.place(**pins)
    for key in ("increment_id", "customer_email", "customer_firstname", "grand_total"):
        assert order[key] == pins[key]
    assert order["created_at"] == order["updated_at"] == "2023-10-26 10:00:00"
    for key, value in pins["billing_address"].items():
        assert order["billing_address"][key] == value
    assert "region_id" not in order["billing_address"]
    [row] = order["items"]
    assert (row["sku"], row["name"], row["qty_ordered"], row["price"]) == (
        "PROD-XYZ",
        "Product X",
        1,
        99.99,
    )
    assert D(order["subtotal"]) + D(order["shipping_amount"]) + D(order["tax_amount"]) + D(
        order["discount_amount"]
    ) == D("99.99")
    assert order["order_currency_code"] == order["base_currency_code"] == "USD"
    assert order["customer_is_guest"] == 0 and order["customer_id"]
    again = book.place(customer_email="jane.doe@example.com", customer_firstname="Jane")
    assert again["customer_id"] == order["customer_id"]
    with pytest.raises(MagentoError) as refused:
        book.place(increment_id="000000123")
    assert refused.value.status == 400


def test_a_pinned_total_below_the_items_becomes_a_discount(book):
    order = book.place(grand_total=50, items=[{"sku": "A", "price": 40}, {"sku": "B", "price": 20}])
    assert order["grand_total"] == 50 and order["subtotal"] == 60
    assert order["discount_amount"] == -10
    assert sum(row["discount_amount"] for row in order["items"]) == 10


LIFECYCLE = [
    # (actions so far, state, status)
    (["invoice"], "processing", "processing"),
    (["invoice", "ship"], "complete", "complete"),
    (["ship"], "processing", "processing"),
    (["ship", "invoice"], "complete", "complete"),
    (["invoice", "ship", "refund"], "closed", "closed"),
    (["invoice", "refund"], "closed", "closed"),
    (["cancel"], "canceled", "canceled"),
    (["hold"], "holded", "holded"),
    (["hold", "unhold"], "new", "pending"),
    (["invoice", "hold", "unhold"], "processing", "processing"),
    (["comment"], "new", "pending"),
]


@pytest.mark.parametrize(("actions", "state", "status"), LIFECYCLE)
def test_lifecycle_states(book, actions, state, status):
    order = book.place()
    for action in actions:
        order = book.apply(order["entity_id"], action)
    assert (order["state"], order["status"]) == (state, status)


def test_invoice_ship_refund_fill_the_money_fields(book):
    order = book.place(kind="configurable")
    entity_id = order["entity_id"]
    invoiced = book.apply(entity_id, "invoice")
    assert invoiced["total_paid"] == invoiced["total_invoiced"] == order["grand_total"]
    assert invoiced["base_total_paid"] == order["base_grand_total"]
    assert invoiced["total_due"] == 0
    assert all(row["qty_invoiced"] == row["qty_ordered"] for row in invoiced["items"])
    assert invoiced["payment"]["amount_paid"] == order["grand_total"]
    shipped = book.apply(entity_id, "ship")
    assert all(row["qty_shipped"] == row["qty_ordered"] for row in shipped["items"])
    refunded = book.apply(entity_id, "refund")
    assert refunded["total_refunded"] == refunded["total_offline_refunded"] == order["grand_total"]
    assert refunded["base_total_refunded"] == order["base_grand_total"]
    assert all(row["qty_refunded"] == row["qty_ordered"] for row in refunded["items"])
    [history] = refunded["status_histories"]
    assert history["entity_name"] == "creditmemo" and "offline" in history["comment"]
    assert (
        refunded["extension_attributes"]["shipping_assignments"][0]["items"] == (refunded["items"])
    )


def test_cancel_and_hold_record_what_magento_records(book):
    order = book.place()
    canceled = book.apply(order["entity_id"], "cancel")
    assert canceled["total_canceled"] == order["grand_total"]
    assert all(row["qty_canceled"] == row["qty_ordered"] for row in canceled["items"])
    other = book.place()
    held = book.apply(other["entity_id"], "hold")
    assert (held["hold_before_state"], held["hold_before_status"]) == ("new", "pending")
    released = book.apply(other["entity_id"], "unhold")
    assert "hold_before_state" not in released


@pytest.mark.parametrize(
    ("actions", "refused"),
    [
        (["refund"], "The order does not allow a creditmemo to be created."),
        (["invoice", "invoice"], "The order does not allow an invoice to be created."),
        (["invoice", "cancel"], "You have not canceled the item."),
        (["cancel", "invoice"], "The order does not allow an invoice to be created."),
        (["ship", "ship"], "The order does not allow a shipment to be created."),
        (["hold", "invoice"], "The order does not allow an invoice to be created."),
        (["hold", "hold"], "A hold action is not available."),
        (["unhold"], "You cannot remove the hold."),
        (["invoice", "edit"], "This order cannot be edited."),
        (["invoice", "refund", "refund"], "The order does not allow a creditmemo to be created."),
    ],
)  # fmt: skip
def test_refused_actions(book, actions, refused):
    order = book.place()
    *allowed, last = actions
    for action in allowed:
        book.apply(order["entity_id"], action)
    before = book.get(order["entity_id"])
    with pytest.raises(MagentoError) as error:
        book.apply(order["entity_id"], last)
    assert (error.value.status, error.value.message) == (400, refused)
    assert book.get(order["entity_id"]) == before


def test_edit_creates_a_child_and_cancels_the_parent_in_that_order():
    saves = []
    book = OrderBook(OrderGenerator(seed=9), on_save=lambda order: saves.append(dict(order)))
    parent = book.place(kind="configurable")
    saves.clear()
    child = book.apply(parent["entity_id"], "edit")
    assert [(save["entity_id"], save["state"]) for save in saves] == [
        (child["entity_id"], "new"),
        (parent["entity_id"], "canceled"),
    ]
    assert child["increment_id"] == parent["increment_id"] + "-1"
    assert child["original_increment_id"] == parent["increment_id"]
    assert child["relation_parent_id"] == str(parent["entity_id"])
    assert child["relation_parent_real_id"] == parent["increment_id"]
    assert child["edit_increment"] == 1
    assert (child["state"], child["status"]) == ("new", "pending")
    parent_ids = {row["item_id"] for row in parent["items"]}
    assert not parent_ids & {row["item_id"] for row in child["items"]}
    for row in child["items"]:
        assert row["order_id"] == child["entity_id"]
    canceled = book.get(parent["entity_id"])
    assert canceled["state"] == "canceled"
    assert canceled["relation_child_id"] == str(child["entity_id"])
    assert canceled["relation_child_real_id"] == child["increment_id"]
    again = book.apply(child["entity_id"], "edit", customer_email="new.address@example.com")
    assert again["increment_id"] == parent["increment_id"] + "-2"
    assert again["original_increment_id"] == parent["increment_id"]
    assert again["relation_parent_real_id"] == child["increment_id"]
    assert again["customer_email"] == "new.address@example.com"


def test_saves_of_one_order_get_strictly_increasing_updated_at():
    clock, current = fixed_clock()
    saves = []
    book = OrderBook(OrderGenerator(seed=2), SaveClock(clock), on_save=saves.append)
    order = book.place()
    neighbour = book.place()
    for action in ("hold", "unhold", "invoice", "ship"):
        book.apply(order["entity_id"], action)
    stamps = [save["updated_at"] for save in saves if save["entity_id"] == order["entity_id"]]
    assert stamps == [
        "2024-05-01 12:00:00",
        "2024-05-01 12:00:01",
        "2024-05-01 12:00:02",
        "2024-05-01 12:00:03",
        "2024-05-01 12:00:04",
    ]
    # Another order saved in the same second keeps the wall-clock second, as in Magento.
    assert neighbour["updated_at"] == "2024-05-01 12:00:00"
    # The wall clock moving on is used as soon as it is ahead; stepping it back changes nothing.
    current["now"] += timedelta(seconds=30)
    assert book.apply(order["entity_id"], "comment", comment="x")["updated_at"] == (
        "2024-05-01 12:00:30"
    )
    current["now"] -= timedelta(hours=1)
    assert book.apply(neighbour["entity_id"], "hold")["updated_at"] == "2024-05-01 12:00:30"


def test_every_save_reaches_the_listener_exactly_once():
    saves = []
    book = OrderBook(OrderGenerator(seed=4), on_save=saves.append)
    order = book.place()
    for action in ("invoice", "ship", "refund"):
        book.apply(order["entity_id"], action)
    with pytest.raises(MagentoError):
        book.apply(order["entity_id"], "cancel")
    assert [save["state"] for save in saves] == ["new", "processing", "complete", "closed"]
