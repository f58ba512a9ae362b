"""What a batch of orders (``magsync.sync.batch.write_batch``) makes of them, on a SQLite and a
PostgreSQL ledger, against the sandbox org: the same per-order outcomes as one order at a time,
in a handful of Salesforce calls; a refused record fails its order only; of two versions of one
order the newest is applied and the other recorded as superseded; a batch cut short by a crash
or a failed call leaves each order retriable without duplicates."""

import copy

import pytest

from magsync.errors import DeadLetter, Deferred, RetryLater
from magsync.ledger import Ledger, migrate
from magsync.settings import Settings
from magsync.sync import pipeline
from magsync.sync.batch import write_batch
from magsync.sync.services import Services
from tests.helpers import approval_schema, load_fixture

SEED = load_fixture("seed_webhook.json")["order"]


@pytest.fixture
def org(org_factory):
    schema = approval_schema()
    return org_factory(schema=schema)


@pytest.fixture
def services(org, database_url):
    """Build ``Services`` on the test's ledger (one per simulated process); closed after."""
    migrated = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(migrated.engine)
    migrated.close()
    built = []

    def build(**env):
        values = {"DATABASE_URL": database_url, **org.settings(), **env}
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def order(number, updated="2023-10-26 10:00:00", email=None, **changes):
    document = copy.deepcopy(SEED)
    document.update(increment_id=number, entity_id=int(number.split("-")[0]), updated_at=updated)
    document["customer_email"] = email or f"buyer{int(number.split('-')[0]) % 7}@example.com"
    document.update(changes)
    return document


def prepared(*documents, svc):
    out = []
    for document in documents:
        event = {
            "entity_id": document["entity_id"],
            "increment_id": document["increment_id"],
            "order": document,
        }
        out.append(pipeline.prepare(event, svc))
    return out


def calls(org):
    return dict(org.stats()["calls_by_kind"])


def added(org, before):
    after = calls(org)
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def records(org, sobject, **match):
    return [r for r in org.records(sobject) if all(r.get(k) == v for k, v in match.items())]


def opportunity(org, number):
    [record] = records(org, "Opportunity", Magento_Order_ID__c=number)
    return record


def numbers(first, count):
    return [f"{first + n:09d}" for n in range(count)]


# -- the calls a batch costs ----------------------------------------------------------------------


def test_a_batch_of_first_orders_costs_three_calls_and_matches_one_at_a_time(org, services):
    svc = services()
    # Two of the seven buyers are in Salesforce already (one without an Account).
    [account_id] = org.insert("Account", [{"Name": "Buyer One Ltd"}])
    org.insert(
        "Contact",
        [
            {"LastName": "One", "Email": "BUYER1@example.com", "AccountId": account_id},
            {"LastName": "Two", "Email": "buyer2@example.com"},
        ],
    )
    documents = [order(n) for n in numbers(100000001, 30)]
    before = calls(org)
    outcomes = write_batch(prepared(*documents, svc=svc), svc)
    assert [o.get("sf_created") for o in outcomes] == [True] * 30, outcomes
    # The buyers, one SOQL query; five new buyers' Accounts and Contacts and the link of
    # buyer2's Contact, one Composite call; thirty Opportunities and their contact roles, one
    # Composite call.
    assert added(org, before) == {"query": 1, "composite": 2}
    assert {o["api_calls"] for o in outcomes} == {3} and {o["batch"] for o in outcomes} == {30}
    assert len(org.records("Account")) == len(org.records("Contact")) == 7
    contacts = {c["Email"].lower(): c for c in org.records("Contact")}
    assert contacts["buyer1@example.com"]["AccountId"] == account_id
    assert contacts["buyer2@example.com"]["AccountId"]  # linked to the Account made for it
    roles = org.records("OpportunityContactRole")
    assert len(roles) == 30
    for document in documents:
        opp = opportunity(org, document["increment_id"])
        contact = contacts[document["customer_email"]]
        assert opp["AccountId"] == contact["AccountId"]
        assert [r["ContactId"] for r in roles if r["OpportunityId"] == opp["Id"]] == [contact["Id"]]
        state = svc.ledger.order(document["increment_id"])
        assert (state.status, state.record_id, state.contact_id) == (
            "synced",
            opp["Id"],
            contact["Id"],
        )
    linked = svc.ledger.customer("buyer2@example.com")
    assert linked.contact_id == contacts["buyer2@example.com"]["Id"]

    # Later versions of the same orders: one Collections upsert, nothing else.
    later = [dict(d, updated_at="2023-10-26 11:00:00", state="processing") for d in documents]
    before = calls(org)
    outcomes = write_batch(prepared(*later, svc=svc), svc)
    assert added(org, before) == {"collectionsUpsert": 1}
    assert {o["stage"] for o in outcomes} == {"Qualification"}
    assert {o["sf_created"] for o in outcomes} == {False}

    # Stale and unchanged versions cost nothing and are recorded as such.
    before = calls(org)
    outcomes = write_batch(prepared(*(documents[:3] + later[3:6]), svc=svc), svc)
    assert added(org, before) == {}
    assert [o["skipped"] for o in outcomes] == ["stale"] * 3 + ["unchanged"] * 3


