"""sObject rows, describe, record ids, versions and limits, over simple-salesforce and HTTPS."""

import pytest
from simple_salesforce.exceptions import SalesforceResourceNotFound

from magsync.sandbox.salesforce import ids
from tests.sandbox.salesforce.helpers import opportunity

OBJECT_BODIES = [
    ("Account", "001", lambda org: {"Name": "Jane Doe"}),
    ("Contact", "003", lambda org: {"LastName": "Doe", "Email": "jane.doe@example.com"}),
    ("Lead", "00Q", lambda org: {"LastName": "Doe", "Company": "Jane Doe"}),
    ("Opportunity", "006", lambda org: opportunity()),
    ("Product2", "01t", lambda org: {"Name": "Product X", "ProductCode": "PROD-XYZ"}),
    ("Pricebook2", "01s", lambda org: {"Name": "Web store"}),
]


@pytest.mark.parametrize(
    ("sobject", "prefix", "body"), OBJECT_BODIES, ids=[c[0] for c in OBJECT_BODIES]
)
def test_create_answers_201_with_a_real_looking_id(org, sf, sobject, prefix, body):
    result = getattr(sf, sobject).create(body(org))
    assert result["success"] is True
    assert result["errors"] == []
    record_id = result["id"]
    assert len(record_id) == 18
    assert record_id.startswith(prefix)
    assert record_id[15:] == ids.suffix(record_id[:15])
    assert [r["Id"] for r in org.records(sobject) if r["Id"] == record_id] == [record_id]


@pytest.mark.parametrize(
    ("id15", "id18"),
    [
        ("001A0000006Vm9r", "001A0000006Vm9rIAC"),
        ("003A0000005QB3A", "003A0000005QB3AIAW"),
        ("003A0000008qb1s", "003A0000008qb1sIAA"),
    ],
)
def test_case_safe_suffix_matches_salesforce(id15, id18):
    assert ids.normalize(id15) == id18
    assert ids.normalize(id18) == id18
    assert ids.normalize(id18[:15] + id18[15:].lower()) == id18
    assert ids.normalize(id15 + "ZZZ") is None


def test_malformed_ids_are_not_ids():
    assert ids.normalize("not-an-id") is None
    assert ids.normalize("001A0000006Vm9") is None


def test_create_answer_and_location(org, data):
    response = data("POST", "sobjects/Account", json={"Name": "Acme"})
    assert response.status_code == 201
    body = response.json()
    assert body == {"id": body["id"], "success": True, "errors": []}
    assert response.headers["Location"] == f"/services/data/v58.0/sobjects/Account/{body['id']}"


def test_read_update_delete(org, sf, data):
    record_id = sf.Opportunity.create(opportunity())["id"]
    record = sf.Opportunity.get(record_id)
    assert record["attributes"] == {
        "type": "Opportunity",
        "url": f"/services/data/v58.0/sobjects/Opportunity/{record_id}",
    }
    assert record["Name"] == "Order 000000123 - Jane Doe"
    assert record["Amount"] == 99.99
    assert record["IsClosed"] is False
    assert record["Magento_Order_ID__c"] is None  # every field is present, null when unset
    assert record["CreatedDate"].endswith("+0000")
    assert sf.Opportunity.update(record_id, {"StageName": "Closed Won"}) == 204
    updated = sf.Opportunity.get(record_id)
    assert (
        updated["StageName"],
        updated["IsClosed"],
        updated["IsWon"],
        updated["Probability"],
    ) == (
        "Closed Won",
        True,
        True,
        100,
    )
    assert sf.Opportunity.delete(record_id) == 204
    gone = data("GET", f"sobjects/Opportunity/{record_id}")
    assert gone.status_code == 404
    assert gone.json() == [{"errorCode": "ENTITY_IS_DELETED", "message": "entity is deleted"}]
    assert org.records("Opportunity") == []


def test_read_with_fields_and_15_character_id(sf):
    record_id = sf.Account.create({"Name": "Acme", "Phone": "555-0100"})["id"]
    record = sf.Account.get(record_id[:15], params={"fields": "Name,phone"})
    assert record == {
        "attributes": {
            "type": "Account",
            "url": f"/services/data/v58.0/sobjects/Account/{record_id}",
        },
        "Name": "Acme",
        "Phone": "555-0100",
    }


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("sobjects/Account/001000000000000AAA", "The requested resource does not exist"),
        (
            "sobjects/Account/xyz",
            "Provided external ID field does not exist or is not accessible: xyz",
        ),
        (
            "sobjects/Account/0035g0000000001AAA",
            "Provided external ID field does not exist or is not accessible: 0035g0000000001AAA",
        ),
        ("sobjects/Widget__c", "The requested resource does not exist"),
        ("sobjects/Widget__c/describe", "The requested resource does not exist"),
    ],
)
def test_not_found(data, path, message):
    response = data("GET", path)
    assert response.status_code == 404
    assert response.json() == [{"errorCode": "NOT_FOUND", "message": message}]


def test_simple_salesforce_maps_404(sf):
    with pytest.raises(SalesforceResourceNotFound) as missing:
        sf.Account.get("001000000000000AAA")
    assert missing.value.content[0]["errorCode"] == "NOT_FOUND"


def test_method_not_allowed(data):
    response = data("PUT", "sobjects/Account/001000000000000AAA", json={})
    assert response.status_code == 405
    assert response.json() == [
        {
            "errorCode": "METHOD_NOT_ALLOWED",
            "message": "HTTP Method 'PUT' not allowed. Allowed are GET,PATCH,DELETE,HEAD",
        }
    ]


def field(describe, name):
    return next(f for f in describe["fields"] if f["name"] == name)


