"""An org's validation: each rule as a (body, status, error) case, then the product rules."""

import pytest

from magsync.sandbox.salesforce.schema import packaged_schema
from tests.sandbox.salesforce.helpers import direct_client, https_session, opportunity

# (case, object, body, errorCode, fields, message)
CASES = [
    (
        "opportunity required",
        "Opportunity",
        {"Name": "Order 1"},
        "REQUIRED_FIELD_MISSING",
        ["StageName", "CloseDate"],
        "Required fields are missing: [StageName, CloseDate]",
    ),
    (
        "account name",
        "Account",
        {"Phone": "1"},
        "REQUIRED_FIELD_MISSING",
        ["Name"],
        "Required fields are missing: [Name]",
    ),
    (
        "contact last name",
        "Contact",
        {"FirstName": "J"},
        "REQUIRED_FIELD_MISSING",
        ["LastName"],
        None,
    ),
    (
        "lead name and company",
        "Lead",
        {"Email": "a@example.com"},
        "REQUIRED_FIELD_MISSING",
        ["LastName", "Company"],
        "Required fields are missing: [LastName, Company]",
    ),
    ("empty string is missing", "Account", {"Name": ""}, "REQUIRED_FIELD_MISSING", ["Name"], None),
    (
        "unknown field",
        "Opportunity",
        opportunity(Order_Number__c="1"),
        "INVALID_FIELD",
        None,
        "No such column 'Order_Number__c' on sobject of type Opportunity",
    ),
    (
        "name over 120",
        "Opportunity",
        opportunity(Name="x" * 121),
        "STRING_TOO_LONG",
        ["Name"],
        f"Name: data value too large: {'x' * 121} (max length=120)",
    ),
    (
        "description over 32000",
        "Opportunity",
        opportunity(Description="d" * 32001),
        "STRING_TOO_LONG",
        ["Description"],
        None,
    ),
    (
        "billing city over 40",
        "Opportunity",
        opportunity(Billing_City__c="c" * 41),
        "STRING_TOO_LONG",
        ["Billing_City__c"],
        None,
    ),
    (
        "stage not in picklist",
        "Opportunity",
        opportunity(StageName="Shipped"),
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ["StageName"],
        "Stage: bad value for restricted picklist field: Shipped",
    ),
    (
        "currency not enabled",
        "Opportunity",
        opportunity(CurrencyIsoCode="CHF"),
        "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST",
        ["CurrencyIsoCode"],
        None,
    ),
    (
        "impossible date",
        "Opportunity",
        opportunity(CloseDate="2023-13-45"),
        "JSON_PARSER_ERROR",
        None,
        "Cannot deserialize instance of date from VALUE_STRING value 2023-13-45 or request may be "
        "missing a required field at [line:1, column:",
    ),
    (
        "date with slashes",
        "Opportunity",
        opportunity(CloseDate="11/26/2023"),
        "JSON_PARSER_ERROR",
        None,
        None,
    ),
    (
        "amount not a number",
        "Opportunity",
        opportunity(Amount="ninety"),
        "JSON_PARSER_ERROR",
        None,
        "Cannot deserialize instance of double from VALUE_STRING value ninety",
    ),
    (
        "amount as object",
        "Opportunity",
        opportunity(Amount={"value": 1}),
        "JSON_PARSER_ERROR",
        None,
        "Cannot deserialize instance of double from START_OBJECT value {",
    ),
    (
        "date as number",
        "Opportunity",
        opportunity(CloseDate=20231126),
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ["CloseDate"],
        "Close Date: value not of required type: 20231126",
    ),
    (
        "checkbox as number",
        "Contact",
        {"LastName": "Doe", "HasOptedOutOfEmail": 1},
        "INVALID_TYPE_ON_FIELD_IN_RECORD",
        ["HasOptedOutOfEmail"],
        None,
    ),
    (
        "checkbox as word",
        "Contact",
        {"LastName": "Doe", "HasOptedOutOfEmail": "yes"},
        "JSON_PARSER_ERROR",
        None,
        None,
    ),
    (
        "calculated field",
        "Opportunity",
        opportunity(IsWon=True),
        "INVALID_FIELD_FOR_INSERT_UPDATE",
        ["IsWon"],
        "Unable to create/update fields: IsWon. Please check the security settings of this "
        "field and verify that it is read/write for your profile or permission set.",
    ),
    (
        "bad email",
        "Contact",
        {"LastName": "Doe", "Email": "jane.doe@"},
        "INVALID_EMAIL_ADDRESS",
        ["Email"],
        "Email: invalid email address: jane.doe@",
    ),
    (
        "bad custom email",
        "Opportunity",
        opportunity(Magento_Customer_Email__c="nobody"),
        "INVALID_EMAIL_ADDRESS",
        ["Magento_Customer_Email__c"],
        None,
    ),
    (
        "malformed account id",
        "Opportunity",
        opportunity(AccountId="acme"),
        "MALFORMED_ID",
        ["AccountId"],
        "Account ID: id value of incorrect type: acme",
    ),
    (
        "account id of a contact",
        "Opportunity",
        opportunity(AccountId="003A0000005QB3AIAW"),
        "FIELD_INTEGRITY_EXCEPTION",
        ["AccountId"],
        None,
    ),
    (
        "missing account",
        "Opportunity",
        opportunity(AccountId="001A0000006Vm9rIAC"),
        "INVALID_CROSS_REFERENCE_KEY",
        ["AccountId"],
        None,
    ),
    (
        "amount too large",
        "Opportunity",
        opportunity(Amount=1e17),
        "NUMBER_OUTSIDE_VALID_RANGE",
        ["Amount"],
        None,
    ),
    (
        "id in body",
        "Account",
        {"Name": "Acme", "Id": "001A0000006Vm9rIAC"},
        "INVALID_FIELD",
        None,
        "The Id field should not be specified in the sobject data.",
    ),
]


