"""What ``sync_order`` makes of an order's events, on a SQLite and a PostgreSQL ledger, against
the sandbox org: versions applied once and never stale, one Account and Contact per buyer,
stages, leads, edited orders, currencies, and what a crash or a Salesforce failure leaves."""

import copy
import threading

import pytest

from magsync.errors import DeadLetter, Deferred, InvalidOrder, RetryLater
from magsync.ledger import Ledger, migrate
from magsync.settings import Settings
from magsync.sync import pipeline
from magsync.sync.pipeline import sync_order
from magsync.sync.services import Services
from tests.helpers import load_fixture

SEED = load_fixture("seed_webhook.json")["order"]


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def services(org, database_url):
    """Build ``Services`` on the test's ledger (one per simulated process); closed after."""
    migrated = Ledger(Settings.from_env({"DATABASE_URL": database_url}))
    migrate.upgrade(migrated.engine)  # the release phase's `magsync db upgrade`
    migrated.close()
    built = []

    def build(**env):
        values = {"DATABASE_URL": database_url, **org.settings(), **env}
        built.append(Services.build(Settings.from_env(values)))
        return built[-1]

    yield build
    for svc in built:
        svc.close()


def order(number="000000123", updated="2023-10-26 10:00:00", **changes):
    document = copy.deepcopy(SEED)
    document.update(increment_id=number, entity_id=int(number[:9]), updated_at=updated)
    document.update(changes)
    return document


def event(document):
    return {
        "entity_id": document["entity_id"],
        "increment_id": document["increment_id"],
        "order": document,
    }


def sync(document, svc):
    return sync_order(event(document), svc)


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


# -- versions -------------------------------------------------------------------------------------


def test_a_new_buyer_a_repeat_buyer_and_later_changes(org, services):
    svc = services()
    before = calls(org)
    first = sync(order(), svc)
    assert added(org, before) == {"query": 1, "composite": 1}
    assert first["api_calls"] == 2 and first["sf_created"] is True
    [account] = org.records("Account")
    [contact] = org.records("Contact")
    assert (account["Name"], contact["Email"], contact["AccountId"]) == (
        "Jane Doe",
        "jane.doe@example.com",
        account["Id"],
    )
    opp = opportunity(org, "000000123")
    assert opp["AccountId"] == account["Id"]
    [role] = org.records("OpportunityContactRole")
    assert (role["OpportunityId"], role["ContactId"], role["Role"], role["IsPrimary"]) == (
        opp["Id"],
        contact["Id"],
        "Decision Maker",
        True,
    )

    before = calls(org)
    assert sync(order(), svc)["skipped"] == "unchanged"
    assert added(org, before) == {}

    before = calls(org)
    assert sync(order(updated="2023-10-26 11:00:00", state="processing"), svc)["api_calls"] == 1
    assert added(org, before) == {"upsert": 1}
    assert opportunity(org, "000000123")["StageName"] == "Qualification"
    assert opportunity(org, "000000123")["AccountId"] == account["Id"]

    before = calls(org)
    assert sync(order(), svc)["skipped"] == "stale"
    assert added(org, before) == {}
    assert opportunity(org, "000000123")["StageName"] == "Qualification"

    # The same buyer again, spelled differently: no lookup, the same Account and Contact.
    before = calls(org)
    sync(order("000000124", customer_email="  Jane.DOE@example.com "), svc)
    assert added(org, before) == {"composite": 1}
    assert len(org.records("Account")) == len(org.records("Contact")) == 1
    assert opportunity(org, "000000124")["AccountId"] == account["Id"]
    assert len(records(org, "OpportunityContactRole", ContactId=contact["Id"])) == 2

    state, history = svc.ledger.history("000000123")
    assert (state.status, state.record_id, state.account_id, state.contact_id) == (
        "synced",
        opp["Id"],
        account["Id"],
        contact["Id"],
    )
    assert [e.kind for e in history] == [
        "received",
        "synced",
        "received",
        "skipped_unchanged",
        "received",
        "synced",
        "received",
        "skipped_stale",
    ]


def test_a_buyer_salesforce_already_knows_is_reused(org, services):
    [account_id] = org.insert("Account", [{"Name": "Jane's Company"}])
    [contact_id] = org.insert(
        "Contact", [{"LastName": "Doe", "Email": "JANE.DOE@example.com", "AccountId": account_id}]
    )
    before = calls(org)
    sync(order(), services())
    assert added(org, before) == {"query": 1, "composite": 1}
    assert [a["Id"] for a in org.records("Account")] == [account_id]
    assert [c["Id"] for c in org.records("Contact")] == [contact_id]
    assert opportunity(org, "000000123")["AccountId"] == account_id


