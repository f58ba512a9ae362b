"""``GET /V1/orders?searchCriteria[...]``: parsing, filtering, sorting, paging, partial responses.

Semantics, as Magento's order repository applies them to the ``sales_order`` table:

* Filters sit in ``filter_groups[i][filters][j]`` with ``field``, ``value`` and
  ``condition_type`` (default ``eq``). Filters in one group are ORed, groups are ANDed. Only
  top-level order columns can be filtered; an unknown column fails inside MySQL, which Magento
  answers with a masked 500.
* Condition types: ``eq neq gt gteq lt lteq moreq from to like nlike in nin finset nfinset
  null notnull``. ``from``/``moreq`` mean ``>=`` and ``to`` means ``<=`` (so a range needs
  ``from`` and ``to`` in two groups: in one group they would be ORed). ``in``/``nin`` take a
  comma-separated list; ``like`` takes SQL wildcards (``%``, ``_``) and is case-insensitive, as
  MySQL's default collation is; ``null``/``notnull`` ignore the value. As in SQL, a missing
  (NULL) column matches no comparison, not even ``neq`` or ``nin``.
* Values compare by column type: numbers numerically, timestamps as ``YYYY-MM-DD HH:MM:SS``
  (a bare date means midnight), text case-insensitively.
* ``sort_orders[k]`` with ``field`` and ``direction`` (``ASC``/``DESC``, any case; Magento
  sorts descending when the direction is missing). NULLs sort first ascending. Ties keep
  ``entity_id`` order, so paging is stable.
* ``page_size`` above 300 is refused with Magento's input-limit error; a missing (or zero)
  ``page_size`` gets the default page size of 20, as with Magento's web API input limits on.
  ``current_page`` below 1 is page 1. Past the last page Magento 2.3 and older answer the last
  page again (magento/magento2#3787, "standard for all Magento collections"); 2.4 answers an
  empty ``items`` list (magento/magento2#26986). The store does either (``past_end``
  ``"last_page"``, the default, or ``"empty"``); ``total_count`` is the same in both.
* Keys are accepted in snake_case and camelCase (``filter_groups``/``filterGroups``...),
  case-insensitively, like Magento's input processor.
* The answer is ``{"items", "search_criteria", "total_count"}`` with ``search_criteria``
  echoing what was asked; ``?fields=`` trims the answer the way Magento does
  (``fields=items[entity_id,increment_id],total_count``).
"""

import re
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qsl

from magsync.sandbox.magento.errors import MagentoError, internal_error, required_fields

MAX_PAGE_SIZE = 300
DEFAULT_PAGE_SIZE = 20
PAST_END = ("last_page", "empty")
"""What a page past the last one holds: the last page again (Magento <= 2.3) or nothing (2.4)."""

