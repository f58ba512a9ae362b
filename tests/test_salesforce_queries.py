"""SOQL literals, the customer lookups and Composite calls against the sandbox org over HTTPS.

The literal is fuzzed: whatever text goes in (quotes, backslashes, newlines, non-ASCII), the
org's SOQL parser must read back exactly that text and find exactly the record holding it.
"""

import itertools
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from magsync.errors import DeadLetter
from magsync.mapping.records import Record
from magsync.salesforce.auth import TokenProvider
from magsync.salesforce.lookups import find_contact, find_contact_role
from magsync.salesforce.rest import build_session
from magsync.salesforce.soql import literal
from magsync.salesforce.writer import SalesforceWriter, Subrequest, reference
from magsync.settings import Settings

FUZZ = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
_unique = itertools.count()


@pytest.fixture(scope="module")
def org(tmp_path_factory):
    from magsync.sandbox.salesforce import SandboxOrg

    with SandboxOrg(state_dir=tmp_path_factory.mktemp("queries-org")) as org:
        yield org


@pytest.fixture(scope="module")
def writer(org):
    settings = Settings.from_env(org.settings())
    session = build_session(settings)
    yield SalesforceWriter(settings, TokenProvider(settings, session), session)
    session.close()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("plain", "'plain'"),
        ("Bob's BBQ", r"'Bob\'s BBQ'"),
        ("back\\slash", r"'back\\slash'"),
        ("\\'", r"'\\\''"),
        ('say "hi"', r"'say \"hi\"'"),
        ("two\nlines\ttab\rcr", r"'two\nlines\ttab\rcr'"),
        ("Zoë Ørsted 東京", "'Zoë Ørsted 東京'"),
        ("bell\x07", r"'bell\u0007'"),
        ("' OR Name != '", r"'\' OR Name != \''"),
    ],
)
def test_literal_escapes_what_soql_reserves(value, expected):
    assert literal(value) == expected


def test_literal_refuses_what_is_not_text():
    with pytest.raises(TypeError):
        literal(42)


NAMES = st.text(
    alphabet=st.one_of(
        st.sampled_from("'\\\"\n\t%_ "),
        st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")),
    ),
    min_size=1,
    max_size=60,
).filter(lambda text: text.strip())


@FUZZ
@given(name=NAMES)
def test_any_text_finds_exactly_its_record(org, writer, name):
    name = f"{next(_unique)} {name}"
    [account_id] = org.insert("Account", [{"Name": name}])
    records = writer.query(f"SELECT Id, Name FROM Account WHERE Name = {literal(name)}")  # noqa: S608
    assert [(r["Id"], r["Name"]) for r in records] == [(account_id, name)]


LOCAL_PART = st.text(
    alphabet=string.ascii_letters + string.digits + ".!#$%&'*+/=?^_`{|}~-",
    min_size=1,
    max_size=30,
).filter(lambda s: not s.startswith(".") and not s.endswith(".") and ".." not in s)


@FUZZ
@given(local=LOCAL_PART, upper=st.booleans())
def test_contacts_are_found_by_any_email_in_any_case(org, writer, local, upper):
    email = f"{local}.{next(_unique)}@example.com"
    [account_id] = org.insert("Account", [{"Name": "Buyer"}])
    [contact_id] = org.insert(
        "Contact", [{"LastName": "O'Brien \\ Ørsted", "Email": email, "AccountId": account_id}]
    )
    org.insert("Contact", [{"LastName": "Other", "Email": f"x{email}"}])
    asked = email.upper() if upper else email
    assert find_contact(writer, asked) == (contact_id, account_id)


def test_a_contact_with_an_account_is_preferred(org, writer):
    email = f"twice.{next(_unique)}@example.com"
    [lonely] = org.insert("Contact", [{"LastName": "A", "Email": email}])
    [account_id] = org.insert("Account", [{"Name": "B"}])
    [linked] = org.insert("Contact", [{"LastName": "B", "Email": email, "AccountId": account_id}])
    assert find_contact(writer, email) == (linked, account_id)
    assert lonely != linked
    assert find_contact(writer, f"nobody.{next(_unique)}@example.com") is None


def opportunity(number, **fields):
    values = {"Name": f"Order {number}", "StageName": "Prospecting", "CloseDate": "2024-04-01"}
    return Record("Opportunity", "Magento_Order_ID__c", number, {**values, **fields})


def test_one_composite_call_creates_linked_records(org, writer):
    number = f"C{next(_unique)}-1"
    calls, before = writer.calls, org.stats()["api_calls"]
    results = writer.composite(
        [
            Subrequest.create("account", "Account", {"Name": "Zoë O'Brien"}),
            Subrequest.create(
                "contact",
                "Contact",
                {"LastName": "O'Brien", "Email": "zoe@example.com", "AccountId": "@{account.id}"},
            ),
            Subrequest.upsert("opportunity", opportunity(number, AccountId=reference("account"))),
            Subrequest.create(
                "role",
                "OpportunityContactRole",
                {"OpportunityId": reference("opportunity"), "ContactId": reference("contact")},
            ),
        ]
    )
    assert writer.calls == calls + 1
    assert org.stats()["api_calls"] == before + 1
    assert set(results) == {"account", "contact", "opportunity", "role"}
    assert results["opportunity"]["created"] is True
    [stored] = [r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == number]
    assert stored["AccountId"] == results["account"]["id"]
    found = find_contact_role(writer, "Magento_Order_ID__c", number, results["contact"]["id"])
    assert found == results["role"]["id"]
    assert find_contact_role(writer, "Magento_Order_ID__c", number, "003000000000000AAA") is None


