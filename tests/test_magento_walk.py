"""Walking the store's orders by (updated_at, entity_id): keyset paging against the sandbox
store over real HTTP with OAuth 1.0a, in both of Magento's paging behaviours."""

import datetime as dt
from urllib.parse import parse_qsl

import pytest

from magsync.errors import RetryLater
from magsync.magento.client import MagentoClient
from magsync.magento.walk import (
    MAX_PAGE_SIZE,
    SCAN_FIELDS,
    Cursor,
    OrderWalk,
    StorePagingError,
    check_page,
    fields_param,
    ids_params,
    is_last_page,
    magento_time,
    search_params,
)
from magsync.sandbox.magento import SandboxStore
from magsync.settings import ConfigError, Settings

SECOND = "2024-03-01 12:00:00"
BEFORE = "2024-03-01 11:59:59"


@pytest.fixture(params=["last_page", "empty"])
def store(request):
    """A started store (no webhooks) answering a page past the end as Magento 2.3 or 2.4."""
    with SandboxStore(seed=7, past_end=request.param) as store:
        yield store


def client_for(store, **env):
    return MagentoClient(Settings.from_env({**store.settings(), **env}))


def order_searches(store, since=0):
    """The store's log of ``GET /rest/V1/orders``, each with its decoded query."""
    return [
        {**entry, "params": dict(parse_qsl(entry["query"]))}
        for entry in store.requests(since)
        if entry["path"] == "/rest/V1/orders"
    ]


def keys(orders):
    return [(order["updated_at"], order["entity_id"]) for order in orders]


# -- paging through ties --------------------------------------------------------------------------


@pytest.mark.parametrize(("count", "requests"), [(700, 7), (701, 8)])
def test_700_orders_sharing_one_second_are_each_seen_once_in_a_few_requests(store, count, requests):
    earlier = store.create_orders(5, at=BEFORE)
    placed = store.create_orders(count, at=SECOND)
    store.create_orders(5, at=BEFORE)  # later entity ids, earlier second: not in the walk
    walk = client_for(store).walk_orders(SECOND)
    mark = len(store.requests())

    seen = list(walk)

    assert [order["entity_id"] for order in seen] == [order["entity_id"] for order in placed]
    assert {order["updated_at"] for order in seen} == {SECOND}
    assert not {order["entity_id"] for order in earlier} & {order["entity_id"] for order in seen}
    searches = order_searches(store, mark)
    assert len(searches) == walk.pages == requests
    assert all(search["status"] == 200 for search in searches)
    assert {search["params"]["searchCriteria[currentPage]"] for search in searches} == {"1"}
    assert {search["params"]["searchCriteria[pageSize]"] for search in searches} == {"100"}
    # Each page after the first starts strictly after the last order of the page before.
    for number, search in enumerate(searches[1:], start=1):
        last = seen[number * 100 - 1]
        group = "searchCriteria[filter_groups][1][filters]"
        assert search["params"][f"{group}[0][value]"] == SECOND
        assert search["params"][f"{group}[1][value]"] == str(last["entity_id"])
    assert walk.cursor == Cursor(SECOND, placed[-1]["entity_id"])
    assert walk.remaining == 0


def test_orders_over_several_seconds_with_ties_come_in_key_order(store):
    seconds = [f"2024-03-01 12:00:0{n}" for n in range(5)]
    for round_ in range(20):
        for second in seconds[::-1] if round_ % 2 else seconds:
            store.place_order(created_at=second)
    store.place_order()  # placed now: after every one of them

    seen = list(client_for(store).walk_orders(seconds[1], page_size=7))

    expected = sorted(
        (order["updated_at"], order["entity_id"])
        for order in store.truth()
        if order["updated_at"] >= seconds[1]
    )
    assert keys(seen) == expected
    assert len(expected) == 4 * 20 + 1
    assert [order["updated_at"] for order in seen[:20]] == [seconds[1]] * 20


