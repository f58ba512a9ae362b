"""sObject Collections (create, update, upsert, delete, read) and Composite, with allOrNone."""

import pytest

from tests.sandbox.salesforce.helpers import opportunity

ROLLED_BACK = {
    "statusCode": "ALL_OR_NONE_OPERATION_ROLLED_BACK",
    "message": "Record rolled back because not all records were valid and the request was using "
    "AllOrNone header",
    "fields": [],
}
HALTED = [
    {
        "errorCode": "PROCESSING_HALTED",
        "message": "The transaction was rolled back since another operation in the same "
        "transaction failed.",
    }
]


def account(name):
    return {"attributes": {"type": "Account"}, "Name": name}


def order(number, **fields):
    return {
        "attributes": {"type": "Opportunity"},
        "Magento_Order_ID__c": number,
        **opportunity(**fields),
    }


def test_collections_create(org, sf):
    results = sf.restful(
        "composite/sobjects", method="POST", json={"records": [account("A"), account("B")]}
    )
    assert [r["success"] for r in results] == [True, True]
    assert [r["errors"] for r in results] == [[], []]
    assert sorted(r["id"] for r in results) == sorted(a["Id"] for a in org.records("Account"))
    assert org.stats()["calls_by_kind"] == {"collectionsCreate": 1}


def test_collections_partial_success(org, data):
    response = data(
        "POST",
        "composite/sobjects",
        json={"allOrNone": False, "records": [account("A"), {"attributes": {"type": "Account"}}]},
    )
    assert response.status_code == 200
    ok, failed = response.json()
    assert ok["success"] is True
    assert failed == {
        "success": False,
        "errors": [
            {
                "statusCode": "REQUIRED_FIELD_MISSING",
                "message": "Required fields are missing: [Name]",
                "fields": ["Name"],
            }
        ],
    }
    assert [a["Name"] for a in org.records("Account")] == ["A"]


def test_collections_all_or_none_rolls_back(org, data):
    records = [account("A"), {"attributes": {"type": "Account"}}, account("C")]
    response = data("POST", "composite/sobjects", json={"allOrNone": True, "records": records})
    assert response.status_code == 200
    first, second, third = response.json()
    assert first == {"success": False, "errors": [ROLLED_BACK]}
    assert second["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert third == {"success": False, "errors": [ROLLED_BACK]}
    assert org.records("Account") == []


def test_collections_upsert(org, data):
    first = data(
        "PATCH",
        "composite/sobjects/Opportunity/Magento_Order_ID__c",
        json={"allOrNone": False, "records": [order("000000001"), order("000000002")]},
    ).json()
    assert [(r["success"], r["created"]) for r in first] == [(True, True), (True, True)]
    second = data(
        "PATCH",
        "composite/sobjects/Opportunity/Magento_Order_ID__c",
        json={"records": [order("000000002", StageName="Closed Won"), order("000000003")]},
    ).json()
    assert [(r["success"], r["created"]) for r in second] == [(True, False), (True, True)]
    assert second[0]["id"] == first[1]["id"]
    stored = {r["Magento_Order_ID__c"]: r["StageName"] for r in org.records("Opportunity")}
    assert stored == {
        "000000001": "Prospecting",
        "000000002": "Closed Won",
        "000000003": "Prospecting",
    }
    assert org.stats()["calls_by_kind"] == {"collectionsUpsert": 2}


def test_collections_upsert_record_errors(org, data):
    records = [
        order("000000001"),
        order("000000001", Amount=5),
        order("000000002", StageName="Shipped"),
        {"attributes": {"type": "Opportunity"}, **opportunity()},
    ]
    results = data(
        "PATCH", "composite/sobjects/Opportunity/Magento_Order_ID__c", json={"records": records}
    ).json()
    assert [r["success"] for r in results] == [False, False, False, False]
    codes = [r["errors"][0]["statusCode"] for r in results]
    assert codes == [
        "DUPLICATE_EXTERNAL_ID",
        "DUPLICATE_EXTERNAL_ID",
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        "MISSING_ARGUMENT",
    ]
    assert results[0]["errors"][0]["message"] == "Duplicate external id specified: 000000001"
    assert all("errorCode" not in r["errors"][0] for r in results)
    assert org.records("Opportunity") == []


def test_collections_update_and_delete(org, sf, data):
    ids = [
        r["id"]
        for r in sf.restful(
            "composite/sobjects", method="POST", json={"records": [account("A"), account("B")]}
        )
    ]
    updated = data(
        "PATCH",
        "composite/sobjects",
        json={
            "records": [
                {"attributes": {"type": "Account"}, "id": ids[0], "Name": "A2"},
                {"attributes": {"type": "Account"}, "Name": "no id"},
                {"attributes": {"type": "Account"}, "id": "001A0000006Vm9rIAC", "Name": "ghost"},
            ]
        },
    ).json()
    assert updated[0] == {"id": ids[0], "success": True, "errors": []}
    assert updated[1]["errors"][0] == {
        "statusCode": "MISSING_ARGUMENT",
        "message": "Id not specified in an update call",
        "fields": [],
    }
    assert updated[2]["errors"][0]["statusCode"] == "INVALID_CROSS_REFERENCE_KEY"
    read = data(
        "GET", "composite/sobjects/Account", params={"ids": ",".join(ids), "fields": "Name"}
    ).json()
    assert [r["Name"] for r in read] == ["A2", "B"]
    deleted = data(
        "DELETE", "composite/sobjects", params={"ids": f"{ids[0]},{ids[1]},bogus"}
    ).json()
    assert deleted[:2] == [
        {"id": ids[0], "success": True, "errors": []},
        {"id": ids[1], "success": True, "errors": []},
    ]
    assert deleted[2] == {
        "id": "bogus",
        "success": False,
        "errors": [{"statusCode": "MALFORMED_ID", "message": "malformed id bogus", "fields": []}],
    }
    assert org.records("Account") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "composite/sobjects"),
        ("PATCH", "composite/sobjects/Opportunity/Magento_Order_ID__c"),
    ],
)
def test_collections_take_at_most_200_records(org, data, method, path):
    records = [order(f"{n:09d}") for n in range(201)]
    response = data(method, path, json={"records": records})
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "record limit reached. cannot submit more than 200 records into this call",
            "errorCode": "EXCEEDED_ID_LIMIT",
        }
    ]
    assert org.records("Opportunity") == []
    full = data(method, path, json={"records": records[:200]})
    assert full.status_code == 200
    assert len(org.records("Opportunity")) == 200