def test_a_batch_of_one_costs_what_one_order_costs(org, services):
    svc = services()
    before = calls(org)
    [outcome] = write_batch(prepared(order("100000001"), svc=svc), svc)
    assert added(org, before) == {"query": 1, "composite": 1}
    assert outcome["api_calls"] == 2 and "batch" not in outcome


def test_guests_as_leads_in_a_batch(org, services):
    svc = services(MAGSYNC_GUEST_MODE="lead")
    documents = [
        order(n, customer_is_guest=1, customer_firstname=None, customer_lastname=None)
        for n in numbers(100000001, 5)
    ] + [order("100000011")]
    before = calls(org)
    outcomes = write_batch(prepared(*documents, svc=svc), svc)
    assert [o["sobject"] for o in outcomes] == ["Lead"] * 5 + ["Opportunity"]
    # The Leads in one Collections upsert; the one Opportunity with its buyer and role.
    assert added(org, before) == {
        "collectionsUpsert": 1,
        "query": 1,
        "composite": 1,
        "upsert": 1,
        "collectionsCreate": 1,
    }
    assert len(org.records("Lead")) == 5


# -- one order's failure is its own ---------------------------------------------------------------


def test_a_rejected_record_fails_only_its_order(org, services):
    svc = services()
    documents = [order(n) for n in numbers(100000001, 10)]
    documents[4]["grand_total"] = 300000
    outcomes = write_batch(prepared(*documents, svc=svc), svc)
    rejected = outcomes[4]
    assert isinstance(rejected, DeadLetter)
    assert rejected.reason == "FIELD_CUSTOM_VALIDATION_EXCEPTION"
    others = outcomes[:4] + outcomes[5:]
    assert all(isinstance(o, dict) and o["sf_created"] for o in others), others
    assert not records(org, "Opportunity", Magento_Order_ID__c=documents[4]["increment_id"])
    assert len(org.records("Opportunity")) == len(org.records("OpportunityContactRole")) == 9
    state = svc.ledger.order(documents[4]["increment_id"])
    # Salesforce answered: nothing of that write can land later, so a retry need not wait.
    assert (state.updated_at, state.status, state.in_doubt) == (None, "failed", True)


def test_a_call_that_fails_as_a_whole_fails_its_orders_and_leaves_them_retriable(org, services):
    svc = services()
    documents = [order(n) for n in numbers(100000001, 6)]
    # The second Composite call, the Opportunities' (the first made the buyers), answers 503.
    org.add_fault(kind="unavailable", method="POST", path_regex=r"/composite$", after=1, count=1)
    outcomes = write_batch(prepared(*documents, svc=svc), svc)
    assert all(isinstance(o, RetryLater) and o.reason == "http_503" for o in outcomes)
    # One Salesforce failure, however many orders it failed: the breaker counts it once.
    assert len({id(o.failed_call) for o in outcomes}) == 1
    assert len({id(o) for o in outcomes}) == 6
    assert org.records("Opportunity") == []
    # The buyers were made and remembered before the Opportunities' call failed.
    assert len(org.records("Contact")) == 6

    before = calls(org)
    outcomes = write_batch(prepared(*documents, svc=svc), svc)
    assert all(o.get("sf_created") for o in outcomes), outcomes
    assert added(org, before) == {"collectionsUpsert": 1, "query": 1, "collectionsCreate": 1}
    for sobject in ("Account", "Contact"):
        assert len(org.records(sobject)) == 6, sobject
    assert len(org.records("OpportunityContactRole")) == 6


class WorkerKilled(BaseException):
    """Stands for a worker that dies between Salesforce's answer and the ledger's commit."""