DATETIME_COLUMNS = frozenset({"created_at", "updated_at", "customer_dob"})
TEXT_COLUMNS = frozenset(
    {
        "applied_rule_ids", "base_currency_code", "coupon_code", "customer_email",
        "customer_firstname", "customer_lastname", "customer_middlename", "customer_note",
        "customer_prefix", "customer_suffix", "customer_taxvat", "discount_description",
        "ext_customer_id", "ext_order_id", "global_currency_code", "hold_before_state",
        "hold_before_status", "increment_id", "order_currency_code", "original_increment_id",
        "protect_code", "relation_child_id", "relation_child_real_id", "relation_parent_id",
        "relation_parent_real_id", "remote_ip", "shipping_description", "state", "status",
        "store_currency_code", "store_name", "x_forwarded_for",
    }
)  # fmt: skip
NUMBER_COLUMNS = frozenset(
    {
        "adjustment_negative", "adjustment_positive", "base_adjustment_negative",
        "base_adjustment_positive", "base_discount_amount", "base_discount_canceled",
        "base_discount_invoiced", "base_discount_refunded",
        "base_discount_tax_compensation_amount", "base_discount_tax_compensation_invoiced",
        "base_discount_tax_compensation_refunded", "base_grand_total", "base_shipping_amount",
        "base_shipping_canceled", "base_shipping_discount_amount",
        "base_shipping_discount_tax_compensation_amnt", "base_shipping_incl_tax",
        "base_shipping_invoiced", "base_shipping_refunded", "base_shipping_tax_amount",
        "base_shipping_tax_refunded", "base_subtotal", "base_subtotal_canceled",
        "base_subtotal_incl_tax", "base_subtotal_invoiced", "base_subtotal_refunded",
        "base_tax_amount", "base_tax_canceled", "base_tax_invoiced", "base_tax_refunded",
        "base_to_global_rate", "base_to_order_rate", "base_total_canceled", "base_total_due",
        "base_total_invoiced", "base_total_offline_refunded", "base_total_paid",
        "base_total_refunded", "billing_address_id", "customer_gender", "customer_group_id",
        "customer_id", "customer_is_guest", "customer_note_notify", "discount_amount",
        "discount_canceled", "discount_invoiced", "discount_refunded",
        "discount_tax_compensation_amount", "discount_tax_compensation_invoiced",
        "discount_tax_compensation_refunded", "edit_increment", "email_sent", "entity_id",
        "grand_total", "is_virtual", "quote_id", "shipping_amount", "shipping_canceled",
        "shipping_discount_amount", "shipping_discount_tax_compensation_amount",
        "shipping_incl_tax", "shipping_invoiced", "shipping_refunded", "shipping_tax_amount",
        "shipping_tax_refunded", "store_id", "store_to_base_rate", "store_to_order_rate",
        "subtotal", "subtotal_canceled", "subtotal_incl_tax", "subtotal_invoiced",
        "subtotal_refunded", "tax_amount", "tax_canceled", "tax_invoiced", "tax_refunded",
        "total_canceled", "total_due", "total_invoiced", "total_item_count",
        "total_offline_refunded", "total_paid", "total_qty_ordered", "total_refunded", "weight",
    }
)  # fmt: skip
COLUMNS = DATETIME_COLUMNS | TEXT_COLUMNS | NUMBER_COLUMNS
"""Columns of ``sales_order`` that can be filtered and sorted on."""

# Canonical names of searchCriteria keys, by their lower-case form without underscores.
_KEYS = {
    "filtergroups": "filter_groups",
    "filters": "filters",
    "field": "field",
    "value": "value",
    "conditiontype": "condition_type",
    "sortorders": "sort_orders",
    "direction": "direction",
    "pagesize": "page_size",
    "currentpage": "current_page",
}
_KEY_RE = re.compile(r"^([^\[\]]+)((?:\[[^\[\]]*\])*)$")
_NUMBER_PREFIX = re.compile(r"^\s*[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")


class SearchCriteria:
    """A parsed ``searchCriteria``: groups of filters, sort orders, page; ``echo`` is its JSON."""

    def __init__(self, filter_groups, sort_orders, page_size, current_page, echo):
        self.filter_groups = filter_groups
        self.sort_orders = sort_orders
        self.page_size = page_size
        self.current_page = current_page
        self.echo = echo


def parse_query(query):
    """Nested parameters from a raw query string, PHP style (``a[b][0]=x``), insertion-ordered."""
    root = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        match = _KEY_RE.match(key)
        if not match:
            continue
        path = [match.group(1), *re.findall(r"\[([^\[\]]*)\]", match.group(2))]
        node = root
        for segment in path[:-1]:
            child = node.get(segment)
            if not isinstance(child, dict):
                child = node[segment] = {}
            node = child
        last = path[-1]
        if last == "":
            last = str(len(node))
        node[last] = value
    return root


def _canonical(node):
    """A dict's keys mapped to their canonical searchCriteria names (unknown keys dropped)."""
    if not isinstance(node, dict):
        return {}
    result = {}
    for key, value in node.items():
        name = _KEYS.get(key.replace("_", "").lower())
        if name is not None:
            result[name] = value
    return result


def _listed(node):
    """A PHP list (a dict keyed by index) as a Python list, in insertion order."""
    return list(node.values()) if isinstance(node, dict) else []


def _integer(raw):
    try:
        return int(raw)
    except (TypeError, ValueError):
        raise MagentoError(
            400,
            'The "%1" value\'s type is invalid. The "%2" type was expected. Verify and try again.',
            [raw, "int"],
        ) from None


