"""SOQL over ``GET /query``: the clauses integrations use, string escapes, errors, and paging."""

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest

from tests.sandbox.salesforce.helpers import opportunity


@pytest.fixture
def people(org):
    """Accounts and contacts with awkward names."""
    account = org.insert("Account", [{"Name": "O'Brien & Sons"}])[0]
    names = [
        "O'Brien",
        "Back\\slash",
        "Line\nbreak",
        "Tab\there",
        'Quote"d',
        "100% cotton",
        "snake_case",
        "Émile",
    ]
    org.insert(
        "Contact",
        [
            {
                "LastName": name,
                "Email": f"c{i}@example.com",
                "AccountId": account if i % 2 else None,
            }
            for i, name in enumerate(names)
        ],
    )
    return account


@pytest.mark.parametrize(
    ("literal", "expected"),
    [
        (r"'O\'Brien'", "O'Brien"),
        (r"'Back\\slash'", "Back\\slash"),
        (r"'Line\nbreak'", "Line\nbreak"),
        (r"'Line\Nbreak'", "Line\nbreak"),
        (r"'Tab\there'", "Tab\there"),
        (r"'Quote\"d'", 'Quote"d'),
        (r"'\u00c9mile'", "Émile"),
        ("'o\\'brien'", "O'Brien"),  # text comparisons ignore case
    ],
)
def test_string_literal_escapes(sf, people, literal, expected):
    # The literal is the thing under test, hence the string-built query.
    result = sf.query(f"SELECT LastName FROM Contact WHERE LastName = {literal}")  # noqa: S608
    assert [r["LastName"] for r in result["records"]] == [expected]


@pytest.mark.parametrize(
    ("where", "expected"),
    [
        (r"LastName LIKE '100\%%'", ["100% cotton"]),
        (r"LastName LIKE '%\_%'", ["snake_case"]),
        ("LastName LIKE 'o%'", ["O'Brien"]),
        ("LastName LIKE '_ack%'", ["Back\\slash"]),
    ],
)
def test_like_wildcards_and_escapes(sf, people, where, expected):
    result = sf.query(f"SELECT LastName FROM Contact WHERE {where}")  # noqa: S608
    assert sorted(r["LastName"] for r in result["records"]) == expected


def test_conditions(sf, org):
    org.insert(
        "Opportunity",
        [
            opportunity(
                Name=f"Order {n}", Magento_Order_ID__c=f"{n:09d}", Amount=n * 10, StageName=stage
            )
            for n, stage in [
                (1, "Prospecting"),
                (2, "Closed Won"),
                (3, "Closed Lost"),
                (4, "Prospecting"),
            ]
        ],
    )

    def names(soql):
        return [r["Name"] for r in sf.query(soql)["records"]]

    base = "SELECT Name FROM Opportunity WHERE "
    assert names(base + "Magento_Order_ID__c IN ('000000001', '000000003') ORDER BY Name") == [
        "Order 1",
        "Order 3",
    ]
    assert names(
        base + "Magento_Order_ID__c NOT IN ('000000001') AND Amount > 20 ORDER BY Name DESC"
    ) == [
        "Order 4",
        "Order 3",
    ]
    assert names(base + "StageName = 'Closed Won' OR Amount >= 40 ORDER BY Amount") == [
        "Order 2",
        "Order 4",
    ]
    assert names(
        base + "(StageName = 'Prospecting' OR IsWon = true) AND Amount < 30 ORDER BY Amount"
    ) == [
        "Order 1",
        "Order 2",
    ]
    assert names(base + "NOT StageName = 'Prospecting' ORDER BY Name LIMIT 1") == ["Order 2"]
    assert names(
        base + "CloseDate = 2023-11-26 AND IsClosed = false ORDER BY Name LIMIT 1 OFFSET 1"
    ) == ["Order 4"]
    assert names(base + "Billing_City__c != null AND AccountId = null ORDER BY Name LIMIT 2") == [
        "Order 1",
        "Order 2",
    ]
    assert names(base + "Magento_Order_ID__c != '000000001' ORDER BY Name") == [
        "Order 2",
        "Order 3",
        "Order 4",
    ]
    assert sf.query("SELECT COUNT() FROM Opportunity WHERE IsClosed = true") == {
        "totalSize": 2,
        "done": True,
        "records": [],
    }


