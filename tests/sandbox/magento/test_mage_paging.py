"""Keyset paging as Magento answers it: OR inside a filter group, AND across groups, several sort
orders, what a page past the end holds (2.3 or 2.4), orders sharing one second, store views and
the REST request log."""

import json
import subprocess
import sys

import pytest
import requests

from magsync.sandbox.magento import ControlClient, ControlError, SandboxStore
from tests.sandbox.magento.helpers import Rest, oauth_for

SECONDS = [f"2024-03-01 12:00:0{n}" for n in range(4)]


def search(rest, groups=(), sort=(), page_size=300, current_page=1):
    """A signed ``GET /V1/orders``; groups = [[(field, condition, value), ...], ...]."""
    params = []
    for g, group in enumerate(groups):
        for f, (field, condition, value) in enumerate(group):
            base = f"searchCriteria[filter_groups][{g}][filters][{f}]"
            params += [(f"{base}[field]", field), (f"{base}[value]", value)]
            params.append((f"{base}[condition_type]", condition))
    for s, (field, direction) in enumerate(sort):
        params.append((f"searchCriteria[sortOrders][{s}][field]", field))
        params.append((f"searchCriteria[sortOrders][{s}][direction]", direction))
    params += [
        ("searchCriteria[pageSize]", page_size),
        ("searchCriteria[currentPage]", current_page),
    ]
    response = rest.get("V1/orders", params)
    assert response.status_code == 200, response.text
    return response.json()


def pairs(body):
    return [(order["updated_at"], order["entity_id"]) for order in body["items"]]


@pytest.fixture(scope="module")
def ties():
    """A store with 10 orders in each of four seconds, placed round-robin (ids interleave)."""
    with SandboxStore(seed=9) as store:
        for _ in range(10):
            for second in SECONDS:
                store.place_order(created_at=second)
        rest = Rest(store)
        yield store, rest
        rest.close()


@pytest.mark.parametrize(
    ("second", "entity_id"), [(SECONDS[0], 0), (SECONDS[1], 14), (SECONDS[1], 38), (SECONDS[3], 40)]
)
def test_gt_on_updated_at_or_gt_on_entity_id_in_one_group_is_the_keyset_condition(
    ties, second, entity_id
):
    store, rest = ties
    body = search(
        rest,
        [
            [("updated_at", "gteq", second)],
            [("updated_at", "gt", second), ("entity_id", "gt", str(entity_id))],
        ],
        [("updated_at", "ASC"), ("entity_id", "ASC")],
    )
    everything = sorted((o["updated_at"], o["entity_id"]) for o in store.truth())
    after = [key for key in everything if key > (second, entity_id)]
    assert pairs(body) == after
    assert body["total_count"] == len(after)
    assert body["search_criteria"]["filter_groups"][1]["filters"] == [
        {"field": "updated_at", "value": second, "condition_type": "gt"},
        {"field": "entity_id", "value": str(entity_id), "condition_type": "gt"},
    ]


def test_the_same_filters_in_two_groups_must_all_hold(ties):
    store, rest = ties
    second, entity_id = SECONDS[1], 14
    body = search(
        rest,
        [[("updated_at", "gt", second)], [("entity_id", "gt", str(entity_id))]],
        [("updated_at", "ASC"), ("entity_id", "ASC")],
    )
    expected = sorted(
        (o["updated_at"], o["entity_id"])
        for o in store.truth()
        if o["updated_at"] > second and o["entity_id"] > entity_id
    )
    assert pairs(body) == expected
    assert len(expected) < len([o for o in store.truth() if o["updated_at"] > second])


def test_sort_orders_apply_in_turn(ties):
    store, rest = ties
    body = search(rest, sort=[("updated_at", "DESC"), ("entity_id", "ASC")])
    truth = [(o["updated_at"], o["entity_id"]) for o in store.truth()]
    newest_first = sorted(sorted(truth), key=lambda key: key[0], reverse=True)  # stable
    assert pairs(body) == newest_first
    by_id = search(rest, sort=[("entity_id", "DESC"), ("updated_at", "ASC")])
    assert [entity for _, entity in pairs(by_id)] == list(range(40, 0, -1))


def test_keyset_pages_of_ties_cover_every_order_once(ties):
    store, rest = ties
    seen, cursor = [], None
    for _ in range(10):  # 40 orders, 6 a page: 7 pages
        groups = [[("updated_at", "gteq", cursor[0] if cursor else SECONDS[0])]]
        if cursor:
            groups.append([("updated_at", "gt", cursor[0]), ("entity_id", "gt", str(cursor[1]))])
        body = search(rest, groups, [("updated_at", "ASC"), ("entity_id", "ASC")], page_size=6)
        seen += pairs(body)
        if len(body["items"]) < 6 or body["total_count"] <= 6:
            break
        cursor = seen[-1]
    assert seen == sorted((o["updated_at"], o["entity_id"]) for o in store.truth())


# -- past the last page -------------------------------------------------------------------------


