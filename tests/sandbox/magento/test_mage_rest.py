"""The REST API: OAuth 1.0a accept and reject cases, orders by id, searchCriteria semantics."""

import http.client
import json
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import urlencode, urlsplit

import pytest
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256, Client

from magsync.sandbox.magento import SandboxStore
from tests.sandbox.magento.helpers import Rest, oauth_for

NOT_AUTHORIZED = {
    "message": "The consumer isn't authorized to access %resources.",
    "parameters": {"resources": "Magento_Sales::actions_view"},
}
BAD_SIGNATURE = {"message": "The signature is invalid. Verify and try again."}
BAD_TIMESTAMP = {"message": "An error occurred validating the nonce"}


def test_a_signed_request_reads_an_order_as_the_store_holds_it(quiet_store, rest):
    order = quiet_store.place_order(kind="configurable")
    response = rest.get(f"V1/orders/{order['entity_id']}")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == quiet_store.order(order["entity_id"])
    # Written the way PHP's json_encode writes: escaped slashes and \u escapes.
    assert "\\n" in response.text and not any(ord(c) > 127 for c in response.text)


@pytest.mark.parametrize("prefix", ["V1", "default/V1", "all/V1", "fr/V1", "jp/V1"])
def test_store_codes_in_the_path_reach_the_same_api(quiet_store, rest, prefix):
    order = quiet_store.place_order()
    response = rest.get(f"{prefix}/orders/{order['entity_id']}")
    assert response.status_code == 200
    assert response.json()["increment_id"] == order["increment_id"]


@pytest.mark.parametrize(
    ("path", "status", "body"),
    [
        (
            "V1/orders/9999",
            404,
            {"message": "The entity that was requested doesn't exist. Verify the entity and "
             "try again."},
        ),
        (
            "V1/orders/abc",
            400,
            {
                "message": 'The "%1" value\'s type is invalid. The "%2" type was expected. '
                "Verify and try again.",
                "parameters": ["abc", "int"],
            },
        ),
        ("V1/orders/0", 400, {"message": "An ID is needed. Set the ID and try again."}),
        ("V1/products", 404, {"message": "Request does not match any route."}),
        ("nosuchstore/V1/orders/1", 404, {"message": "Request does not match any route."}),
    ],
)  # fmt: skip
def test_errors_have_magentos_bodies(rest, path, status, body):
    response = rest.get(path)
    assert (response.status_code, response.json()) == (status, body)


def test_unknown_routes_are_404_even_without_credentials(rest):
    response = rest.session.get(f"{rest.store.url}/rest/V1/customers/1", timeout=10)
    assert response.status_code == 404
    assert response.json() == {"message": "Request does not match any route."}


def stale(seconds):
    return str(int(time.time()) + seconds)


REJECTIONS = [
    ("wrong consumer secret", {"client_secret": "x" * 32}, 401, BAD_SIGNATURE),
    ("wrong token secret", {"resource_owner_secret": "y" * 32}, 401, BAD_SIGNATURE),
    ("stale timestamp", {"timestamp": stale(-3600)}, 401, BAD_TIMESTAMP),
    ("timestamp from the future", {"timestamp": stale(3600)}, 401, BAD_TIMESTAMP),
    (
        "HMAC-SHA1",
        {"signature_method": SIGNATURE_HMAC_SHA1},
        400,
        {"message": "Signature method %1 is not supported", "parameters": ["HMAC-SHA1"]},
    ),
    (
        "unknown consumer",
        {"client_key": "k" * 32},
        401,
        {"message": "A consumer having the specified key does not exist"},
    ),
    (
        "short consumer key",
        {"client_key": "abc"},
        401,
        {"message": "Consumer key is not the correct length"},
    ),
    (
        "unknown token",
        {"resource_owner_key": "t" * 32},
        401,
        {"message": "Specified token does not exist"},
    ),
    (
        "short token",
        {"resource_owner_key": "t" * 10},
        400,
        {"message": "The token length is invalid. Check the length and try again."},
    ),
]  # fmt: skip