def test_result_shape_and_relationship_fields(sf, org, people):
    result = sf.query(
        "SELECT Id, lastname, Account.Name FROM Contact WHERE Email = 'c1@example.com'"
    )
    (record,) = result["records"]
    assert list(record) == ["attributes", "Id", "LastName", "Account"]
    assert record["attributes"] == {
        "type": "Contact",
        "url": f"/services/data/v58.0/sobjects/Contact/{record['Id']}",
    }
    assert record["Account"] == {
        "attributes": {"type": "Account", "url": f"/services/data/v58.0/sobjects/Account/{people}"},
        "Name": "O'Brien & Sons",
    }
    orphan = sf.query("SELECT Account.Name FROM Contact WHERE Email = 'c0@example.com'")["records"][
        0
    ]
    assert orphan["Account"] is None
    assert result["totalSize"] == 1
    assert result["done"] is True


def test_lookup_by_email_the_way_magsync_does(sf, people):
    result = sf.query("SELECT Id, AccountId FROM Contact WHERE Email = 'C3@EXAMPLE.COM' LIMIT 1")
    assert result["records"][0]["AccountId"] == people


MALFORMED = [
    ("SELECT Id FROM", "MALFORMED_QUERY", "unexpected token: <EOF>"),
    ("SELECT FROM Account", "MALFORMED_QUERY", "unexpected token: 'FROM'"),
    ("SELECT Id Name FROM Account", "MALFORMED_QUERY", "unexpected token: 'Name'"),
    ("SELEC Id FROM Account", "MALFORMED_QUERY", "unexpected token: 'SELEC'"),
    (
        "SELECT Id FROM Account WHERE Name = 'O'Brien'",
        "MALFORMED_QUERY",
        "unexpected token: 'Brien'",
    ),
    (
        r"SELECT Id FROM Account WHERE Name = 'a\qb'",
        "MALFORMED_QUERY",
        "Illegal character sequence '\\q'",
    ),
    (
        r"SELECT Id FROM Account WHERE Name = 'a\%b'",
        "MALFORMED_QUERY",
        "Illegal character sequence '\\%'",
    ),
    (
        "SELECT Id FROM Account WHERE Name = 'x' AND Phone = '1' OR Phone = '2'",
        "MALFORMED_QUERY",
        "unexpected token: 'OR'",
    ),
    ("SELECT Id FROM Account WHERE Name = 'unterminated", "MALFORMED_QUERY", None),
    ("SELECT Id FROM Account LIMIT many", "MALFORMED_QUERY", "unexpected token: 'many'"),
    ("SELECT Id FROM Widget__c", "INVALID_TYPE", "sObject type 'Widget__c' is not supported."),
    (
        "SELECT Id, Colour__c FROM Account",
        "INVALID_FIELD",
        "No such column 'Colour__c' on entity 'Account'.",
    ),
    (
        "SELECT Owner.Name FROM Account",
        "INVALID_FIELD",
        "Didn't understand relationship 'Owner' in field path.",
    ),
    (
        "SELECT Id FROM Opportunity WHERE CloseDate = '2023-11-26'",
        "INVALID_QUERY_FILTER_OPERATOR",
        "value of filter criterion for field 'CloseDate' must be of type date and should not be "
        "enclosed in quotes",
    ),
    (
        "SELECT Id FROM Opportunity WHERE Magento_Order_ID__c = 123",
        "INVALID_QUERY_FILTER_OPERATOR",
        "value of filter criterion for field 'Magento_Order_ID__c' must be of type string and "
        "should be enclosed in quotes",
    ),
    (
        "SELECT Id FROM Opportunity WHERE Description = 'x'",
        "INVALID_FIELD",
        "field 'Description' can not be filtered",
    ),
    (
        "SELECT Id FROM Account OFFSET 2001",
        "NUMBER_OUTSIDE_VALID_RANGE",
        "Maximum SOQL offset allowed is 2000",
    ),
]