def test_a_contact_without_an_account_gets_one(org, services):
    [contact_id] = org.insert("Contact", [{"LastName": "Doe", "Email": "jane.doe@example.com"}])
    sync(order(), services())
    [account] = org.records("Account")
    [contact] = org.records("Contact")
    assert (contact["Id"], contact["AccountId"]) == (contact_id, account["Id"])
    assert opportunity(org, "000000123")["AccountId"] == account["Id"]


def test_two_first_orders_of_a_new_buyer_at_once_make_one_account_and_contact(org, services):
    # Each thread has Services of its own, as two worker processes would; the org's latency
    # keeps the lookup and the creation far apart in time.
    workers = [services(), services()]
    org.set_latency(150)
    before = calls(org)
    errors = []

    def run(number, svc):
        try:
            sync(order(number), svc)
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=run, args=(number, svc))
        for number, svc in zip(("000000201", "000000202"), workers, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert len(org.records("Account")) == len(org.records("Contact")) == 1
    assert len(org.records("OpportunityContactRole")) == 2
    assert added(org, before) == {"query": 1, "composite": 2}


def test_a_buyer_whose_address_salesforce_cannot_hold_is_still_one_contact(org, services):
    svc = services()
    quoted = '"Jane Doe"@example.com'
    before = calls(org)
    sync(order(customer_email=quoted), svc)
    sync(order("000000124", customer_email=quoted), svc)
    assert added(org, before) == {"composite": 2}  # no lookup: no Contact can hold the address
    [contact] = org.records("Contact")
    assert contact.get("Email") is None
    assert contact["Description"] == f"Magento customer email: {quoted}"
    assert len(org.records("Account")) == 1
    assert opportunity(org, "000000124")["AccountId"] == contact["AccountId"]
    assert opportunity(org, "000000124")["Magento_Customer_Email__c"] is None


# -- stages ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "stage"),
    [
        ("new", "Prospecting"),
        ("pending_payment", "Prospecting"),
        ("processing", "Qualification"),
        ("complete", "Closed Won"),
        ("closed", "Closed Lost"),
        ("canceled", "Closed Lost"),
        ("holded", "Prospecting"),
        ("payment_review", "Prospecting"),
    ],
)
def test_stage_of_each_state_on_a_first_event(org, services, state, stage):
    sync(order(state=state), services())
    assert opportunity(org, "000000123")["StageName"] == stage


def test_on_hold_and_in_review_keep_the_stage_the_ledger_remembers(org, services):
    svc = services()
    sync(order(state="processing"), svc)
    before = calls(org)
    held = sync(order(updated="2023-10-26 10:00:01", state="holded", status="holded"), svc)
    assert held["skipped"] == "unchanged"  # same stage, same fields: nothing to write
    review = order(updated="2023-10-26 10:00:02", state="payment_review", grand_total=120)
    sync(review, svc)
    assert added(org, before) == {"upsert": 1}
    assert opportunity(org, "000000123")["StageName"] == "Qualification"
    assert opportunity(org, "000000123")["Amount"] == 120
    sync(order(updated="2023-10-26 10:00:03", state="complete", grand_total=120), svc)
    assert opportunity(org, "000000123")["StageName"] == "Closed Won"


# -- guests ---------------------------------------------------------------------------------------


def guest(number="000000301", **changes):
    document = order(number, customer_firstname=None, customer_lastname=None, **changes)
    document["customer_is_guest"] = 1
    document["customer_email"] = "guest.buyer@example.org"
    return document


def test_guests_as_leads(org, services):
    svc = services(MAGSYNC_GUEST_MODE="lead")
    before = calls(org)
    summary = sync(guest(), svc)
    assert added(org, before) == {"upsert": 1}
    assert summary["sobject"] == "Lead"
    [lead] = org.records("Lead")
    assert (lead["LastName"], lead["FirstName"], lead["Company"], lead["Email"]) == (
        "Doe",
        "Jane",
        "[not provided]",
        "guest.buyer@example.org",
    )
    assert lead["Magento_Order_ID__c"] == "000000301"
    assert org.records("Account") == org.records("Contact") == org.records("Opportunity") == []

    before = calls(org)
    sync(guest(updated="2023-10-26 12:00:00", grand_total=10), svc)
    assert added(org, before) == {"upsert": 1}
    assert len(org.records("Lead")) == 1
    assert svc.ledger.order("000000301").sobject == "Lead"

    sync(order("000000302"), svc)  # a registered buyer still gets an Opportunity
    assert opportunity(org, "000000302")["AccountId"]


