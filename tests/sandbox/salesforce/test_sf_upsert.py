"""Upsert by external id: 201 created, 200 updated, 300 several matches, 404 unknown field, 400
for a field that is not an external id or a body that carries the key."""

import pytest
from simple_salesforce.exceptions import SalesforceMalformedRequest, SalesforceMoreThanOneRecord

from magsync.sandbox.salesforce.schema import packaged_schema
from tests.sandbox.salesforce.helpers import direct_client, https_session, opportunity

UPSERT = "sobjects/Opportunity/Magento_Order_ID__c/000000123"


def test_created_then_updated(org, data):
    created = data("PATCH", UPSERT, json=opportunity())
    assert created.status_code == 201
    record_id = created.json()["id"]
    assert created.json() == {"id": record_id, "success": True, "errors": [], "created": True}
    assert created.headers["Location"] == f"/services/data/v58.0/sobjects/Opportunity/{record_id}"
    updated = data("PATCH", UPSERT, json={"StageName": "Closed Won", "Amount": "120.50"})
    assert updated.status_code == 200
    assert updated.json() == {"id": record_id, "success": True, "errors": [], "created": False}
    (stored,) = org.records("Opportunity")
    assert stored["Id"] == record_id
    assert stored["Magento_Order_ID__c"] == "000000123"
    assert (stored["StageName"], stored["Amount"], stored["IsWon"]) == ("Closed Won", 120.5, True)
    assert stored["Name"] == "Order 000000123 - Jane Doe"


def test_simple_salesforce_upsert_returns_only_the_status(sf):
    assert sf.Opportunity.upsert("Magento_Order_ID__c/000000123", opportunity()) == 201
    assert sf.Opportunity.upsert("Magento_Order_ID__c/000000123", {"Amount": 1}) == 200
    raw = sf.Opportunity.upsert("Magento_Order_ID__c/000000124", opportunity(), raw_response=True)
    assert raw.status_code == 201
    assert raw.json()["created"] is True
    assert (
        sf.Opportunity.get_by_custom_id("Magento_Order_ID__c", "000000124")["Id"]
        == raw.json()["id"]
    )


def test_external_ids_match_case_insensitively(org, data):
    assert (
        data(
            "PATCH", "sobjects/Opportunity/Magento_Order_ID__c/ord-a1", json=opportunity()
        ).status_code
        == 201
    )
    assert (
        data(
            "PATCH", "sobjects/Opportunity/magento_order_id__c/ORD-A1", json={"Amount": 5}
        ).status_code
        == 200
    )
    assert len(org.records("Opportunity")) == 1


def test_external_id_value_is_url_decoded(org, data):
    response = data(
        "PATCH", "sobjects/Opportunity/Magento_Order_ID__c/000000123%2F1%20x", json=opportunity()
    )
    assert response.status_code == 201
    assert org.records("Opportunity")[0]["Magento_Order_ID__c"] == "000000123/1 x"


def test_several_matches_answer_300_with_record_urls(data, sf):
    first = sf.Contact.create({"LastName": "Doe", "Email": "jane.doe@example.com"})["id"]
    second = sf.Contact.create({"LastName": "Doe", "Email": "JANE.DOE@example.com"})["id"]
    response = data(
        "PATCH", "sobjects/Contact/Email/jane.doe@example.com", json={"FirstName": "Jane"}
    )
    assert response.status_code == 300
    assert sorted(response.json()) == sorted(
        [
            f"/services/data/v58.0/sobjects/Contact/{first}",
            f"/services/data/v58.0/sobjects/Contact/{second}",
        ]
    )
    with pytest.raises(SalesforceMoreThanOneRecord):
        sf.Contact.upsert("Email/jane.doe@example.com", {"FirstName": "Jane"})
    assert data("GET", "sobjects/Contact/Email/jane.doe@example.com").status_code == 300