def test_collections_need_typed_records(data):
    response = data("POST", "composite/sobjects", json={"records": [{"Name": "untyped"}]})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "JSON_PARSER_ERROR"


def test_composite_with_references(org, sf):
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Account",
                "referenceId": "refAccount",
                "body": {"Name": "Jane Doe"},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Contact",
                "referenceId": "refContact",
                "body": {"LastName": "Doe", "AccountId": "@{refAccount.id}"},
            },
            {
                "method": "PATCH",
                "url": "/services/data/v58.0/sobjects/Opportunity/Magento_Order_ID__c/000000123",
                "referenceId": "refOrder",
                "body": opportunity(AccountId="@{refAccount.id}"),
            },
            {
                "method": "GET",
                "url": "/services/data/v58.0/query?q=SELECT+Id+FROM+Contact+WHERE+LastName='Doe'",
                "referenceId": "refFind",
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/OpportunityContactRole",
                "referenceId": "refRole",
                "body": {
                    "OpportunityId": "@{refOrder.id}",
                    "ContactId": "@{refFind.records[0].Id}",
                    "IsPrimary": True,
                },
            },
        ],
    }
    result = sf.restful("composite", method="POST", json=body)["compositeResponse"]
    assert [(r["referenceId"], r["httpStatusCode"]) for r in result] == [
        ("refAccount", 201),
        ("refContact", 201),
        ("refOrder", 201),
        ("refFind", 200),
        ("refRole", 201),
    ]
    account_id = result[0]["body"]["id"]
    assert result[0]["httpHeaders"] == {
        "Location": f"/services/data/v58.0/sobjects/Account/{account_id}"
    }
    assert org.records("Contact")[0]["AccountId"] == account_id
    assert org.records("Opportunity")[0]["AccountId"] == account_id
    role = org.records("OpportunityContactRole")[0]
    assert role["ContactId"] == org.records("Contact")[0]["Id"]
    assert org.stats()["calls_by_kind"] == {"composite": 1}


def test_composite_all_or_none_halts_and_rolls_back(org, data):
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Account",
                "referenceId": "refAccount",
                "body": {"Name": "A"},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Contact",
                "referenceId": "badContact",
                "body": {"Email": "x@example.com"},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Account",
                "referenceId": "later",
                "body": {"Name": "B"},
            },
        ],
    }
    response = data("POST", "composite", json=body)
    assert response.status_code == 200
    first, bad, later = response.json()["compositeResponse"]
    assert first == {
        "body": HALTED,
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": "refAccount",
    }
    assert bad["httpStatusCode"] == 400
    assert bad["body"] == [
        {
            "message": "Required fields are missing: [LastName]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["LastName"],
        }
    ]
    assert later == {
        "body": HALTED,
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": "later",
    }
    assert org.records("Account") == []


