"""The store's orders in (``updated_at``, ``entity_id``) order, for reconciliation and backfill.

A walk reads ``GET /V1/orders`` one page at a time, always ``currentPage=1``, and pages by the
last order it handed out, the cursor (T, E), instead of by page number (keyset paging)::

    group 0   updated_at gteq T
    group 1   updated_at gt T   OR   entity_id gt E     (only once an order was seen)
    group 2   updated_at lt U                           (with an end bound)
    group 3   store_id eq S                             (for one store view)
    sorted    updated_at ASC, entity_id ASC

Magento ORs the filters inside a group and ANDs the groups, so a page holds the orders strictly
after (T, E). Page numbers would cost the database an ever longer OFFSET scan, and an order
saved during the walk moves to the end and shifts every later one back a place, so the next
page number skips one. Magento keeps ``updated_at`` to the second, so a bulk action or an import
gives hundreds of orders the same second; the pair still orders them, so a walk neither loops
nor skips there. An order saved during the walk is met again at the end with its newer state;
``until`` bounds a walk that must finish while the store keeps saving.

Asked past the last page, Magento 2.3 and older answer the last page again
(magento/magento2#3787) and 2.4 answers an empty one (#26986). A walk stays on page 1, so both
end the same way: a page is the last when it holds fewer than ``pageSize`` orders or when
``total_count`` (the orders after the cursor) is at most ``pageSize``.

Requests go through :class:`~magsync.magento.client.MagentoClient` (OAuth 1.0a, HMAC-SHA256):
the bracketed ``searchCriteria[...]`` keys and ``fields`` are query parameters like any other
and part of the signature base string.
"""

import datetime as dt
import re
from typing import NamedTuple

from magsync.errors import DeadLetter

TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 300
KEY_FIELDS = ("updated_at", "entity_id")
"""The walk's sort key: the fields every page is sorted on and every order must carry."""
SCAN_FIELDS = ("entity_id", "increment_id", "updated_at", "store_id")
"""What a cheap scan needs to compare an order with the ledger and to page on."""

_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class StorePagingError(DeadLetter):
    """The store answered a page that is not in the order asked for (a filter or sort ignored,
    an order without ``entity_id`` or ``updated_at``): walking on could loop or skip orders, and
    asking again gets the same answer."""

    reason = "magento_paging"
    system = "magento"


def magento_time(value, round_up=False):
    """``value`` as Magento writes timestamps: UTC ``YYYY-MM-DD HH:MM:SS``.

    Takes a datetime (naive means UTC), a date (midnight) or an ISO 8601 string. Fractions of
    a second are dropped, or rounded up to the next second with ``round_up`` (for an exclusive
    end bound, so that an order saved in that second is not left out).
    """
    if isinstance(value, str):
        try:
            value = dt.datetime.fromisoformat(value.strip())
        except ValueError:
            raise ValueError(
                f"{value!r} is not a date or time such as 2024-05-01 or 2024-05-01 12:00:00"
            ) from None
    elif isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    elif not isinstance(value, dt.datetime):
        raise ValueError(f"{value!r} is not a date or time")
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    if round_up and value.microsecond:
        value += dt.timedelta(seconds=1)
    return value.replace(microsecond=0).strftime(TIME_FORMAT)


class Cursor(NamedTuple):
    """Where a walk stands: the last order handed out, ``(updated_at, entity_id)``.

    ``entity_id`` None means nothing was seen at ``updated_at`` yet: the walk starts with the
    orders updated at that second (inclusive). A caller checkpoints the two values and resumes
    with ``Cursor(updated_at, entity_id)``.
    """

    updated_at: str
    entity_id: int | None = None

    @classmethod
    def start(cls, since):
        """The cursor before every order updated at or after ``since``."""
        return cls(magento_time(since))

    @classmethod
    def of(cls, order):
        """The cursor just past ``order``; StorePagingError when it lacks the key fields."""
        try:
            return cls(str(order["updated_at"]), int(order["entity_id"]))
        except (KeyError, TypeError, ValueError):
            raise StorePagingError(
                "the store answered an order without entity_id or updated_at"
            ) from None

    def normalised(self):
        """The same cursor with ``updated_at`` in Magento's form and ``entity_id`` an int."""
        entity_id = None if self.entity_id is None else int(self.entity_id)
        return Cursor(magento_time(self.updated_at), entity_id)

    def _key(self):
        return (self.updated_at, -1 if self.entity_id is None else self.entity_id)