@pytest.mark.parametrize(
    ("path", "body", "status", "error"),
    [
        (
            "sobjects/Opportunity/Order_Number__c/000000123",
            opportunity(),
            404,
            {
                "errorCode": "NOT_FOUND",
                "message": "Provided external ID field does not exist or is not accessible: "
                "Order_Number__c",
            },
        ),
        (
            "sobjects/Opportunity/Name/Order%20000000123",
            {"StageName": "Prospecting"},
            400,
            {
                "errorCode": "INVALID_FIELD",
                "message": "Name is not an External ID or indexed field for Opportunity",
            },
        ),
        (
            UPSERT,
            opportunity(Magento_Order_ID__c="000000123"),
            400,
            {
                "errorCode": "INVALID_FIELD",
                "message": "The Magento_Order_ID__c field should not be specified in the "
                "sobject data.",
            },
        ),
        (
            UPSERT,
            opportunity(Id="0065g0000000001AAA"),
            400,
            {
                "errorCode": "INVALID_FIELD",
                "message": "The Id field should not be specified in the sobject data.",
            },
        ),
        (
            "sobjects/Widget__c/Key__c/1",
            {},
            404,
            {"errorCode": "NOT_FOUND", "message": "The requested resource does not exist"},
        ),
    ],
    ids=["unknown field", "not external", "key in body", "Id in body", "unknown object"],
)
def test_upsert_refusals(org, data, path, body, status, error):
    response = data("PATCH", path, json=body)
    assert response.status_code == status
    assert response.json() == [error]
    assert org.records("Opportunity") == []


def test_upsert_validates_what_it_creates(data):
    response = data("PATCH", UPSERT, json={"Name": "Order 000000123"})
    assert response.status_code == 400
    assert response.json() == [
        {
            "message": "Required fields are missing: [StageName, CloseDate]",
            "errorCode": "REQUIRED_FIELD_MISSING",
            "fields": ["StageName", "CloseDate"],
        }
    ]


def test_external_id_longer_than_the_field(data):
    response = data(
        "PATCH", "sobjects/Opportunity/Magento_Order_ID__c/" + "9" * 81, json=opportunity()
    )
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "STRING_TOO_LONG"
    assert response.json()[0]["fields"] == ["Magento_Order_ID__c"]


def test_unique_external_id_refuses_duplicates_on_create(sf):
    sf.Opportunity.create(opportunity(Magento_Order_ID__c="000000123"))
    with pytest.raises(SalesforceMalformedRequest) as refused:
        sf.Opportunity.create(opportunity(Magento_Order_ID__c="000000123"))
    (error,) = refused.value.content
    assert error["errorCode"] == "DUPLICATE_VALUE"
    assert error["message"].startswith(
        "duplicate value found: Magento_Order_ID__c duplicates value on record with id: 006"
    )


def test_lead_upsert_by_magento_order_id(org, data):
    body = {
        "LastName": "Doe",
        "FirstName": "Jane",
        "Company": "Jane Doe",
        "LeadSource": "Magento E-commerce",
    }
    assert (
        data("PATCH", "sobjects/Lead/Magento_Order_ID__c/000000123", json=body).status_code == 201
    )
    (lead,) = org.records("Lead")
    assert (lead["Name"], lead["Status"], lead["Magento_Order_ID__c"]) == (
        "Jane Doe",
        "Open - Not Contacted",
        "000000123",
    )


def test_variant_org_without_the_external_id_flag(org_factory):
    schema = packaged_schema()
    del schema["sobjects"]["Opportunity"]["fields"]["Magento_Order_ID__c"]["externalId"]
    variant = org_factory(schema=schema)
    with https_session(variant) as session:
        sf = direct_client(variant, session, variant.issue_access_token())
        with pytest.raises(SalesforceMalformedRequest) as refused:
            sf.Opportunity.upsert("Magento_Order_ID__c/000000123", opportunity())
        assert refused.value.content == [
            {
                "message": "Magento_Order_ID__c is not an External ID or indexed field for "
                "Opportunity",
                "errorCode": "INVALID_FIELD",
            }
        ]
        describe = sf.Opportunity.describe()
    order = next(f for f in describe["fields"] if f["name"] == "Magento_Order_ID__c")
    assert order["externalId"] is False