def test_composite_without_all_or_none(org, data):
    body = {
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Account",
                "referenceId": "bad",
                "body": {},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Contact",
                "referenceId": "dependent",
                "body": {"LastName": "Doe", "AccountId": "@{bad.id}"},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Account",
                "referenceId": "independent",
                "body": {"Name": "B"},
            },
        ]
    }
    bad, dependent, independent = data("POST", "composite", json=body).json()["compositeResponse"]
    assert bad["body"][0]["errorCode"] == "REQUIRED_FIELD_MISSING"
    assert dependent["httpStatusCode"] == 400
    (halted,) = dependent["body"]
    assert halted["errorCode"] == "PROCESSING_HALTED"
    assert halted["message"].startswith(
        "Invalid reference specified. No value for bad.id found in bad."
    )
    assert independent["httpStatusCode"] == 201
    assert [a["Name"] for a in org.records("Account")] == ["B"]


def test_composite_all_or_none_reaches_collections(org, data):
    body = {
        "allOrNone": True,
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v58.0/composite/sobjects",
                "referenceId": "accounts",
                "body": {
                    "allOrNone": False,
                    "records": [account("A"), {"attributes": {"type": "Account"}}],
                },
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Contact",
                "referenceId": "contact",
                "body": {"LastName": "Doe"},
            },
        ],
    }
    accounts, contact = data("POST", "composite", json=body).json()["compositeResponse"]
    # The Composite request's allOrNone overrides the Collections one: its valid record is
    # rolled back, and so is the whole Composite request.
    assert accounts["httpStatusCode"] == 200
    assert accounts["body"][0] == {"success": False, "errors": [ROLLED_BACK]}
    assert accounts["body"][1]["errors"][0]["statusCode"] == "REQUIRED_FIELD_MISSING"
    assert contact == {
        "body": HALTED,
        "httpHeaders": {},
        "httpStatusCode": 400,
        "referenceId": "contact",
    }
    assert org.records("Account") == []
    assert org.records("Contact") == []


def test_composite_leaves_collections_partial_without_all_or_none(org, data):
    body = {
        "compositeRequest": [
            {
                "method": "POST",
                "url": "/services/data/v58.0/composite/sobjects",
                "referenceId": "accounts",
                "body": {"records": [account("A"), {"attributes": {"type": "Account"}}]},
            },
            {
                "method": "POST",
                "url": "/services/data/v58.0/sobjects/Contact",
                "referenceId": "contact",
                "body": {"LastName": "Doe", "AccountId": "@{accounts[0].id}"},
            },
        ],
    }
    accounts, contact = data("POST", "composite", json=body).json()["compositeResponse"]
    assert [r["success"] for r in accounts["body"]] == [True, False]
    assert contact["httpStatusCode"] == 201
    assert org.records("Contact")[0]["AccountId"] == org.records("Account")[0]["Id"]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"compositeRequest": []}, "JSON_PARSER_ERROR"),
        ({}, "JSON_PARSER_ERROR"),
        (
            {
                "compositeRequest": [
                    {"method": "GET", "url": "/services/data/v58.0/limits", "referenceId": f"r{n}"}
                    for n in range(26)
                ]
            },
            "LIMIT_EXCEEDED",
        ),
        (
            {
                "compositeRequest": [
                    {
                        "method": "GET",
                        "url": "/services/data/v58.0/query?q=SELECT+Id+FROM+Account",
                        "referenceId": f"q{n}",
                    }
                    for n in range(6)
                ]
            },
            "LIMIT_EXCEEDED",
        ),
        (
            {
                "compositeRequest": [
                    {"method": "GET", "url": "/services/data/v58.0/limits", "referenceId": "a-b"}
                ]
            },
            "JSON_PARSER_ERROR",
        ),
        (
            {
                "compositeRequest": [
                    {"method": "GET", "url": "/services/data/v58.0/limits", "referenceId": "same"},
                    {"method": "GET", "url": "/services/data/v58.0/limits", "referenceId": "same"},
                ]
            },
            "JSON_PARSER_ERROR",
        ),
        (
            {
                "compositeRequest": [
                    {"method": "get", "url": "/services/data/v58.0/limits", "referenceId": "a"}
                ]
            },
            "JSON_PARSER_ERROR",
        ),
    ],
    ids=[
        "empty",
        "missing",
        "26 subrequests",
        "6 queries",
        "bad reference id",
        "duplicate reference",
        "lower-case method",
    ],
)
def test_composite_refusals(data, body, code):
    response = data("POST", "composite", json=body)
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == code


def test_composite_with_25_subrequests_counts_once(org, data):
    subrequests = [
        {
            "method": "POST",
            "url": "/services/data/v58.0/sobjects/Account",
            "referenceId": f"a{n}",
            "body": {"Name": f"A{n}"},
        }
        for n in range(25)
    ]
    response = data("POST", "composite", json={"compositeRequest": subrequests})
    assert all(r["httpStatusCode"] == 201 for r in response.json()["compositeResponse"])
    assert org.stats()["api_calls"] == 1
    assert response.headers["Sforce-Limit-Info"] == "api-usage=1/5000000"