def fields_param(fields):
    """The ``fields`` query value that trims orders to ``fields`` (plus the key fields).

    :data:`SCAN_FIELDS` gives ``items[entity_id,increment_id,updated_at,store_id],total_count``;
    ``("increment_id",)`` gives ``items[increment_id,updated_at,entity_id],total_count``: the
    walk always needs the key fields and ``total_count``.
    """
    if isinstance(fields, str):
        fields = [part.strip() for part in fields.split(",")]
    names = []
    for name in [*fields, *KEY_FIELDS]:
        if not isinstance(name, str) or not _FIELD.fullmatch(name):
            raise ValueError(f"{name!r} is not an order field name (letters, digits and _)")
        if name not in names:
            names.append(name)
    return f"items[{','.join(names)}],total_count"


def check_page_size(page_size):
    """``page_size`` as an int from 1 to 300 (Magento refuses more), else ValueError."""
    size = int(page_size)
    if not 1 <= size <= MAX_PAGE_SIZE:
        raise ValueError(f"page size must be from 1 to {MAX_PAGE_SIZE}, not {page_size}")
    return size


def _filters(cursor, until, store_id):
    groups = [[("updated_at", "gteq", cursor.updated_at)]]
    if cursor.entity_id is not None:
        groups.append(
            [("updated_at", "gt", cursor.updated_at), ("entity_id", "gt", str(cursor.entity_id))]
        )
    if until is not None:
        groups.append([("updated_at", "lt", until)])
    if store_id is not None:
        groups.append([("store_id", "eq", str(store_id))])
    return groups


def search_params(cursor, *, until=None, store_id=None, page_size=DEFAULT_PAGE_SIZE, fields=None):
    """The query parameters of the page after ``cursor``, as ``(key, value)`` pairs.

    ``until`` (Magento time, exclusive) and ``store_id`` add a group each; ``fields`` is a
    ``fields`` query value (see :func:`fields_param`) or None for whole orders.
    """
    params = []
    for g, group in enumerate(_filters(cursor, until, store_id)):
        for f, (field, condition, value) in enumerate(group):
            prefix = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params += [
                (f"{prefix}[field]", field),
                (f"{prefix}[value]", value),
                (f"{prefix}[condition_type]", condition),
            ]
    for s, field in enumerate(KEY_FIELDS):
        params += [
            (f"searchCriteria[sortOrders][{s}][field]", field),
            (f"searchCriteria[sortOrders][{s}][direction]", "ASC"),
        ]
    params += [("searchCriteria[pageSize]", str(page_size)), ("searchCriteria[currentPage]", "1")]
    if fields is not None:
        params.append(("fields", fields))
    return params


def ids_params(entity_ids, fields=None):
    """The query parameters of one page holding the orders ``entity_ids`` (at most
    ``MAX_PAGE_SIZE``): ``entity_id in (...)``, as ``(key, value)`` pairs."""
    ids = [str(int(entity_id)) for entity_id in entity_ids]
    if not ids or len(ids) > MAX_PAGE_SIZE:
        raise ValueError(f"between 1 and {MAX_PAGE_SIZE} order ids per page, not {len(ids)}")
    prefix = "searchCriteria[filter_groups][0][filters][0]"
    params = [
        (f"{prefix}[field]", "entity_id"),
        (f"{prefix}[value]", ",".join(ids)),
        (f"{prefix}[condition_type]", "in"),
        ("searchCriteria[pageSize]", str(len(ids))),
        ("searchCriteria[currentPage]", "1"),
    ]
    if fields is not None:
        params.append(("fields", fields))
    return params