def test_an_order_saved_during_the_walk_moves_to_the_end_and_nothing_is_skipped(store):
    placed = [order["entity_id"] for order in store.create_orders(700, at=SECOND)]
    seen_early, not_yet_seen = placed[10], placed[400]
    walk = client_for(store).walk_orders(SECOND)

    seen = []
    for order in walk:
        seen.append(order)
        if len(seen) == 150:
            store.comment(seen_early, "address corrected")
            store.comment(not_yet_seen, "address corrected")

    ids = [order["entity_id"] for order in seen]
    assert set(ids) == set(placed)
    assert ids.count(seen_early) == 2 and ids.count(not_yet_seen) == 1
    assert len(ids) == 701
    assert keys(seen) == sorted(keys(seen)) and len(set(keys(seen))) == len(seen)
    moved = {order["entity_id"]: order["updated_at"] for order in seen[-2:]}
    assert set(moved) == {seen_early, not_yet_seen}
    assert all(stamp > SECOND for stamp in moved.values())
    assert moved[not_yet_seen] == store.order(not_yet_seen)["updated_at"]


def test_a_walk_resumes_from_its_cursor(store):
    placed = [order["entity_id"] for order in store.create_orders(450, at=SECOND)]
    client = client_for(store)
    first = client.walk_orders(SECOND)
    head = []
    for order in first:
        head.append(order["entity_id"])
        if len(head) == 250:
            break
    checkpoint = tuple(first.cursor)  # what a ledger would keep: a string and an int
    assert checkpoint == (SECOND, placed[249])
    mark = len(store.requests())

    rest = [order["entity_id"] for order in client.walk_orders(cursor=checkpoint)]

    assert head + rest == placed
    assert len(order_searches(store, mark)) == 2
    # A cursor read back as a datetime resumes at the same place.
    again = client.walk_orders(cursor=(dt.datetime(2024, 3, 1, 12, tzinfo=dt.UTC), placed[-2]))
    assert [order["entity_id"] for order in again] == [placed[-1]]


# -- what a walk asks for -------------------------------------------------------------------------


def test_a_cheap_scan_fetches_only_the_fields_asked_for(store):
    store.create_orders(30, at=SECOND)
    mark = len(store.requests())

    scanned = list(client_for(store).walk_orders(SECOND, fields=SCAN_FIELDS))
    trimmed = list(client_for(store).walk_orders(SECOND, fields=["increment_id"]))

    assert len(scanned) == 30
    assert all(set(order) == set(SCAN_FIELDS) for order in scanned)
    assert all(set(order) == {"increment_id", "updated_at", "entity_id"} for order in trimmed)
    truth = {order["entity_id"]: order for order in store.truth()}
    assert all(order["store_id"] == truth[order["entity_id"]]["store_id"] for order in scanned)
    sent = [search["params"]["fields"] for search in order_searches(store, mark)]
    assert sent == [
        "items[entity_id,increment_id,updated_at,store_id],total_count",
        "items[increment_id,updated_at,entity_id],total_count",
    ]


def test_whole_orders_by_default(store):
    placed = store.create_orders(3, at=SECOND)
    walked = list(client_for(store).walk_orders(SECOND))
    assert walked == [store.order(order["entity_id"]) for order in placed]


def test_an_end_bound_is_exclusive(store):
    at = {second: store.create_orders(3, at=f"2024-03-01 12:00:0{second}") for second in range(3)}
    client = client_for(store)

    def walked(until):
        return [order["entity_id"] for order in client.walk_orders(SECOND, until=until)]

    first_two = [order["entity_id"] for order in at[0] + at[1]]
    assert walked("2024-03-01 12:00:02") == first_two
    # Half a second into 12:00:01 is after the orders saved in that second.
    assert walked(dt.datetime(2024, 3, 1, 12, 0, 1, 500000)) == first_two
    assert walked(SECOND) == []
    assert client.walk_orders(SECOND, until="2024-03-01 12:00:02").count() == 6


def test_a_store_code_keeps_the_walk_to_that_store_view(store):
    for number in range(40):
        store.place_order(created_at=SECOND, store_id=1 + number % 4)
    mark = len(store.requests())
    walk = client_for(store).walk_orders(SECOND, store_code="fr", page_size=3)

    seen = list(walk)

    truth = [order for order in store.truth() if order["store_id"] == 2]
    assert keys(seen) == keys(truth) and len(seen) == 10
    views = [entry for entry in store.requests(mark) if entry["path"].endswith("/storeViews")]
    assert len(views) == 1  # the code is resolved once per walk
    assert walk.pages == 4