def test_guests_as_contacts_by_default(org, services):
    sync(guest(), services())
    assert org.records("Lead") == []
    [contact] = org.records("Contact")
    assert (contact["Email"], contact["LastName"]) == ("guest.buyer@example.org", "Doe")
    assert opportunity(org, "000000301")["AccountId"] == contact["AccountId"]


# -- edits ----------------------------------------------------------------------------------------


def edited(parent="000000123", number="000000123-1", updated="2023-10-26 12:00:00", **changes):
    return order(
        number,
        updated=updated,
        entity_id=124,
        relation_parent_id="123",
        relation_parent_real_id=parent,
        original_increment_id="000000123",
        edit_increment=1,
        grand_total=79.99,
        **changes,
    )


def test_an_edited_order_closes_the_order_it_replaces(org, services):
    svc = services()
    sync(order(), svc)
    parent_id = opportunity(org, "000000123")["Id"]
    before = calls(org)
    sync(edited(), svc)
    assert added(org, before) == {"composite": 1}
    child = opportunity(org, "000000123-1")
    parent = opportunity(org, "000000123")
    assert (child["Magento_Parent_Order_ID__c"], child["Amount"]) == ("000000123", 79.99)
    assert (parent["Id"], parent["StageName"], parent["NextStep"]) == (
        parent_id,
        "Closed Lost",
        "Replaced by edited order 000000123-1",
    )
    assert svc.ledger.order("000000123").replaced_by == "000000123-1"
    assert [e.kind for e in svc.ledger.history("000000123")[1]][-1] == "replaced"

    # The parent's own cancellation, and its older events, keep it lost.
    canceled = order(updated="2023-10-26 11:59:59", state="canceled")
    canceled["relation_child_real_id"] = "000000123-1"
    sync(canceled, svc)
    assert sync(order(), svc)["skipped"] == "stale"
    parent = opportunity(org, "000000123")
    assert (parent["StageName"], parent["NextStep"]) == (
        "Closed Lost",
        "Replaced by edited order 000000123-1",
    )
    before = calls(org)
    sync(edited(updated="2023-10-26 12:30:00", state="processing"), svc)
    assert added(org, before) == {"upsert": 1}


def test_an_edit_seen_before_its_parent_still_closes_it(org, services):
    svc = services()
    sync(edited(), svc)
    assert records(org, "Opportunity", Magento_Order_ID__c="000000123") == []
    sync(order(), svc)  # the parent's placement arrives late
    parent = opportunity(org, "000000123")
    assert (parent["StageName"], parent["NextStep"]) == (
        "Closed Lost",
        "Replaced by edited order 000000123-1",
    )


# -- currencies -----------------------------------------------------------------------------------


def test_multi_currency_orgs_get_the_order_currency(org, services):
    sync(order(order_currency_code="EUR"), services(SALESFORCE_MULTI_CURRENCY="true"))
    assert opportunity(org, "000000123")["CurrencyIsoCode"] == "EUR"


def test_single_currency_orgs_get_none(org, services):
    sync(order(order_currency_code="EUR"), services())
    assert opportunity(org, "000000123")["CurrencyIsoCode"] == "USD"  # the org's default


# -- failures -------------------------------------------------------------------------------------


class WorkerKilled(BaseException):
    """Stands for a worker that dies between Salesforce's answer and the ledger's commit."""