@pytest.mark.parametrize(
    ("overrides", "status", "body"),
    [case[1:] for case in REJECTIONS],
    ids=[case[0] for case in REJECTIONS],
)
def test_badly_signed_requests_are_refused(quiet_store, rest, overrides, status, body):
    order = quiet_store.place_order()
    auth = oauth_for(quiet_store.settings(), **overrides)
    response = rest.get(f"V1/orders/{order['entity_id']}", auth=auth)
    assert (response.status_code, response.json()) == (status, body)
    assert rest.get(f"V1/orders/{order['entity_id']}").status_code == 200


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer {token}"},
        {"Authorization": "Basic YWRtaW46cGFzc3dvcmQ="},
    ],
    ids=["no credentials", "bearer access token", "basic"],
)
def test_requests_without_an_oauth_signature_are_not_authorized(quiet_store, rest, headers):
    token = quiet_store.settings()["MAGENTO_ACCESS_TOKEN"]
    headers = {key: value.format(token=token) for key, value in headers.items()}
    response = rest.session.get(f"{quiet_store.url}/rest/V1/orders/1", headers=headers, timeout=10)
    assert (response.status_code, response.json()) == (401, NOT_AUTHORIZED)


def test_a_nonce_can_be_used_once(quiet_store, rest):
    order = quiet_store.place_order()
    auth = oauth_for(quiet_store.settings(), nonce="samenonce1234567890123")
    first = rest.get(f"V1/orders/{order['entity_id']}", auth=auth)
    second = rest.get(f"V1/orders/{order['entity_id']}", auth=auth)
    assert first.status_code == 200
    assert (second.status_code, second.json()) == (
        401,
        {
            "message": "The nonce is already being used by the consumer with ID %1",
            "parameters": ["1"],
        },
    )


def test_a_query_changed_after_signing_is_refused(quiet_store, rest):
    prepared = rest.session.prepare_request(
        __import__("requests").Request(
            "GET",
            f"{quiet_store.url}/rest/V1/orders",
            params={"searchCriteria[pageSize]": 10},
            auth=rest.auth,
        )
    )
    prepared.url = prepared.url.replace("pageSize%5D=10", "pageSize%5D=11")
    response = rest.session.send(prepared, timeout=10)
    assert (response.status_code, response.json()) == (401, BAD_SIGNATURE)


def test_bracketed_search_criteria_are_signed_like_any_parameter(quiet_store, rest):
    for _ in range(3):
        quiet_store.place_order()
    params = {
        "searchCriteria[filter_groups][0][filters][0][field]": "updated_at",
        "searchCriteria[filter_groups][0][filters][0][value]": "2000-01-01 00:00:00",
        "searchCriteria[filter_groups][0][filters][0][condition_type]": "gteq",
        "searchCriteria[sortOrders][0][field]": "updated_at",
        "searchCriteria[sortOrders][0][direction]": "ASC",
        "searchCriteria[pageSize]": 100,
        "searchCriteria[currentPage]": 1,
    }
    response = rest.get("V1/orders", params=params)
    assert response.status_code == 200
    assert response.json()["total_count"] == 3


def test_literal_brackets_verify_like_percent_encoded_ones(quiet_store):
    quiet_store.place_order()
    settings = quiet_store.settings()
    client = Client(
        settings["MAGENTO_CONSUMER_KEY"],
        settings["MAGENTO_CONSUMER_SECRET"],
        settings["MAGENTO_ACCESS_TOKEN"],
        settings["MAGENTO_ACCESS_TOKEN_SECRET"],
        signature_method=SIGNATURE_HMAC_SHA256,
    )
    encoded = urlencode({"searchCriteria[pageSize]": "5", "searchCriteria[currentPage]": "1"})
    url, headers, _ = client.sign(f"{quiet_store.url}/rest/V1/orders?{encoded}")
    literal = urlsplit(url).path + "?searchCriteria[pageSize]=5&searchCriteria[currentPage]=1"
    connection = http.client.HTTPConnection("127.0.0.1", quiet_store.port, timeout=10)
    try:
        connection.request("GET", literal, headers=headers)
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 200
    assert body["search_criteria"]["page_size"] == 5