def test_past_the_end_the_last_page_again_by_default_or_nothing_like_magento_2_4(quiet_store):
    quiet_store.create_orders(5)
    rest = Rest(quiet_store)
    try:
        assert quiet_store.past_end == "last_page"
        repeated = search(rest, page_size=2, current_page=4)
        assert [o["entity_id"] for o in repeated["items"]] == [5]
        assert repeated["total_count"] == 5
        quiet_store.set_paging("empty")
        empty = search(rest, page_size=2, current_page=4)
        assert empty["items"] == [] and empty["total_count"] == 5
        assert empty["search_criteria"]["current_page"] == 4
        last = search(rest, page_size=2, current_page=3)
        assert [o["entity_id"] for o in last["items"]] == [5]
    finally:
        rest.close()


def test_the_paging_knob_through_the_control_api(quiet_store):
    with ControlClient(quiet_store.url) as client:
        assert client.paging() == {"past_end": "last_page"}
        assert client.set_paging("empty") == {"past_end": "empty"}
        assert quiet_store.past_end == "empty"
        with pytest.raises(ControlError) as refused:
            client.set_paging("sometimes")
        assert refused.value.status == 400
        assert "past_end must be one of last_page, empty" in refused.value.body["message"]
        assert client.paging() == {"past_end": "empty"}
    with pytest.raises(ValueError, match="past_end"):
        SandboxStore(past_end="never")


def test_the_paging_knob_from_the_command_line(quiet_store):
    def run(*args):
        command = [sys.executable, "-m", "magsync", "sandbox", "magento", *args]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
        return json.loads(done.stdout)

    assert run("paging", "--url", quiet_store.url) == {"past_end": "last_page"}
    assert run("paging", "--past-end", "empty", "--url", quiet_store.url) == {"past_end": "empty"}
    assert quiet_store.past_end == "empty"


def test_a_store_started_for_magento_2_4_answers_empty_pages():
    command = [sys.executable, "-m", "magsync", "sandbox", "magento", "--port", "0"]
    command += ["--past-end", "empty", "--orders", "3"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True) as process:
        try:
            settings = dict(process.stdout.readline().strip().split("=", 1) for _ in range(6))
            with requests.Session() as session:
                answer = session.get(
                    settings["MAGENTO_BASE_URL"] + "/rest/V1/orders",
                    params={"searchCriteria[pageSize]": 2, "searchCriteria[currentPage]": 3},
                    auth=oauth_for(settings),
                    timeout=10,
                )
        finally:
            process.terminate()
            process.wait(timeout=15)
    assert answer.status_code == 200
    assert answer.json()["items"] == [] and answer.json()["total_count"] == 3


# -- orders sharing one second ------------------------------------------------------------------


def test_a_batch_placed_at_one_second_shares_its_updated_at(quiet_store):
    with ControlClient(quiet_store.url) as client:
        placed = client.create_orders(50, at="2024-03-01 12:00:00", store_id=2)
        with pytest.raises(ControlError) as refused:
            client.create_orders(5, at="yesterday")
        assert refused.value.status == 400
    orders = quiet_store.truth()
    assert len(orders) == 50 == placed["count"]
    assert {(o["created_at"], o["updated_at"], o["store_id"]) for o in orders} == {
        ("2024-03-01 12:00:00", "2024-03-01 12:00:00", 2)
    }
    # A later save moves the order on: it is stamped by the store's clock.
    assert quiet_store.invoice(placed["entity_ids"][0])["updated_at"] > "2024-03-01 12:00:00"


def test_the_create_command_places_orders_at_one_second(quiet_store):
    command = [sys.executable, "-m", "magsync", "sandbox", "magento", "create", "3"]
    command += ["--at", "2023-12-31 23:59:59", "--url", quiet_store.url]
    subprocess.run(command, capture_output=True, text=True, timeout=60, check=True)
    assert {o["updated_at"] for o in quiet_store.truth()} == {"2023-12-31 23:59:59"}


# -- store views and the request log ------------------------------------------------------------


def test_store_views_list_ids_and_codes(quiet_store, rest):
    views = rest.get("V1/store/storeViews").json()
    assert [(view["id"], view["code"]) for view in views] == [
        (0, "admin"),
        (1, "default"),
        (2, "fr"),
        (3, "de"),
        (4, "uk"),
        (5, "jp"),
    ]
    assert views[2] == {
        "id": 2,
        "code": "fr",
        "name": "Vue française",
        "website_id": 1,
        "store_group_id": 1,
        "is_active": 1,
    }
    assert rest.get("fr/V1/store/storeViews").json() == views
    unsigned = requests.get(f"{quiet_store.url}/rest/V1/store/storeViews", timeout=10)
    assert unsigned.status_code == 401


def test_the_request_log_records_rest_requests_and_their_answers(quiet_store, rest):
    quiet_store.place_order()
    with ControlClient(quiet_store.url) as client:
        start = client.requests()["next"]
        assert rest.get("V1/orders/1").status_code == 200
        assert rest.get("V1/orders/99").status_code == 404
        assert requests.get(f"{quiet_store.url}/rest/V1/orders/1", timeout=10).status_code == 401
        client.status()  # control calls are not REST requests
        log = client.requests(start)
    assert [(e["method"], e["path"], e["status"]) for e in log["entries"]] == [
        ("GET", "/rest/V1/orders/1", 200),
        ("GET", "/rest/V1/orders/99", 404),
        ("GET", "/rest/V1/orders/1", 401),
    ]
    assert log["next"] == start + 3
    assert [e["seq"] for e in log["entries"]] == [start, start + 1, start + 2]