def test_a_batch_killed_after_salesforce_answered_loses_and_duplicates_nothing(
    org, services, monkeypatch
):
    svc = services()
    documents = [order(n) for n in numbers(100000001, 8)]

    def killed(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(svc.ledger, "applied_many", killed)
    with pytest.raises(WorkerKilled):
        write_batch(prepared(*documents, svc=svc), svc)
    assert {svc.ledger.order(d["increment_id"]).in_doubt for d in documents} == {True}

    # The redelivered events, in another worker process: within MAGSYNC_LATE_WRITE_WINDOW a call
    # of the dead worker may still land after a lookup, so each order waits, without a call.
    before = calls(org)
    waiting = services()
    outcomes = write_batch(prepared(*documents, svc=waiting), waiting)
    assert {(type(o), o.reason) for o in outcomes} == {(Deferred, "interrupted_write")}
    assert added(org, before) == {}

    again = services(MAGSYNC_LATE_WRITE_WINDOW="0.001")  # once the window has passed
    outcomes = write_batch(prepared(*documents, svc=again), again)
    assert all(o.get("sf_created") is False for o in outcomes), outcomes
    # The in-doubt orders' roles are looked up (one query), found, and not created again.
    assert added(org, before) == {"collectionsUpsert": 1, "query": 1}
    for sobject in ("Account", "Contact"):
        assert len(org.records(sobject)) == 7, sobject  # the seven buyers of the eight orders
    assert len(org.records("Opportunity")) == len(org.records("OpportunityContactRole")) == 8
    for document in documents:
        state = again.ledger.order(document["increment_id"])
        assert (state.status, state.in_doubt, state.attempts) == ("synced", False, 2)
        assert state.contact_role_id


# -- two versions of one order ------------------------------------------------------------------


def test_of_two_versions_of_an_order_the_newest_is_applied_and_the_other_superseded(org, services):
    svc = services()
    older = order("100000001")
    newer = order("100000001", updated="2023-10-26 12:00:00", state="processing", grand_total=80)
    other = order("100000002")
    before = calls(org)
    outcomes = write_batch(prepared(newer, other, older, svc=svc), svc)
    assert outcomes[0]["stage"] == "Qualification"
    assert outcomes[2]["skipped"] == "superseded"
    assert added(org, before) == {"query": 1, "composite": 2}
    opp = opportunity(org, "100000001")
    assert (opp["StageName"], opp["Amount"]) == ("Qualification", 80)
    state, history = svc.ledger.history("100000001")
    assert state.updated_at.strftime("%H:%M") == "12:00"
    assert [e.kind for e in history] == ["received", "synced", "received", "skipped_superseded"]
    assert history[3].updated_at.strftime("%H:%M") == "10:00"
    # The superseded version arriving again is stale.
    assert write_batch(prepared(older, svc=svc), svc)[0]["skipped"] == "stale"


def test_a_superseded_version_is_retried_when_the_newest_fails(org, services):
    svc = services()
    older = order("100000001")
    newer = order("100000001", updated="2023-10-26 12:00:00", grand_total=300000)
    outcomes = write_batch(prepared(older, newer, order("100000002"), svc=svc), svc)
    assert isinstance(outcomes[1], DeadLetter)
    assert isinstance(outcomes[0], RetryLater) and outcomes[0].reason == "superseded_not_applied"
    assert outcomes[2]["sf_created"]
    # On its own, later, the older version is applied, as it would have been without batching.
    assert write_batch(prepared(older, svc=svc), svc)[0]["sf_created"]


# -- edits ----------------------------------------------------------------------------------------


def test_an_edit_and_the_order_it_replaces_in_one_batch(org, services):
    svc = services()
    parent = order("100000001", grand_total=50)
    child = order(
        "100000001-1",
        updated="2023-10-26 12:00:00",
        relation_parent_real_id="100000001",
        original_increment_id="100000001",
        edit_increment=1,
        grand_total=40,
    )
    outcomes = write_batch(prepared(child, parent, order("100000002"), svc=svc), svc)
    assert all(isinstance(o, dict) and o["sf_created"] for o in outcomes), outcomes
    closed = opportunity(org, "100000001")
    assert (closed["StageName"], closed["NextStep"]) == (
        "Closed Lost",
        "Replaced by edited order 100000001-1",
    )
    assert opportunity(org, "100000001-1")["Magento_Parent_Order_ID__c"] == "100000001"
    assert svc.ledger.order("100000001").replaced_by == "100000001-1"


def test_an_edit_whose_parent_was_written_before_closes_it_in_the_batch(org, services):
    svc = services()
    write_batch(prepared(order("100000001"), svc=svc), svc)
    child = order(
        "100000001-1",
        updated="2023-10-26 12:00:00",
        relation_parent_real_id="100000001",
        grand_total=40,
    )
    before = calls(org)
    # Another order of the same, known buyer: no lookup.
    outcomes = write_batch(prepared(child, order("100000008"), svc=svc), svc)
    assert all(o["sf_created"] for o in outcomes)
    assert added(org, before) == {"composite": 1, "collectionsUpdate": 1}
    assert opportunity(org, "100000001")["StageName"] == "Closed Lost"


# -- buyers -------------------------------------------------------------------------------------


def test_a_buyer_deleted_in_salesforce_is_forgotten_and_the_order_retried(org, services):
    svc = services()
    jane = "jane.doe@example.com"
    write_batch(prepared(order("100000001", email=jane), order("100000002"), svc=svc), svc)
    [contact] = records(org, "Contact", Email=jane)
    svc.writer._call("DELETE", f"sobjects/Account/{contact['AccountId']}", None)
    outcomes = write_batch(
        prepared(order("100000015", email=jane), order("100000003"), svc=svc), svc
    )
    assert isinstance(outcomes[0], RetryLater) and outcomes[0].reason == "customer_refused"
    assert outcomes[1]["sf_created"]
    assert svc.ledger.customer(jane) is None
    [retried] = write_batch(prepared(order("100000015", email=jane), svc=svc), svc)
    assert retried["sf_created"]
    assert opportunity(org, "100000015")["AccountId"] != contact["AccountId"]