# -- searchCriteria -----------------------------------------------------------------------------


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self):
        self.now = datetime(2024, 6, 1, 8, 0, 0, tzinfo=UTC)

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def shop():
    """A store with 30 orders placed a minute apart, some then changed; and a REST client."""
    clock = Clock()
    with SandboxStore(seed=21, clock=clock) as store:
        for number in range(30):
            order = store.place_order(kind="guest" if number % 3 == 0 else "registered")
            clock.now += timedelta(minutes=1)
            if number % 5 == 1:
                store.cancel(order["entity_id"])
            elif number % 7 == 2:
                store.invoice(order["entity_id"])
        client = Rest(store)
        yield store, client
        client.close()


def criteria(groups=(), sort=(), page_size=None, current_page=None, camel=False):
    """searchCriteria query parameters; groups = [[(field, value, condition), ...], ...]."""
    keys = {
        "groups": "filterGroups" if camel else "filter_groups",
        "condition": "conditionType" if camel else "condition_type",
        "sort": "sortOrders" if camel else "sort_orders",
        "size": "pageSize" if camel else "page_size",
        "page": "currentPage" if camel else "current_page",
    }
    params = []
    for g, group in enumerate(groups):
        for f, (field, value, condition) in enumerate(group):
            base = f"searchCriteria[{keys['groups']}][{g}][filters][{f}]"
            params.append((f"{base}[field]", field))
            if value is not None:
                params.append((f"{base}[value]", value))
            if condition is not None:
                params.append((f"{base}[{keys['condition']}]", condition))
    for s, (field, direction) in enumerate(sort):
        params.append((f"searchCriteria[{keys['sort']}][{s}][field]", field))
        if direction is not None:
            params.append((f"searchCriteria[{keys['sort']}][{s}][direction]", direction))
    if page_size is not None:
        params.append((f"searchCriteria[{keys['size']}]", page_size))
    if current_page is not None:
        params.append((f"searchCriteria[{keys['page']}]", current_page))
    return params or [("searchCriteria", "")]


def ids(response):
    assert response.status_code == 200, response.text
    return [order["entity_id"] for order in response.json()["items"]]


def test_pages_cover_everything_once_and_past_the_end_repeat_the_last(shop):
    store, rest = shop
    every = sorted(order["entity_id"] for order in store.truth())
    pages = [
        ids(rest.get("V1/orders", criteria(page_size=7, current_page=page))) for page in range(1, 6)
    ]
    assert [len(page) for page in pages[:5]] == [7, 7, 7, 7, 2]
    assert sorted(entity for page in pages for entity in page) == every
    beyond = rest.get("V1/orders", criteria(page_size=7, current_page=9))
    assert ids(beyond) == pages[4]
    body = beyond.json()
    assert body["total_count"] == 30
    assert body["search_criteria"] == {"filter_groups": [], "page_size": 7, "current_page": 9}
    assert ids(rest.get("V1/orders", criteria(page_size=7, current_page=0))) == pages[0]


def test_page_size_is_capped_at_300_and_defaults_to_20(shop):
    _, rest = shop
    too_big = rest.get("V1/orders", criteria(page_size=301))
    assert (too_big.status_code, too_big.json()) == (
        400,
        {"message": "Maximum SearchCriteria pageSize is %max", "parameters": {"max": 300}},
    )
    assert len(ids(rest.get("V1/orders", criteria(page_size=300)))) == 30
    assert len(ids(rest.get("V1/orders", criteria()))) == 20


def test_search_criteria_are_required(shop):
    _, rest = shop
    response = rest.get("V1/orders")
    assert (response.status_code, response.json()) == (
        400,
        {
            "message": '"%fieldName" is required. Enter and try again.',
            "parameters": {"fieldName": "searchCriteria"},
        },
    )