def test_an_unknown_store_code_is_refused_before_any_search(store):
    store.create_orders(2, at=SECOND)
    mark = len(store.requests())
    with pytest.raises(ValueError, match=r"no store view 'xx' \(it has de, default, fr, jp, uk\)"):
        list(client_for(store).walk_orders(SECOND, store_code="xx"))
    assert order_searches(store, mark) == []


def test_the_page_size_comes_from_the_setting(store):
    store.create_orders(9, at=SECOND)
    mark = len(store.requests())
    walk = client_for(store, MAGSYNC_RECONCILE_PAGE_SIZE="4").walk_orders(SECOND)
    assert len(list(walk)) == 9
    sizes = [search["params"]["searchCriteria[pageSize]"] for search in order_searches(store, mark)]
    assert sizes == ["4", "4", "4"]


# -- signatures -----------------------------------------------------------------------------------


def test_the_bracketed_query_is_signed_and_a_wrong_secret_is_refused(store):
    store.create_orders(3, at=SECOND, store_id=3)
    store.create_orders(2, at=SECOND, store_id=1)
    mark = len(store.requests())

    walked = list(client_for(store).walk_orders(SECOND, store_code="de", fields=SCAN_FIELDS))
    forged = client_for(store, MAGENTO_CONSUMER_SECRET="0" * 32).walk_orders(SECOND)
    with pytest.raises(RetryLater) as refused:
        list(forged)

    log = store.requests(mark)
    assert [entry["status"] for entry in log] == [200, 200, 401]
    assert "[filter_groups][" in log[1]["query"].replace("%5B", "[").replace("%5D", "]")
    assert [order["store_id"] for order in walked] == [3, 3, 3]
    assert refused.value.reason == "magento_unauthorized"
    assert "The signature is invalid" in str(refused.value)


# -- query building and stop rule (no store) ------------------------------------------------------


def test_the_first_page_filters_on_updated_at_alone():
    assert search_params(Cursor.start("2024-03-01 12:00:00")) == [
        ("searchCriteria[filter_groups][0][filters][0][field]", "updated_at"),
        ("searchCriteria[filter_groups][0][filters][0][value]", "2024-03-01 12:00:00"),
        ("searchCriteria[filter_groups][0][filters][0][condition_type]", "gteq"),
        ("searchCriteria[sortOrders][0][field]", "updated_at"),
        ("searchCriteria[sortOrders][0][direction]", "ASC"),
        ("searchCriteria[sortOrders][1][field]", "entity_id"),
        ("searchCriteria[sortOrders][1][direction]", "ASC"),
        ("searchCriteria[pageSize]", "100"),
        ("searchCriteria[currentPage]", "1"),
    ]


def test_later_pages_start_after_the_cursor_within_the_bounds():
    params = search_params(
        Cursor("2024-03-01 12:00:00", 4711),
        until="2024-04-01 00:00:00",
        store_id=2,
        page_size=300,
        fields=fields_param(SCAN_FIELDS),
    )
    group = "searchCriteria[filter_groups]"
    assert params == [
        (f"{group}[0][filters][0][field]", "updated_at"),
        (f"{group}[0][filters][0][value]", "2024-03-01 12:00:00"),
        (f"{group}[0][filters][0][condition_type]", "gteq"),
        (f"{group}[1][filters][0][field]", "updated_at"),
        (f"{group}[1][filters][0][value]", "2024-03-01 12:00:00"),
        (f"{group}[1][filters][0][condition_type]", "gt"),
        (f"{group}[1][filters][1][field]", "entity_id"),
        (f"{group}[1][filters][1][value]", "4711"),
        (f"{group}[1][filters][1][condition_type]", "gt"),
        (f"{group}[2][filters][0][field]", "updated_at"),
        (f"{group}[2][filters][0][value]", "2024-04-01 00:00:00"),
        (f"{group}[2][filters][0][condition_type]", "lt"),
        (f"{group}[3][filters][0][field]", "store_id"),
        (f"{group}[3][filters][0][value]", "2"),
        (f"{group}[3][filters][0][condition_type]", "eq"),
        ("searchCriteria[sortOrders][0][field]", "updated_at"),
        ("searchCriteria[sortOrders][0][direction]", "ASC"),
        ("searchCriteria[sortOrders][1][field]", "entity_id"),
        ("searchCriteria[sortOrders][1][direction]", "ASC"),
        ("searchCriteria[pageSize]", "300"),
        ("searchCriteria[currentPage]", "1"),
        ("fields", "items[entity_id,increment_id,updated_at,store_id],total_count"),
    ]