def parse(query):
    """The :class:`SearchCriteria` of a raw query string; raises MagentoError like Magento."""
    params = parse_query(query)
    raw = params.get("searchCriteria", params.get("search_criteria"))
    if raw is None:
        raise required_fields(["searchCriteria"])
    raw = _canonical(raw)
    echo = {"filter_groups": []}
    groups = []
    for group in _listed(raw.get("filter_groups")):
        filters, echo_filters = [], []
        for item in _listed(_canonical(group).get("filters")):
            item = _canonical(item)
            field = item.get("field")
            if not field:
                raise required_fields(["field"])
            condition = item.get("condition_type") or "eq"
            if condition not in CONDITIONS:
                raise MagentoError(400, 'Invalid condition type "%1".', [condition])
            value = item.get("value")
            filters.append((field, condition, value))
            shown = {"field": field, "value": value, "condition_type": condition}
            echo_filters.append({key: shown[key] for key in shown if shown[key] is not None})
        groups.append(filters)
        echo["filter_groups"].append({"filters": echo_filters})
    sort_orders = []
    for order in _listed(raw.get("sort_orders")):
        order = _canonical(order)
        field = order.get("field")
        direction = order.get("direction")
        if direction is not None and direction.upper() not in ("ASC", "DESC"):
            raise MagentoError(
                400,
                "The sort order has to be specified as %1 for ascending order or %2 for "
                "descending order.",
                ["ASC", "DESC"],
            )
        # Magento's sort-order processor sorts descending unless ASC is asked for.
        ascending = direction is not None and direction.upper() == "ASC"
        sort_orders.append((field, ascending))
        shown = {"field": field}
        if direction is not None:
            shown["direction"] = direction.upper()
        echo.setdefault("sort_orders", []).append(shown)
    page_size = _integer(raw["page_size"]) if "page_size" in raw else 0
    if page_size > MAX_PAGE_SIZE:
        raise MagentoError(400, "Maximum SearchCriteria pageSize is %max", {"max": MAX_PAGE_SIZE})
    if page_size <= 0:
        page_size = DEFAULT_PAGE_SIZE
    echo["page_size"] = page_size
    current_page = 1
    if "current_page" in raw:
        current_page = _integer(raw["current_page"])
        echo["current_page"] = current_page
    return SearchCriteria(groups, sort_orders, page_size, max(current_page, 1), echo)


# -- evaluation -------------------------------------------------------------------------------


def _column(field):
    if field not in COLUMNS:
        # Magento lets the SQL fail on an unknown column and masks the exception.
        raise internal_error()
    if field in DATETIME_COLUMNS:
        return "datetime"
    if field in NUMBER_COLUMNS:
        return "number"
    return "text"


def _comparable(kind, value):
    """A stored or filter value made comparable for a column kind (MySQL's casting rules)."""
    if value is None:
        return None
    if kind == "number":
        if isinstance(value, bool):
            return Decimal(int(value))
        if isinstance(value, (int, float)):
            return Decimal(str(value))
        match = _NUMBER_PREFIX.match(str(value))
        try:
            return Decimal(match.group(0).strip()) if match else Decimal(0)
        except InvalidOperation:
            return Decimal(0)
    text = str(value)
    if kind == "datetime":
        return text if len(text) > 10 else f"{text} 00:00:00"
    return text.casefold()