def test_describe_opportunity(sf):
    describe = sf.Opportunity.describe()
    assert describe["name"] == "Opportunity"
    assert describe["keyPrefix"] == "006"
    order = field(describe, "Magento_Order_ID__c")
    assert (
        order["type"],
        order["length"],
        order["externalId"],
        order["unique"],
        order["custom"],
    ) == (
        "string",
        80,
        True,
        True,
        True,
    )
    assert order["idLookup"] is True
    assert field(describe, "Magento_Customer_Email__c")["type"] == "email"
    assert (
        field(describe, "Billing_Street__c")["type"],
        field(describe, "Billing_Street__c")["length"],
    ) == (
        "textarea",
        255,
    )
    assert field(describe, "Magento_Parent_Order_ID__c")["length"] == 80
    description = field(describe, "Description")
    assert (description["type"], description["length"]) == ("textarea", 32000)
    name = field(describe, "Name")
    assert (name["length"], name["nillable"], name["createable"]) == (120, False, True)
    stage = field(describe, "StageName")
    assert stage["restrictedPicklist"] is True
    assert [v["value"] for v in stage["picklistValues"]] == [
        "Prospecting",
        "Qualification",
        "Needs Analysis",
        "Value Proposition",
        "Id. Decision Makers",
        "Perception Analysis",
        "Proposal/Price Quote",
        "Negotiation/Review",
        "Closed Won",
        "Closed Lost",
    ]
    assert "Magento E-commerce" in [
        v["value"] for v in field(describe, "LeadSource")["picklistValues"]
    ]
    currency = field(describe, "CurrencyIsoCode")
    assert [v["value"] for v in currency["picklistValues"]] == [
        "USD",
        "EUR",
        "GBP",
        "JPY",
        "CAD",
        "AUD",
    ]
    assert (field(describe, "IsWon")["createable"], field(describe, "IsWon")["updateable"]) == (
        False,
        False,
    )
    assert field(describe, "CloseDate")["type"] == "date"
    assert field(describe, "Amount")["type"] == "currency"
    assert field(describe, "AccountId")["referenceTo"] == ["Account"]


@pytest.mark.parametrize(
    ("sobject", "name", "expected"),
    [
        ("Account", "Name", {"type": "string", "nillable": False, "idLookup": True}),
        ("Contact", "LastName", {"type": "string", "nillable": False, "length": 80}),
        ("Contact", "Email", {"type": "email", "idLookup": True, "unique": False}),
        ("Lead", "Company", {"type": "string", "nillable": False}),
        ("Lead", "Magento_Order_ID__c", {"externalId": True, "unique": True}),
        ("Lead", "Status", {"type": "picklist", "nillable": False, "defaultedOnCreate": True}),
        ("OpportunityLineItem", "Quantity", {"type": "double", "nillable": False}),
        ("PricebookEntry", "UnitPrice", {"type": "currency", "nillable": False}),
        ("Pricebook2", "IsStandard", {"type": "boolean", "createable": False}),
        ("OpportunityContactRole", "ContactId", {"type": "reference", "referenceTo": ["Contact"]}),
    ],
)
def test_describe_fields(sf, sobject, name, expected):
    described = field(getattr(sf, sobject).describe(), name)
    assert {key: described[key] for key in expected} == expected


def test_describe_global_and_basic_info(sf, data):
    names = {s["name"]: s["keyPrefix"] for s in sf.describe()["sobjects"]}
    assert names == {
        "Account": "001",
        "Contact": "003",
        "Lead": "00Q",
        "Opportunity": "006",
        "OpportunityContactRole": "00K",
        "Product2": "01t",
        "Pricebook2": "01s",
        "PricebookEntry": "01u",
        "OpportunityLineItem": "00k",
    }
    basic = data("GET", "sobjects/Lead").json()
    assert basic["objectDescribe"]["name"] == "Lead"
    assert basic["recentItems"] == []


def test_standard_price_book_exists(org, sf):
    result = sf.query("SELECT Id, Name, IsActive FROM Pricebook2 WHERE IsStandard = true")
    assert result["totalSize"] == 1
    (book,) = result["records"]
    assert book["Id"] == org.standard_pricebook_id
    assert book["Id"].startswith("01s")
    assert (book["Name"], book["IsActive"]) == ("Standard Price Book", True)


def test_version_list_needs_no_session(org, session):
    response = session.get(f"{org.url}/services/data/", timeout=10)
    assert response.status_code == 200
    listed = response.json()
    assert listed[0] == {"label": "Summer '19", "url": "/services/data/v46.0", "version": "46.0"}
    assert {"label": "Summer '23", "url": "/services/data/v58.0", "version": "58.0"} in listed
    assert org.stats()["api_usage"] == 0


@pytest.mark.parametrize(
    ("version", "status"),
    [("v45.0", 404), ("v46.0", 200), ("v58.0", 200), ("v99.0", 404), ("58", 404)],
)
def test_versions_from_46(org, data, version, status):
    response = data("GET", f"{org.url}/services/data/{version}/limits")
    assert response.status_code == status
    if status == 404:
        assert response.json()[0]["errorCode"] == "NOT_FOUND"


def test_resources_of_a_version(data):
    assert data("GET", "").json()["sobjects"] == "/services/data/v58.0/sobjects"


def test_limits(org, sf):
    sf.Account.create({"Name": "Acme"})
    limits = sf.limits()
    assert limits["DailyApiRequests"] == {"Max": 5_000_000, "Remaining": 5_000_000 - 2}
    assert {"DataStorageMB", "FileStorageMB", "DailyBulkApiBatches"} <= set(limits)
    assert sf.api_usage["api-usage"].used == 2