@pytest.mark.parametrize(("soql", "code", "detail"), MALFORMED, ids=[m[0] for m in MALFORMED])
def test_query_errors(data, soql, code, detail):
    response = data("GET", "query", params={"q": soql})
    assert response.status_code == 400
    (error,) = response.json()
    assert list(error) == ["message", "errorCode"]
    assert error["errorCode"] == code
    assert "\nERROR at Row:1:Column:" in error["message"]
    if detail:
        assert detail in error["message"]


def test_error_points_at_the_column(data):
    response = data("GET", "query", params={"q": "SELECT Id FROM Account WHERE Name = 'O'Brien'"})
    message = response.json()[0]["message"]
    assert message.startswith(
        "\nSELECT Id FROM Account WHERE Name = 'O'Brien'\n" + " " * 39 + "^\n"
    )
    assert "ERROR at Row:1:Column:40\n" in message


def test_missing_query_string(data):
    response = data("GET", "query")
    assert response.status_code == 400
    assert response.json() == [
        {"message": "A query string has to be specified", "errorCode": "MALFORMED_QUERY"}
    ]


def test_simple_salesforce_raises_malformed(sf):
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.query("SELECT Id FROM Account WHERE Name = 'O'Brien'")
    assert refused.value.content[0]["errorCode"] == "MALFORMED_QUERY"


@pytest.fixture
def many_accounts(org):
    org.insert("Account", [{"Name": f"Account {n:04d}"} for n in range(450)])


def test_paging_with_next_records_url(data, many_accounts):
    headers = {"Sforce-Query-Options": "batchSize=200"}
    first = data(
        "GET", "query", params={"q": "SELECT Name FROM Account ORDER BY Name"}, headers=headers
    ).json()
    assert (first["totalSize"], first["done"], len(first["records"])) == (450, False, 200)
    assert list(first) == ["totalSize", "done", "nextRecordsUrl", "records"]
    assert first["nextRecordsUrl"].startswith("/services/data/v58.0/query/01g")
    assert first["nextRecordsUrl"].endswith("-200")
    page = data("GET", first["nextRecordsUrl"].removeprefix("/services/data/v58.0/")).json()
    assert (page["done"], len(page["records"]), page["records"][0]["Name"]) == (
        False,
        200,
        "Account 0200",
    )
    last = data("GET", page["nextRecordsUrl"].removeprefix("/services/data/v58.0/")).json()
    assert (last["done"], len(last["records"]), "nextRecordsUrl" in last) == (True, 50, False)
    assert last["records"][-1]["Name"] == "Account 0449"


def test_default_page_is_2000_and_simple_salesforce_follows_it(org, sf):
    org.insert("Account", [{"Name": f"Account {n:04d}"} for n in range(2100)])
    first = sf.query("SELECT Id FROM Account")
    assert (len(first["records"]), first["done"]) == (2000, False)
    everything = sf.query_all("SELECT Id, Name FROM Account WHERE Name LIKE 'Account%'")
    assert everything["totalSize"] == 2100
    assert len({r["Id"] for r in everything["records"]}) == 2100
    assert org.stats()["calls_by_kind"] == {"query": 2, "queryMore": 1}


@pytest.mark.parametrize(
    "locator", ["01gXXXXXXXXXXXXXXX-200", "nonsense", "01gXXXXXXXXXXXXXXX-abc"]
)
def test_invalid_query_locator(data, locator):
    response = data("GET", f"query/{locator}")
    assert response.status_code == 400
    assert response.json() == [
        {"message": "invalid query locator", "errorCode": "INVALID_QUERY_LOCATOR"}
    ]


def test_query_all_includes_deleted_records(sf):
    record_id = sf.Account.create({"Name": "Gone"})["id"]
    sf.Account.delete(record_id)
    assert sf.query("SELECT Id FROM Account WHERE Name = 'Gone'")["totalSize"] == 0
    deleted = sf.query_all(
        "SELECT Id, IsDeleted FROM Account WHERE Name = 'Gone'", include_deleted=True
    )
    assert deleted["records"] == [
        {
            "attributes": {
                "type": "Account",
                "url": f"/services/data/v58.0/sobjects/Account/{record_id}",
            },
            "Id": record_id,
            "IsDeleted": True,
        }
    ]