def test_a_failed_subrequest_rolls_back_and_names_its_own_error(org, writer):
    number = f"C{next(_unique)}"
    accounts = len(org.records("Account"))
    with pytest.raises(DeadLetter) as info:
        writer.composite(
            [
                Subrequest.create("account", "Account", {"Name": "Rolled back"}),
                Subrequest.upsert("opportunity", opportunity(number, StageName="Not a stage")),
            ]
        )
    assert info.value.reason == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert len(org.records("Account")) == accounts
    assert not [r for r in org.records("Opportunity") if r["Magento_Order_ID__c"] == number]


def test_composite_size_is_checked_before_any_call(writer):
    calls = writer.calls
    with pytest.raises(ValueError, match="1 to 25"):
        writer.composite([])
    sub = Subrequest.create("a", "Account", {"Name": "x"})
    with pytest.raises(ValueError, match="1 to 25"):
        writer.composite([sub] * 26)
    assert writer.calls == calls


# -- many buyers at once --------------------------------------------------------------------------


def test_buyer_lookups_for_many_emails_are_one_query_per_chunk(org, writer):
    from urllib.parse import urlencode

    from magsync.salesforce.lookups import CONTACTS_BY_EMAIL, find_contacts
    from magsync.salesforce.soql import SOQL_LIMIT, URI_LIMIT, in_chunks

    tag = next(_unique)
    known = [f"o'brien.{tag}.{n}@example.com" for n in range(0, 1000, 37)]
    org.insert("Contact", [{"LastName": "Known", "Email": email.upper()} for email in known])
    emails = [f"o'brien.{tag}.{n}@example.com" for n in range(1000)]
    statements = list(in_chunks(CONTACTS_BY_EMAIL, sorted(emails)))
    assert len(statements) > 1
    for soql in statements:
        assert len(soql) <= SOQL_LIMIT
        assert len(urlencode({"q": soql})) <= URI_LIMIT - 2048

    queries = org.stats()["calls_by_kind"].get("query", 0)
    found = find_contacts(writer, emails)
    assert org.stats()["calls_by_kind"]["query"] - queries == len(statements)
    assert sorted(found) == sorted(known)
    # A batch's buyers (up to 200 orders) are one query.
    queries = org.stats()["calls_by_kind"]["query"]
    assert len(find_contacts(writer, emails[:200])) == len([e for e in known if e in emails[:200]])
    assert org.stats()["calls_by_kind"]["query"] - queries == 1
    # Smaller chunks: more queries, the same answer.
    queries = org.stats()["calls_by_kind"]["query"]
    assert find_contacts(writer, emails, max_length=2000) == found
    statements = list(in_chunks(CONTACTS_BY_EMAIL, sorted(emails), max_length=2000))
    assert len(statements) > 10
    assert org.stats()["calls_by_kind"]["query"] - queries == len(statements)


def test_chunks_hold_every_value_once_in_order():
    from magsync.salesforce.soql import in_chunks

    values = [f"v{n}'\\" for n in range(500)]
    statements = list(in_chunks("SELECT Id FROM Contact WHERE Email IN ({})", values, 300))
    assert all(len(s) <= 300 for s in statements)
    inner = ",".join(s.split("IN (", 1)[1][:-1] for s in statements)
    assert inner == ",".join(literal(v) for v in values)
    assert list(in_chunks("SELECT Id FROM Contact WHERE Email IN ({})", [])) == []


def _ids(writer, sobject, where):
    statement = f"SELECT Id FROM {sobject} WHERE {where}"  # noqa: S608 - the test's own SOQL
    return sorted(row["Id"] for row in writer.query_all(statement))


def test_the_org_answers_in_as_it_answers_the_same_equalities_or_ed(org, writer):
    # The org sets up each IN list once per query; what it finds must be what comparing each
    # value in turn (an OR of equalities) finds: text without regard to case, ids of 15 or 18
    # characters, numbers, NULL among the values, and NOT IN.
    tag = next(_unique)
    emails = [f"In{tag}.{n}@Example.com" for n in range(6)]
    account = org.insert("Account", [{"Name": f"In {tag}"}])[0]
    contacts = org.insert(
        "Contact",
        [{"LastName": f"In{tag}", "Email": email, "AccountId": account} for email in emails]
        + [{"LastName": f"In{tag}"}],  # no email
    )
    org.insert(
        "Opportunity",
        [
            {"Name": f"In{tag}", "StageName": "Prospecting", "CloseDate": "2026-01-01", "Amount": a}
            for a in (10, 20.5, 30)
        ],
    )
    mine = f"LastName = 'In{tag}'"
    cases = [
        ("Email", [emails[0].upper(), emails[3].lower(), "nobody@example.com"]),
        ("Email", [emails[1], "NULL"]),
        ("Email", ["NULL"]),
        ("Id", [contacts[2][:15], contacts[4], "003000000000000AAA"]),
    ]
    for field, values in cases:
        written = [v if v == "NULL" else literal(v) for v in values]
        listed = ", ".join(written)
        either = " OR ".join(f"{field} = {v}" for v in written)
        expected = _ids(writer, "Contact", f"{mine} AND ({either})")
        assert expected  # each case finds something
        assert _ids(writer, "Contact", f"{mine} AND {field} IN ({listed})") == expected
        neither = " AND ".join(f"{field} != {v}" for v in written)
        assert _ids(writer, "Contact", f"{mine} AND {field} NOT IN ({listed})") == _ids(
            writer, "Contact", f"{mine} AND ({neither})"
        )
    assert len(_ids(writer, "Opportunity", f"Name = 'In{tag}' AND Amount IN (20.5, 30)")) == 2