@pytest.mark.parametrize(
    ("count", "total_count", "page_size", "last"),
    [
        (100, 700, 100, False),  # a full page with more after it
        (100, 100, 100, True),  # a full page that is all there was: no request to confirm it
        (99, 99, 100, True),  # a short page
        (0, 0, 100, True),  # nothing at all (both behaviours on page 1)
        (100, None, 100, False),  # no total_count: only a short page ends it
        (7, None, 100, True),
    ],
)
def test_when_a_page_is_the_last(count, total_count, page_size, last):
    assert is_last_page(count, total_count, page_size) is last


@pytest.mark.parametrize(
    ("value", "round_up", "expected"),
    [
        ("2024-03-01", False, "2024-03-01 00:00:00"),
        ("2024-03-01 12:00:00", False, "2024-03-01 12:00:00"),
        ("2024-03-01T14:00:00+02:00", False, "2024-03-01 12:00:00"),
        (dt.date(2024, 3, 1), False, "2024-03-01 00:00:00"),
        (dt.datetime(2024, 3, 1, 12, 0, 0, 1), False, "2024-03-01 12:00:00"),
        (dt.datetime(2024, 3, 1, 12, 0, 0, 1), True, "2024-03-01 12:00:01"),
        (dt.datetime(2024, 3, 1, 12, 0, 0), True, "2024-03-01 12:00:00"),
    ],
)
def test_times_are_written_as_magento_writes_them(value, round_up, expected):
    assert magento_time(value, round_up=round_up) == expected


def test_a_page_out_of_key_order_stops_the_walk():
    cursor = Cursor("2024-03-01 12:00:00", 5)
    check_page(cursor, [{"updated_at": "2024-03-01 12:00:00", "entity_id": 6}])
    check_page(
        Cursor("2024-03-01 12:00:00"), [{"updated_at": "2024-03-01 12:00:00", "entity_id": 1}]
    )
    bad_pages = [
        [{"updated_at": "2024-03-01 12:00:00", "entity_id": 5}],  # the cursor's own order again
        [{"updated_at": "2024-03-01 11:59:59", "entity_id": 9}],  # before the cursor
        [
            {"updated_at": "2024-03-01 12:00:01", "entity_id": 9},
            {"updated_at": "2024-03-01 12:00:01", "entity_id": 8},  # not sorted
        ],
        [{"entity_id": 9}],  # trimmed without its updated_at
    ]
    for page in bad_pages:
        with pytest.raises(StorePagingError):
            check_page(cursor, page)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({}, "either since or cursor"),
        ({"since": "2024-03-01", "cursor": ("2024-03-01 00:00:00", 1)}, "either since or cursor"),
        ({"since": "yesterday"}, "not a date or time"),
        ({"since": "2024-03-01", "page_size": 301}, "from 1 to 300"),
        ({"since": "2024-03-01", "page_size": 0}, "from 1 to 300"),
        ({"since": "2024-03-01", "fields": ["billing_address[city]"]}, "not an order field"),
        ({"since": "2024-03-01", "until": 5}, "not a date or time"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(arguments, message):
    with pytest.raises(ValueError, match=message):
        OrderWalk(None, **arguments)  # no client: nothing may be asked of the store


@pytest.mark.parametrize("raw", ["0", "301", "many"])
def test_the_page_size_setting_is_checked(raw):
    with pytest.raises(ConfigError, match="MAGSYNC_RECONCILE_PAGE_SIZE"):
        Settings.from_env({"MAGSYNC_RECONCILE_PAGE_SIZE": raw})
    assert Settings.from_env({}).reconcile_page_size == 100


def test_a_page_of_orders_by_id_names_them_all_and_refuses_more_than_a_page():
    params = dict(ids_params([5, "12", 7]))
    assert params["searchCriteria[filter_groups][0][filters][0][field]"] == "entity_id"
    assert params["searchCriteria[filter_groups][0][filters][0][value]"] == "5,12,7"
    assert params["searchCriteria[filter_groups][0][filters][0][condition_type]"] == "in"
    assert params["searchCriteria[pageSize]"] == "3"
    with pytest.raises(ValueError):
        ids_params([])
    with pytest.raises(ValueError):
        ids_params(range(1, MAX_PAGE_SIZE + 2))