def truth_where(store, predicate):
    return sorted(order["entity_id"] for order in store.truth() if predicate(order))


def filtered(rest, groups):
    return sorted(ids(rest.get("V1/orders", criteria(groups, page_size=300))))


def test_updated_at_filters_compare_timestamps(shop):
    store, rest = shop
    orders = store.truth()
    middle = sorted(order["updated_at"] for order in orders)[15]
    for condition, predicate in [
        ("gteq", lambda o: o["updated_at"] >= middle),
        ("gt", lambda o: o["updated_at"] > middle),
        ("lt", lambda o: o["updated_at"] < middle),
        ("lteq", lambda o: o["updated_at"] <= middle),
        ("eq", lambda o: o["updated_at"] == middle),
        ("neq", lambda o: o["updated_at"] != middle),
        ("from", lambda o: o["updated_at"] >= middle),
        ("to", lambda o: o["updated_at"] <= middle),
    ]:
        expected = truth_where(store, predicate)
        assert expected, condition
        assert filtered(rest, [[("updated_at", middle, condition)]]) == expected, condition
    day = middle[:10]
    assert filtered(rest, [[("updated_at", day, "gteq")]]) == truth_where(
        store, lambda o: o["updated_at"] >= f"{day} 00:00:00"
    )


def test_from_and_to_in_two_groups_make_a_range_and_in_one_group_anything(shop):
    store, rest = shop
    stamps = sorted(order["created_at"] for order in store.truth())
    low, high = stamps[5], stamps[12]
    in_range = truth_where(store, lambda o: low <= o["created_at"] <= high)
    assert len(in_range) == 8
    assert filtered(rest, [[("created_at", low, "from")], [("created_at", high, "to")]]) == in_range
    anything = filtered(rest, [[("created_at", low, "from"), ("created_at", high, "to")]])
    assert anything == truth_where(store, lambda o: True)


def test_other_condition_types(shop):
    store, rest = shop
    orders = store.truth()
    numbers = [o["increment_id"] for o in orders[:4]]
    email = orders[3]["customer_email"]
    prefix = email[:4].lower()

    def total(order):
        return Decimal(str(order["grand_total"]))

    def state(*names):
        return lambda o: o["state"] in names

    cases = [
        ([[("state", "canceled", "eq")]], state("canceled")),
        ([[("state", "CANCELED", None)]], state("canceled")),
        ([[("state", "new", "neq")]], lambda o: o["state"] != "new"),
        ([[("increment_id", ",".join(numbers), "in")]], lambda o: o["increment_id"] in numbers),
        (
            [[("increment_id", ",".join(numbers), "nin")]],
            lambda o: o["increment_id"] not in numbers,
        ),
        (
            [[("customer_email", prefix + "%", "like")]],
            lambda o: o["customer_email"].lower().startswith(prefix),
        ),
        (
            [[("customer_email", "%example.org", "nlike")]],
            lambda o: not o["customer_email"].endswith("example.org"),
        ),
        ([[("customer_id", None, "null")]], lambda o: "customer_id" not in o),
        ([[("customer_id", None, "notnull")]], lambda o: "customer_id" in o),
        ([[("customer_id", "0", "neq")]], lambda o: "customer_id" in o),
        ([[("grand_total", "100", "gt")]], lambda o: total(o) > 100),
        ([[("grand_total", "100", "moreq")]], lambda o: total(o) >= 100),
        ([[("store_id", "2,3", "in")]], lambda o: o["store_id"] in (2, 3)),
        ([[("total_paid", "0", "gt")]], lambda o: o.get("total_paid", 0) > 0),
        (
            [[("state", "canceled", "eq"), ("state", "processing", "eq")]],
            state("canceled", "processing"),
        ),
        (
            [[("customer_is_guest", "1", "eq")], [("state", "new", "eq")]],
            lambda o: o["customer_is_guest"] == 1 and o["state"] == "new",
        ),
    ]
    for groups, predicate in cases:
        expected = truth_where(store, predicate)
        assert 0 < len(expected) < 30 or groups[0][0][2] in ("neq", "nin", "nlike"), groups
        assert filtered(rest, groups) == expected, groups