def is_last_page(count, total_count, page_size):
    """True when a page of ``count`` orders out of ``total_count`` after the cursor ends the walk.

    A short page is the last in both of Magento's paging behaviours; so is a full one when
    ``total_count`` says nothing follows it (saving a request that would only confirm it).
    """
    if count < page_size:
        return True
    return total_count is not None and int(total_count) <= page_size


def check_page(cursor, items):
    """Raise StorePagingError unless ``items`` come strictly after ``cursor``, in key order."""
    previous = cursor._key()
    for item in items:
        key = Cursor.of(item)._key()
        if key <= previous:
            raise StorePagingError(
                "the store answered orders out of (updated_at, entity_id) order: "
                f"{key} after {previous}; it does not apply the search filters or sort orders"
            )
        previous = key


class OrderWalk:
    """The store's orders updated at or after ``since`` (or after ``cursor``), oldest first.

    Iterating yields order dicts lazily, one request per ``page_size`` orders; after each
    order :attr:`cursor` is that order's, so a caller that stops (or fails) can checkpoint the
    cursor and resume with ``cursor=`` in a new walk. Give exactly one of ``since`` and
    ``cursor``. ``until`` (exclusive) bounds the walk; ``store_code`` keeps to one store view
    (its id is read once from ``GET /V1/store/storeViews``); ``fields`` trims each order to
    those fields plus ``entity_id`` and ``updated_at`` (:data:`SCAN_FIELDS` for a cheap scan),
    None yields whole orders. ``pages`` counts the requests made for pages; ``remaining`` is
    what the store last said was left after the cursor.

    Errors: ValueError for bad arguments (raised here, before any request) or an unknown store
    code; the client's RetryLater/DeadLetter for a failed request; StorePagingError when the
    store answers out of order.
    """

    def __init__(
        self,
        client,
        since=None,
        *,
        cursor=None,
        until=None,
        store_code=None,
        page_size=DEFAULT_PAGE_SIZE,
        fields=None,
    ):
        if (since is None) == (cursor is None):
            raise ValueError("give either since or cursor")
        self.client = client
        self.cursor = Cursor.start(since) if cursor is None else Cursor(*cursor).normalised()
        self.until = None if until is None else magento_time(until, round_up=True)
        self.store_code = store_code
        self.page_size = check_page_size(page_size)
        self.fields = None if fields is None else fields_param(fields)
        self.pages = 0
        self.remaining = None
        self._store_id = None

    def __iter__(self):
        store_id = self.store_id()
        while True:
            items, last = self._page(store_id)
            for order in items:
                self.cursor = Cursor.of(order)
                self.remaining -= 1
                yield order
            if last:
                return

    def count(self):
        """How many orders the walk has left to yield, by one request for the count alone."""
        params = search_params(self.cursor, until=self.until, store_id=self.store_id(), page_size=1)
        body = self.client.search_orders([*params, ("fields", "total_count")])
        return int(body["total_count"])

    def store_id(self):
        """The id of ``store_code``'s store view (None for all views); ValueError if unknown."""
        if self.store_code is None or self._store_id is not None:
            return self._store_id
        views = {view["code"]: view["id"] for view in self.client.store_views()}
        if self.store_code not in views:
            known = ", ".join(sorted(code for code in views if code != "admin"))
            raise ValueError(f"the store has no store view {self.store_code!r} (it has {known})")
        self._store_id = int(views[self.store_code])
        return self._store_id

    def _page(self, store_id):
        params = search_params(
            self.cursor,
            until=self.until,
            store_id=store_id,
            page_size=self.page_size,
            fields=self.fields,
        )
        body = self.client.search_orders(params)
        self.pages += 1
        if not isinstance(body, dict):
            raise StorePagingError("the store's search answer is not a JSON object")
        items = body.get("items") or []
        total = body.get("total_count")
        check_page(self.cursor, items)
        self.remaining = len(items) if total is None else int(total)
        return items, is_last_page(len(items), total, self.page_size)