def test_a_worker_killed_after_salesforce_answered_loses_and_duplicates_nothing(
    org, services, monkeypatch
):
    svc = services()

    def killed(*args, **kwargs):
        raise WorkerKilled

    monkeypatch.setattr(svc.ledger, "applied", killed)
    with pytest.raises(WorkerKilled):
        sync(order(), svc)
    state = svc.ledger.order("000000123")
    assert (state.status, state.in_doubt, state.updated_at) == ("applying", True, None)

    # The broker redelivers the event to another worker process. A call of the dead worker
    # may still land, and would create the buyer and the role a second time after a lookup:
    # within MAGSYNC_LATE_WRITE_WINDOW the order waits, without a call.
    before = calls(org)
    with pytest.raises(Deferred) as waiting:
        sync(order(), services())
    assert waiting.value.reason == "interrupted_write" and 119 < waiting.value.wait <= 120
    assert calls(org) == before
    assert svc.ledger.order("000000123").attempts == 1

    # Once the window has passed.
    again = services(MAGSYNC_LATE_WRITE_WINDOW="0.001")
    summary = sync(order(), again)
    # The buyer is looked up (the ledger never learnt their ids), the contact role checked
    # (the one write that is not an upsert), and the Opportunity upserted again.
    assert added(org, before) == {"query": 2, "upsert": 1}
    assert summary["sf_created"] is False
    for sobject in ("Account", "Contact", "Opportunity", "OpportunityContactRole"):
        assert len(org.records(sobject)) == 1, sobject
    state = again.ledger.order("000000123")
    assert (state.status, state.in_doubt, state.attempts) == ("synced", False, 2)
    assert state.contact_role_id == org.records("OpportunityContactRole")[0]["Id"]


def test_a_salesforce_failure_is_never_recorded_as_applied(org, services):
    svc = services()
    org.add_fault(kind="unavailable", method="POST", path="/services/data/", count=1)
    with pytest.raises(RetryLater):
        sync(order(), svc)
    assert svc.ledger.order("000000123").updated_at is None
    assert org.records("Opportunity") == org.records("Account") == []
    pipeline.note_outcome(event(order()), svc, "retried", RetryLater("503", reason="http_503"), 1)
    assert svc.ledger.order("000000123").status == "retrying"

    sync(order(), svc)
    for sobject in ("Account", "Contact", "Opportunity", "OpportunityContactRole"):
        assert len(org.records(sobject)) == 1, sobject
    state, history = svc.ledger.history("000000123")
    assert (state.status, state.attempts) == ("synced", 2)
    assert [e.kind for e in history] == ["received", "retried", "received", "synced"]


def test_a_buyer_deleted_in_salesforce_is_looked_up_again(org, services):
    svc = services()
    sync(order(), svc)
    [contact] = org.records("Contact")
    [account] = org.records("Account")
    svc.writer._call("DELETE", f"sobjects/Contact/{contact['Id']}", None)
    svc.writer._call("DELETE", f"sobjects/Account/{account['Id']}", None)
    before = calls(org)
    sync(order("000000124"), svc)
    assert added(org, before) == {"composite": 2, "query": 1}
    [new_account] = org.records("Account")
    assert new_account["Id"] != account["Id"]
    assert opportunity(org, "000000124")["AccountId"] == new_account["Id"]
    assert svc.ledger.customer("jane.doe@example.com").account_id == new_account["Id"]


def test_a_rejected_write_is_a_dead_letter_and_changes_nothing(org, services):
    svc = services(SALESFORCE_STAGE_MAP="new=Not A Stage")
    with pytest.raises(DeadLetter) as info:
        sync(order(), svc)
    assert info.value.reason == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert org.records("Opportunity") == org.records("Account") == org.records("Contact") == []
    assert svc.ledger.order("000000123").updated_at is None


def test_an_invalid_order_touches_neither_salesforce_nor_the_ledger(org, services):
    svc = services()
    with pytest.raises(InvalidOrder):
        sync(order(grand_total="lots"), svc)
    assert calls(org) == {}
    svc.ledger.ready()
    assert svc.ledger.order("000000123") is None


def test_an_outcome_the_ledger_cannot_record_is_only_logged(org, caplog):
    settings = Settings.from_env(
        {**org.settings(), "DATABASE_URL": "postgresql://magsync@127.0.0.1:1/none"}
    )
    svc = Services.build(settings)
    try:
        pipeline.note_outcome(event(order()), svc, "dead_lettered", DeadLetter("x"), 1)
    finally:
        svc.close()
    assert "ledger did not record the outcome" in caplog.text


def test_the_store_truth_is_the_version_applied(org, services, tmp_path):
    from magsync.sandbox.magento import SandboxStore

    with SandboxStore(seed=5) as store:
        placed = store.place_order()
        store.invoice(placed["entity_id"])
        svc = services(**store.settings())
        stale_event = event(placed)  # the placement's webhook, state new
        summary = sync_order(stale_event, svc)
        assert (summary["state"], summary["source"]) == ("processing", "rest")
        before = calls(org)
        assert sync_order(stale_event, svc)["skipped"] == "unchanged"
        assert added(org, before) == {}
    number = placed["increment_id"]
    assert opportunity(org, number)["StageName"] == "Qualification"