def test_grand_total_compares_as_a_number_not_as_text(shop):
    store, rest = shop
    cheap = truth_where(store, lambda o: Decimal(str(o["grand_total"])) < 9)
    assert filtered(rest, [[("grand_total", "9", "lt")]]) == cheap
    assert len(cheap) < 30


def test_sorting_on_updated_at_and_numbers(shop):
    store, rest = shop
    orders = store.truth()
    by_update = [
        o["entity_id"] for o in sorted(orders, key=lambda o: (o["updated_at"], o["entity_id"]))
    ]
    ascending = ids(rest.get("V1/orders", criteria(sort=[("updated_at", "ASC")], page_size=300)))
    assert ascending == by_update
    descending = ids(rest.get("V1/orders", criteria(sort=[("updated_at", "desc")], page_size=300)))
    newest_first = sorted(orders, key=lambda o: o["updated_at"], reverse=True)
    assert [o["updated_at"] for o in map(store.order, descending)] == [
        o["updated_at"] for o in newest_first
    ]
    # Magento sorts descending when no direction is given.
    implied = ids(rest.get("V1/orders", criteria(sort=[("grand_total", None)], page_size=300)))
    totals = [Decimal(str(store.order(i)["grand_total"])) for i in implied]
    assert totals == sorted(totals, reverse=True)
    bad = rest.get("V1/orders", criteria(sort=[("updated_at", "UP")]))
    assert (bad.status_code, bad.json()) == (
        400,
        {
            "message": "The sort order has to be specified as %1 for ascending order or %2 for "
            "descending order.",
            "parameters": ["ASC", "DESC"],
        },
    )


def test_reconciliation_paging_by_updated_at_sees_every_order_once(shop):
    store, rest = shop
    since = sorted(order["updated_at"] for order in store.truth())[10]
    seen, page = [], 1
    while True:
        body = rest.get(
            "V1/orders",
            criteria([[("updated_at", since, "gteq")]], [("updated_at", "ASC")], 4, page),
        ).json()
        seen += [(o["updated_at"], o["entity_id"]) for o in body["items"]]
        if page * 4 >= body["total_count"]:
            break
        page += 1
    assert seen == sorted(seen)
    assert [entity for _, entity in seen] == [
        o["entity_id"]
        for o in sorted(store.truth(), key=lambda o: (o["updated_at"], o["entity_id"]))
        if o["updated_at"] >= since
    ]


def test_camel_case_and_snake_case_keys_mean_the_same(shop):
    _, rest = shop
    groups = [[("state", "canceled", "eq")]]
    snake = rest.get("V1/orders", criteria(groups, [("entity_id", "ASC")], 5))
    camel = rest.get("V1/orders", criteria(groups, [("entity_id", "ASC")], 5, camel=True))
    assert snake.json() == camel.json()
    assert snake.json()["search_criteria"]["filter_groups"] == [
        {"filters": [{"field": "state", "value": "canceled", "condition_type": "eq"}]}
    ]


def test_filtering_on_something_that_is_not_a_column_fails_like_sql(shop):
    _, rest = shop
    response = rest.get("V1/orders", criteria([[("billing_address", "x", "eq")]]))
    assert response.status_code == 500
    assert response.json()["message"].startswith(
        "Internal Error. Details are available in Magento log file. Report ID: webapi-"
    )


def test_fields_trims_the_answer(shop):
    _, rest = shop
    params = [*criteria(page_size=2), ("fields", "items[entity_id,increment_id],total_count")]
    body = rest.get("V1/orders", params).json()
    assert set(body) == {"items", "total_count"}
    assert all(set(item) == {"entity_id", "increment_id"} for item in body["items"])