def _like(pattern):
    parts = []
    escaped = False
    for char in pattern:
        if escaped:
            parts.append(re.escape(char))
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == "%":
            parts.append(".*")
        elif char == "_":
            parts.append(".")
        else:
            parts.append(re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _compare(op):
    def check(kind, stored, value):
        if stored is None or value is None:
            return False
        return op(_comparable(kind, stored), _comparable(kind, value))

    return check


def _in(kind, stored, value):
    if stored is None or value is None:
        return False
    stored = _comparable(kind, stored)
    return any(stored == _comparable(kind, part) for part in str(value).split(","))


def _not_in(kind, stored, value):
    return stored is not None and value is not None and not _in(kind, stored, value)


def _match_like(kind, stored, value):
    return stored is not None and value is not None and bool(_like(value).fullmatch(str(stored)))


def _not_like(kind, stored, value):
    return stored is not None and value is not None and not _match_like(kind, stored, value)


def _find_in_set(kind, stored, value):
    if stored is None or value is None:
        return False
    return str(value).casefold() in [part.casefold() for part in str(stored).split(",")]


def _not_find_in_set(kind, stored, value):
    return stored is not None and value is not None and not _find_in_set(kind, stored, value)


CONDITIONS = {
    "eq": _compare(lambda a, b: a == b),
    "neq": _compare(lambda a, b: a != b),
    "gt": _compare(lambda a, b: a > b),
    "gteq": _compare(lambda a, b: a >= b),
    "moreq": _compare(lambda a, b: a >= b),
    "from": _compare(lambda a, b: a >= b),
    "lt": _compare(lambda a, b: a < b),
    "lteq": _compare(lambda a, b: a <= b),
    "to": _compare(lambda a, b: a <= b),
    "like": _match_like,
    "nlike": _not_like,
    "in": _in,
    "nin": _not_in,
    "finset": _find_in_set,
    "nfinset": _not_find_in_set,
    "null": lambda kind, stored, value: stored is None,
    "notnull": lambda kind, stored, value: stored is not None,
}
"""Condition types by name: ``check(column_kind, stored_value, filter_value) -> bool``."""


def _sort_key(kind):
    def key(order):
        value = _comparable(kind, order[1])
        return (value is not None, value if value is not None else 0)

    return key


def _compiled(field, condition, value):
    """``(field, kind, check, value)`` of one filter; an ``in`` / ``nin`` list is parsed once
    per search into a set (a batch asks for up to 300 ids among all the store's orders)."""
    kind = _column(field)
    if condition in ("in", "nin") and value is not None:
        members = frozenset(_comparable(kind, part) for part in str(value).split(","))
        inside = condition == "in"

        def check(kind, stored, _value):
            if stored is None:
                return False
            return (_comparable(kind, stored) in members) is inside

        return field, kind, check, value
    return field, kind, CONDITIONS[condition], value


def search(orders, criteria, past_end="last_page"):
    """``(page_items, total_count)`` of ``orders`` (dicts) under ``criteria``.

    ``past_end`` (one of :data:`PAST_END`) says what a ``current_page`` past the last page gets.
    """
    compiled = [
        [_compiled(field, condition, value) for field, condition, value in group]
        for group in criteria.filter_groups
    ]
    sorts = [(field, _column(field), ascending) for field, ascending in criteria.sort_orders]
    matched = [
        order
        for order in orders
        if all(
            any(check(kind, order.get(field), value) for field, kind, check, value in group)
            for group in compiled
            if group
        )
    ]
    matched.sort(key=lambda order: order["entity_id"])
    for field, kind, ascending in reversed(sorts):
        pairs = [(order, order.get(field)) for order in matched]
        pairs.sort(key=_sort_key(kind), reverse=not ascending)
        matched = [order for order, _ in pairs]
    total = len(matched)
    size = criteria.page_size
    last_page = max(1, -(-total // size))
    page = criteria.current_page
    if page > last_page:
        if past_end == "empty":
            return [], total
        page = last_page
    return matched[(page - 1) * size : page * size], total


def response(orders, criteria, past_end="last_page"):
    """The body of ``GET /V1/orders`` (``past_end`` as in :func:`search`)."""
    items, total = search(orders, criteria, past_end)
    return {"items": items, "search_criteria": criteria.echo, "total_count": total}


# -- partial responses ------------------------------------------------------------------------


def parse_fields(spec):
    """``items[entity_id,billing_address[city]],total_count`` as a nested dict (None = whole)."""
    tree, stack, name = {}, [], ""
    node = tree
    for char in spec:
        if char == "[":
            child = node.setdefault(name.strip(), {})
            if child is None:
                child = node[name.strip()] = {}
            stack.append(node)
            node, name = child, ""
        elif char in ",]":
            if name.strip():
                node.setdefault(name.strip(), None)
            name = ""
            if char == "]" and stack:
                node = stack.pop()
        else:
            name += char
    if name.strip():
        node.setdefault(name.strip(), None)
    return tree


def select_fields(document, tree):
    """``document`` trimmed to ``tree`` (from :func:`parse_fields`); lists are trimmed per item."""
    if tree is None:
        return document
    if isinstance(document, list):
        return [select_fields(item, tree) for item in document]
    if not isinstance(document, dict):
        return document
    return {key: select_fields(value, tree[key]) for key, value in document.items() if key in tree}