@pytest.mark.parametrize(
    ("sobject", "body", "code", "fields", "message"),
    [c[1:] for c in CASES],
    ids=[c[0] for c in CASES],
)
def test_validation(org, data, sobject, body, code, fields, message):
    response = data("POST", f"sobjects/{sobject}", json=body)
    assert response.status_code == 400
    (error,) = response.json()
    assert error["errorCode"] == code
    assert error.get("fields") == fields
    if message:
        assert error["message"].startswith(message)
    assert org.records(sobject) == []


@pytest.mark.parametrize(
    ("changes", "stored"),
    [
        ({"Amount": "99.99"}, {"Amount": 99.99}),
        ({"Amount": 10.005}, {"Amount": 10.01}),
        ({"LeadSource": "Web"}, {"LeadSource": "Web"}),
        ({"LeadSource": "Trade show"}, {"LeadSource": "Trade show"}),  # not a restricted picklist
        ({"Name": "n" * 120}, {"Name": "n" * 120}),
        ({"Description": "d" * 32000}, {"Description": "d" * 32000}),
        ({"CurrencyIsoCode": "EUR"}, {"CurrencyIsoCode": "EUR"}),
        ({}, {"CurrencyIsoCode": "USD", "Probability": 10, "ForecastCategoryName": "Pipeline"}),
        ({"StageName": "Closed Lost"}, {"IsClosed": True, "IsWon": False, "Probability": 0}),
        ({"StageName": "Negotiation/Review", "Probability": 55}, {"Probability": 55}),
        ({"Magento_Parent_Order_ID__c": "000000123"}, {"Magento_Parent_Order_ID__c": "000000123"}),
    ],
)
def test_accepted_values(org, sf, changes, stored):
    sf.Opportunity.create(opportunity(**changes))
    (record,) = org.records("Opportunity")
    assert {key: record[key] for key in stored} == stored


def test_update_to_null_required_field(sf, data):
    record_id = sf.Account.create({"Name": "Acme"})["id"]
    response = data("PATCH", f"sobjects/Account/{record_id}", json={"Name": None})
    assert response.status_code == 400
    assert response.json()[0]["errorCode"] == "REQUIRED_FIELD_MISSING"


def test_contact_linked_to_account(org, sf):
    account = sf.Account.create({"Name": "Jane Doe"})["id"]
    contact = sf.Contact.create({"LastName": "Doe", "FirstName": "Jane", "AccountId": account})[
        "id"
    ]
    record = sf.Contact.get(contact)
    assert (record["Name"], record["AccountId"]) == ("Jane Doe", account)
    sf.Account.delete(account)
    assert org.records("Contact") == []  # deleted with its account


def test_variant_org_with_its_own_stages(org_factory):
    schema = packaged_schema()
    stage = schema["sobjects"]["Opportunity"]["fields"]["StageName"]
    stage["picklist"] = [value for value in stage["picklist"] if value != "Prospecting"] + ["Paid"]
    del schema["sobjects"]["Opportunity"]["fields"]["Billing_Country__c"]
    variant = org_factory(schema=schema)
    with https_session(variant) as session:
        token = variant.issue_access_token()
        headers = {"Authorization": f"Bearer {token}"}
        url = f"{variant.url}/services/data/v58.0/sobjects/Opportunity"
        refused = session.post(
            url, json=opportunity(Billing_Country__c=None), headers=headers, timeout=10
        )
        assert refused.json()[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
        missing = session.post(url, json=opportunity(StageName="Paid"), headers=headers, timeout=10)
        assert missing.json() == [
            {
                "message": "No such column 'Billing_Country__c' on sobject of type Opportunity",
                "errorCode": "INVALID_FIELD",
            }
        ]
        sf = direct_client(variant, session, token)
        assert sf.Opportunity.create(opportunity(StageName="Paid", Billing_Country__c=None))[
            "success"
        ]


@pytest.fixture
def catalog(org, sf):
    """A product with a standard price, and an opportunity."""
    product = sf.Product2.create(
        {"Name": "Product X", "ProductCode": "PROD-XYZ", "IsActive": True}
    )["id"]
    entry = sf.PricebookEntry.create(
        {
            "Pricebook2Id": org.standard_pricebook_id,
            "Product2Id": product,
            "UnitPrice": 99.99,
            "IsActive": True,
        }
    )["id"]
    opp = sf.Opportunity.create(opportunity(Amount=None))["id"]
    return {"product": product, "entry": entry, "opportunity": opp}


LINE_ITEM_CASES = [
    ("no entry", {"PricebookEntryId": None}, "REQUIRED_FIELD_MISSING", ["PricebookEntryId"]),
    ("no quantity", {"Quantity": None}, "REQUIRED_FIELD_MISSING", ["Quantity"]),
    ("both prices", {"TotalPrice": 199.98}, "FIELD_INTEGRITY_EXCEPTION", ["TotalPrice"]),
    ("no price", {"UnitPrice": None}, "FIELD_INTEGRITY_EXCEPTION", ["unknown"]),
    (
        "entry of another object",
        {"PricebookEntryId": "01t000000000001AAA"},
        "FIELD_INTEGRITY_EXCEPTION",
        ["PricebookEntryId"],
    ),
]


@pytest.mark.parametrize(
    ("changes", "code", "fields"),
    [c[1:] for c in LINE_ITEM_CASES],
    ids=[c[0] for c in LINE_ITEM_CASES],
)
def test_line_item_rules(org, data, catalog, changes, code, fields):
    body = {
        "OpportunityId": catalog["opportunity"],
        "PricebookEntryId": catalog["entry"],
        "Quantity": 2,
        "UnitPrice": 99.99,
    }
    body.update(changes)
    response = data(
        "POST",
        "sobjects/OpportunityLineItem",
        json={k: v for k, v in body.items() if v is not None},
    )
    assert response.status_code == 400
    (error,) = response.json()
    assert (error["errorCode"], error["fields"]) == (code, fields)
    assert org.records("OpportunityLineItem") == []


def test_line_items_roll_up_into_the_opportunity(org, sf, catalog):
    base = {"OpportunityId": catalog["opportunity"], "PricebookEntryId": catalog["entry"]}
    sf.OpportunityLineItem.create({**base, "Quantity": 2, "UnitPrice": 99.99})
    sf.OpportunityLineItem.create({**base, "Quantity": 1, "TotalPrice": 50})
    items = sorted(org.records("OpportunityLineItem"), key=lambda r: r["TotalPrice"])
    assert [(i["UnitPrice"], i["TotalPrice"], i["ListPrice"]) for i in items] == [
        (50.0, 50.0, 99.99),
        (99.99, 199.98, 99.99),
    ]
    assert items[0]["Product2Id"] == catalog["product"]
    opp = sf.Opportunity.get(catalog["opportunity"])
    assert (opp["Amount"], opp["HasOpportunityLineItem"], opp["Pricebook2Id"]) == (
        249.98,
        True,
        org.standard_pricebook_id,
    )


def test_price_book_rules(org, sf, data, catalog):
    custom = sf.Pricebook2.create({"Name": "Web store", "IsActive": True})["id"]
    other = sf.Product2.create({"Name": "Product Y"})["id"]
    no_standard = data(
        "POST",
        "sobjects/PricebookEntry",
        json={"Pricebook2Id": custom, "Product2Id": other, "UnitPrice": 5},
    )
    assert no_standard.json() == [
        {
            "message": "Before creating a custom price, create a standard price.",
            "errorCode": "STANDARD_PRICE_NOT_DEFINED",
            "fields": [],
        }
    ]
    again = data(
        "POST",
        "sobjects/PricebookEntry",
        json={
            "Pricebook2Id": org.standard_pricebook_id,
            "Product2Id": catalog["product"],
            "UnitPrice": 5,
        },
    )
    assert again.json()[0]["errorCode"] == "DUPLICATE_VALUE"
    custom_entry = data(
        "POST",
        "sobjects/PricebookEntry",
        json={"Pricebook2Id": custom, "Product2Id": catalog["product"], "UnitPrice": 89},
    )
    assert custom_entry.status_code == 201
    entry_id = custom_entry.json()["id"]
    inactive = data(
        "POST",
        "sobjects/OpportunityLineItem",
        json={
            "OpportunityId": catalog["opportunity"],
            "PricebookEntryId": entry_id,
            "Quantity": 1,
            "UnitPrice": 89,
        },
    )
    assert (
        inactive.json()[0]["message"]
        == "field integrity exception: PricebookEntryId (pricebook entry is inactive)"
    )


LARGE_ORDERS_RULE = {
    "name": "Large_orders_need_approval",
    "field": "Amount",
    "operator": "gt",
    "value": 250000,
    "message": "Orders over 250,000 need a manual approval.",
    "errorDisplayField": "Amount",
}


def test_custom_validation_rule_refuses_a_save(org_factory):
    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["validationRules"] = [LARGE_ORDERS_RULE]
    org = org_factory(schema=schema)
    headers = {"Authorization": f"Bearer {org.issue_access_token()}"}
    base = f"{org.url}/services/data/v58.0/sobjects/Opportunity/Magento_Order_ID__c/"
    with https_session(org) as session:
        small = session.patch(base + "R-1", json=opportunity(Amount=250000), headers=headers)
        assert small.status_code == 201
        big = session.patch(base + "R-2", json=opportunity(Amount=250000.01), headers=headers)
        assert big.status_code == 400
        assert big.json() == [
            {
                "message": "Orders over 250,000 need a manual approval.",
                "errorCode": "FIELD_CUSTOM_VALIDATION_EXCEPTION",
                "fields": ["Amount"],
            }
        ]
        # An update that breaks the rule is refused too, and changes nothing.
        raised = session.patch(base + "R-1", json={"Amount": 300000}, headers=headers)
        assert raised.status_code == 400
    [stored] = org.records("Opportunity")
    assert stored["Amount"] == 250000


def test_a_malformed_validation_rule_is_refused_at_load(org_factory):
    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["validationRules"] = [
        {"name": "Bad", "field": "NoSuchField__c", "operator": "gt", "value": 1, "message": "x"}
    ]
    with pytest.raises(ValueError, match="validation rule 'Bad'"):
        org_factory(schema=schema)


# Line-item rules as real Salesforce answers them. Sources, by rule:
# - entry of another price book: the exact message, quoted in forcedotcom/SFDX-Data-Move-Utility
#   issue 704 ("field integrity exception: PricebookEntryId (pricebook entry is in a different
#   pricebook than the one assigned to the opportunity)");
# - entry of another currency: FIELD_INTEGRITY_EXCEPTION per greytrix.com/blogs/salesforce
#   2026/04/17 "Fixing PricebookEntry Currency Mismatch"; the message text is assumed;
# - inactive entry, entry of an inactive price book: no public answer found; the shape is assumed
#   (FIELD_INTEGRITY_EXCEPTION on PricebookEntryId, like the two above);
# - a custom price without a standard one: STANDARD_PRICE_NOT_DEFINED, "Before creating a custom
#   price, create a standard price." (SFDX-Data-Move-Utility issue 706; test_price_book_rules);
# - UnitPrice and TotalPrice together: FIELD_INTEGRITY_EXCEPTION on insert (bgaldino/rlm-base-dev
#   pull request 54), INVALID_FIELD "Cannot change both 'UnitPrice' and 'TotalPrice' in update
#   call" on update (fishofprey.com 2012/05 "salesforce-unable-to-set");
# - Pricebook2Id set by the first line, and not updatable while lines exist: the SOAP API object
#   reference quoted at salesforce.stackexchange.com/tags/opportunity-lineitem/info ("The API
#   rejects any attempt to update these fields"); the error's shape is assumed.


def _line(data, opportunity_id, entry_id, **prices):
    return data(
        "POST",
        "sobjects/OpportunityLineItem",
        json={
            "OpportunityId": opportunity_id,
            "PricebookEntryId": entry_id,
            "Quantity": 1,
            **(prices or {"UnitPrice": 10}),
        },
    )


def _error(response):
    assert response.status_code == 400, response.text
    (error,) = response.json()
    return error["errorCode"], error["message"], error["fields"]


def test_a_line_of_another_price_book_or_currency_is_refused(org, sf, data, catalog):
    custom = sf.Pricebook2.create({"Name": "Web store", "IsActive": True})["id"]
    custom_entry = sf.PricebookEntry.create(
        {
            "Pricebook2Id": custom,
            "Product2Id": catalog["product"],
            "UnitPrice": 89,
            "IsActive": True,
        }
    )["id"]
    assert _line(data, catalog["opportunity"], catalog["entry"]).status_code == 201
    assert _error(_line(data, catalog["opportunity"], custom_entry)) == (
        "FIELD_INTEGRITY_EXCEPTION",
        "field integrity exception: PricebookEntryId (pricebook entry is in a different "
        "pricebook than the one assigned to the opportunity)",
        ["PricebookEntryId"],
    )
    eur = sf.Opportunity.create(opportunity(Amount=None, CurrencyIsoCode="EUR"))["id"]
    assert _error(_line(data, eur, catalog["entry"])) == (
        "FIELD_INTEGRITY_EXCEPTION",
        "field integrity exception: PricebookEntryId (pricebook entry currency code does not "
        "match opportunity currency code)",
        ["PricebookEntryId"],
    )


def test_a_line_of_an_inactive_entry_or_price_book_is_refused(org, sf, data, catalog):
    book = sf.Pricebook2.create({"Name": "Closed book", "IsActive": True})["id"]
    entry = sf.PricebookEntry.create(
        {"Pricebook2Id": book, "Product2Id": catalog["product"], "UnitPrice": 5, "IsActive": True}
    )["id"]
    sf.Pricebook2.update(book, {"IsActive": False})
    code, message, fields = _error(_line(data, catalog["opportunity"], entry))
    assert (code, fields) == ("FIELD_INTEGRITY_EXCEPTION", ["PricebookEntryId"])
    assert "inactive" in message
    sf.PricebookEntry.update(catalog["entry"], {"IsActive": False})
    assert _error(_line(data, catalog["opportunity"], catalog["entry"]))[1] == (
        "field integrity exception: PricebookEntryId (pricebook entry is inactive)"
    )


def test_both_prices_are_refused_on_update_too(org, data, catalog):
    line = _line(data, catalog["opportunity"], catalog["entry"]).json()["id"]
    both = data(
        "PATCH", f"sobjects/OpportunityLineItem/{line}", json={"UnitPrice": 3, "TotalPrice": 3}
    )
    assert _error(both) == (
        "INVALID_FIELD",
        "Cannot change both 'UnitPrice' and 'TotalPrice' in update call",
        ["UnitPrice"],
    )


def test_the_first_line_sets_the_price_book_which_then_cannot_change(org, sf, data, catalog):
    assert sf.Opportunity.get(catalog["opportunity"])["Pricebook2Id"] is None
    line = _line(data, catalog["opportunity"], catalog["entry"], UnitPrice=1.15)
    line = data("PATCH", f"sobjects/OpportunityLineItem/{line.json()['id']}", json={"Quantity": 3})
    assert line.status_code == 204
    opp = sf.Opportunity.get(catalog["opportunity"])
    # 3 x 1.15 to the cent (floats would say 3.44); a written Amount is ignored.
    assert (opp["Pricebook2Id"], opp["Amount"]) == (org.standard_pricebook_id, 3.45)
    assert (
        data(
            "PATCH", f"sobjects/Opportunity/{catalog['opportunity']}", json={"Amount": 1}
        ).status_code
        == 204
    )
    assert sf.Opportunity.get(catalog["opportunity"])["Amount"] == 3.45
    custom = sf.Pricebook2.create({"Name": "Other", "IsActive": True})["id"]
    change = data(
        "PATCH", f"sobjects/Opportunity/{catalog['opportunity']}", json={"Pricebook2Id": custom}
    )
    assert _error(change) == (
        "FIELD_INTEGRITY_EXCEPTION",
        "field integrity exception: Pricebook2Id (cannot change pricebook on opportunity with "
        "line items)",
        ["Pricebook2Id"],
    )
    same = data(
        "PATCH",
        f"sobjects/Opportunity/{catalog['opportunity']}",
        json={"Pricebook2Id": org.standard_pricebook_id},
    )
    assert same.status_code == 204
