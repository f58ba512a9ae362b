import copy
import datetime as dt
import threading
from decimal import Decimal

import pytest

from magsync.errors import InvalidOrder
from magsync.mapping.customer import account_fields, contact_fields
from magsync.mapping.lead import lead_record
from magsync.mapping.opportunity import (
    DESCRIPTION_LIMIT,
    NAME_LIMIT,
    describe_items,
    opportunity_record,
)
from magsync.mapping.order import load_order
from tests.helpers import SEED_OPPORTUNITY, load_fixture

# The mapping's own output: the same fields, the amount still a Decimal.
SEED_FIELDS = {**SEED_OPPORTUNITY, "Amount": Decimal("99.99")}


@pytest.fixture
def seed_order():
    return copy.deepcopy(load_fixture("seed_webhook.json")["order"])


def test_seed_example_maps_to_exactly_the_seed_fields(seed_order, make_settings):
    record = opportunity_record(load_order(seed_order), make_settings())
    assert record.fields == SEED_FIELDS
    assert record.sobject == "Opportunity"
    assert (record.external_id_field, record.external_id) == ("Magento_Order_ID__c", "000000123")
    assert "Magento_Order_ID__c" not in record.body()


def test_external_id_field_lead_source_stage_and_close_date_are_settings(seed_order, make_settings):
    settings = make_settings(
        SALESFORCE_EXTERNAL_ID_FIELD="External_Order_ID__c",
        SALESFORCE_LEAD_SOURCE="Web",
        SALESFORCE_STAGE_MAP="new=Qualification;complete=Closed Won",
        SALESFORCE_CLOSE_DATE_OFFSET="30 days",
    )
    fields = opportunity_record(load_order(seed_order), settings).fields
    assert fields["External_Order_ID__c"] == "000000123"
    assert "Magento_Order_ID__c" not in fields
    assert fields["LeadSource"] == "Web"
    assert fields["StageName"] == "Qualification"
    assert fields["CloseDate"] == "2023-11-25"


def test_states_outside_the_map_keep_the_previous_stage(seed_order, make_settings):
    seed_order["state"] = "holded"
    order = load_order(seed_order)
    assert opportunity_record(order, make_settings(), "Qualification").fields["StageName"] == (
        "Qualification"
    )
    assert opportunity_record(order, make_settings()).fields["StageName"] == "Prospecting"


def test_adobe_string_values_load_and_configurables_count_once(make_settings):
    order = load_order(load_fixture("adobe_io_event.json")["data"]["value"])
    assert order.entity_id == 4711
    assert order.grand_total == Decimal("1249.500000")
    assert order.created_at == dt.datetime(2024, 3, 8, 14, 20, 5, tzinfo=dt.UTC)
    assert [i.sku for i in order.sold_items] == ["JKT-01", "SOCK-3"]
    fields = opportunity_record(order, make_settings()).fields
    assert fields["Amount"] == Decimal("1249.50")
    assert fields["StageName"] == "Qualification"
    assert fields["Name"] == "Order 100004711 - Zoë O'Brien"
    assert fields["Billing_Street__c"] == "Straße der Einheit 12\nHinterhaus, 3. OG"
    assert fields["Description"] == (
        'Wool "Alpine" Jacket (SKU: JKT-01, Qty: 1)\nMerino socks (SKU: SOCK-3, Qty: 2.5)'
    )


def test_guest_name_comes_from_the_billing_address(seed_order, make_settings):
    seed_order.update(customer_firstname=None, customer_lastname=None, customer_is_guest=1)
    seed_order["billing_address"].update(firstname="Ana", lastname="Guest")
    order = load_order(seed_order)
    assert order.customer_is_guest is True
    assert opportunity_record(order, make_settings()).fields["Name"] == (
        "Order 000000123 - Ana Guest"
    )


def test_child_rows_recognised_by_parent_item_object(seed_order):
    seed_order["items"] = [
        {
            "item_id": 7,
            "sku": "CFG",
            "name": "Hoodie",
            "qty_ordered": 1,
            "price": 69,
            "product_type": "configurable",
        },
        {
            "item_id": 8,
            "sku": "CFG-XS",
            "name": "Hoodie-XS",
            "qty_ordered": 1,
            "price": 69,
            "parent_item": {"item_id": 7},
        },
    ]
    assert [i.sku for i in load_order(seed_order).sold_items] == ["CFG"]


def test_name_is_cut_to_salesforce_limit(seed_order, make_settings):
    seed_order["customer_lastname"] = "X" * 300
    name = opportunity_record(load_order(seed_order), make_settings()).fields["Name"]
    assert len(name) == NAME_LIMIT
    assert name.startswith("Order 000000123 - Jane XXX") and name.endswith("…")


def test_description_stays_within_salesforce_limit(seed_order):
    seed_order["items"] = [
        {
            "item_id": n,
            "sku": f"SKU-{n}",
            "name": "Long product name " * 20,
            "qty_ordered": 1,
            "price": 1,
        }
        for n in range(400)
    ]
    text = describe_items(load_order(seed_order).sold_items)
    assert len(text) <= DESCRIPTION_LIMIT
    assert text.endswith("more items")
    shown = text.count("(SKU: ")
    assert f"… and {400 - shown} more items" in text


def test_amount_is_decimal_rounded_half_up(seed_order, make_settings):
    seed_order["grand_total"] = "10.005"
    assert opportunity_record(load_order(seed_order), make_settings()).fields["Amount"] == (
        Decimal("10.01")
    )


def test_a_lead_rounds_its_total_as_an_opportunity_rounds_its_amount(seed_order, make_settings):
    seed_order.update(grand_total="10.1250", customer_is_guest=1)
    order = load_order(seed_order)
    assert opportunity_record(order, make_settings()).fields["Amount"] == Decimal("10.13")
    description = lead_record(order, make_settings()).fields["Description"]
    assert description.startswith("Order 000000123 total: 10.13\n")


def test_timestamps_with_offset_are_converted_to_utc(seed_order):
    seed_order["created_at"] = "2023-10-26T23:30:00-02:00"
    assert load_order(seed_order).created_at == dt.datetime(2023, 10, 27, 1, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"state": "shipped"}, "state"),
        ({"grand_total": "abc"}, "grand_total"),
        ({"grand_total": "NaN"}, "grand_total"),
        ({"created_at": "yesterday"}, "created_at"),
        ({"customer_email": "not-an-email"}, "customer_email"),
        ({"increment_id": ""}, "increment_id"),
        ({"items": [{"sku": "A", "name": "A", "qty_ordered": -1}]}, "items"),
        ({"billing_address": {"street": [1, 2]}}, "billing_address"),
    ],
)
def test_invalid_orders_name_the_field(seed_order, change, field):
    seed_order.update(change)
    with pytest.raises(InvalidOrder) as info:
        load_order(seed_order)
    assert field in info.value.errors[0]


def test_unknown_fields_are_ignored(seed_order):
    seed_order["some_extension_field"] = {"x": 1}
    assert load_order(seed_order).increment_id == "000000123"


# -- buyers, leads, edits and currencies ----------------------------------------------------------


def test_the_buyer_becomes_an_account_and_a_contact(seed_order, make_settings):
    order = load_order(seed_order)
    assert account_fields(order) == {
        "Name": "Jane Doe",
        "BillingStreet": "123 Main St",
        "BillingCity": "Anytown",
        "BillingState": "State",
        "BillingPostalCode": "12345",
        "BillingCountry": "US",
        "Phone": "555-1234",
    }
    assert contact_fields(order, make_settings()) == {
        "FirstName": "Jane",
        "LastName": "Doe",
        "Email": "jane.doe@example.com",
        "LeadSource": "Magento E-commerce",
        "MailingStreet": "123 Main St",
        "MailingCity": "Anytown",
        "MailingState": "State",
        "MailingPostalCode": "12345",
        "MailingCountry": "US",
        "Phone": "555-1234",
    }


def test_a_company_names_the_account_and_long_names_are_cut(seed_order, make_settings):
    seed_order["billing_address"].update(company="  Acme O'Neil GmbH ", city="C" * 60)
    seed_order.update(customer_firstname="F" * 50, customer_lastname="L" * 90)
    order = load_order(seed_order)
    account = account_fields(order)
    contact = contact_fields(order, make_settings())
    assert account["Name"] == "Acme O'Neil GmbH"
    assert len(account["BillingCity"]) == 40
    assert (len(contact["FirstName"]), len(contact["LastName"])) == (40, 80)


def test_a_buyer_without_names_gets_a_last_name_from_the_email(seed_order, make_settings):
    seed_order.update(customer_firstname=None, customer_lastname=None, billing_address=None)
    order = load_order(seed_order)
    contact = contact_fields(order, make_settings())
    assert contact["LastName"] == "jane.doe"
    assert "FirstName" not in contact
    assert account_fields(order) == {"Name": "jane.doe@example.com"}


def test_a_guest_order_as_a_lead(seed_order, make_settings):
    seed_order.update(customer_firstname=None, customer_lastname=None, customer_is_guest=1)
    seed_order["order_currency_code"] = "EUR"
    settings = make_settings(SALESFORCE_LEAD_EXTERNAL_ID_FIELD="Order_Number__c")
    record = lead_record(load_order(seed_order), settings)
    assert (record.sobject, record.external_id_field, record.external_id) == (
        "Lead",
        "Order_Number__c",
        "000000123",
    )
    assert record.fields == {
        "FirstName": "Jane",
        "LastName": "Doe",
        "Company": "[not provided]",
        "Email": "jane.doe@example.com",
        "LeadSource": "Magento E-commerce",
        "Description": "Order 000000123 total: 99.99 EUR\nProduct X (SKU: PROD-XYZ, Qty: 1)",
        "Street": "123 Main St",
        "City": "Anytown",
        "State": "State",
        "PostalCode": "12345",
        "Country": "US",
        "Phone": "555-1234",
        "Order_Number__c": "000000123",
    }


def test_lead_company_and_last_name_rules(seed_order, make_settings):
    seed_order.update(customer_firstname=None, customer_lastname=None, customer_is_guest=1)
    seed_order["billing_address"].update(firstname="Ana", lastname=None, company="Ana's Café")
    fields = lead_record(load_order(seed_order), make_settings()).fields
    assert (fields["FirstName"], fields["LastName"], fields["Company"]) == (
        None,
        "Ana",
        "Ana's Café",
    )
    seed_order["billing_address"].update(company=None)
    settings = make_settings(SALESFORCE_LEAD_COMPANY="Web")
    assert lead_record(load_order(seed_order), settings).fields["Company"] == "Web"


def test_currency_is_written_only_for_multi_currency_orgs(seed_order, make_settings):
    seed_order["order_currency_code"] = "gbp"
    order = load_order(seed_order)
    assert "CurrencyIsoCode" not in opportunity_record(order, make_settings()).fields
    fields = opportunity_record(order, make_settings(SALESFORCE_MULTI_CURRENCY="true")).fields
    assert fields["CurrencyIsoCode"] == "GBP"


def test_an_edited_order_names_the_order_it_replaces(seed_order, make_settings):
    seed_order.update(
        increment_id="000000123-2",
        relation_parent_id="215",
        relation_parent_real_id="000000123-1",
        original_increment_id="000000123",
        edit_increment=2,
    )
    fields = opportunity_record(load_order(seed_order), make_settings()).fields
    assert fields["Magento_Parent_Order_ID__c"] == "000000123-1"
    assert fields["Magento_Order_ID__c"] == "000000123-2"
    del seed_order["relation_parent_real_id"]
    assert load_order(seed_order).parent_increment_id == "000000123-1"
    seed_order.update(edit_increment=1, increment_id="000000123-1")
    assert load_order(seed_order).parent_increment_id == "000000123"
    settings = make_settings(SALESFORCE_PARENT_ORDER_FIELD="Replaces__c")
    assert opportunity_record(load_order(seed_order), settings).fields["Replaces__c"] == (
        "000000123"
    )


def test_a_replaced_order_is_lost_with_a_note(seed_order, make_settings):
    seed_order["state"] = "processing"
    order = load_order(seed_order)
    fields = opportunity_record(order, make_settings(), replaced_by="000000123-1").fields
    assert fields["StageName"] == "Closed Lost"
    assert fields["NextStep"] == "Replaced by edited order 000000123-1"
    settings = make_settings(
        SALESFORCE_STAGE_MAP="new=Prospecting;canceled=Cancelled",
        SALESFORCE_REPLACED_NOTE_FIELD="Replacement_Note__c",
    )
    fields = opportunity_record(order, settings, replaced_by="000000123-1").fields
    assert (fields["StageName"], fields["Replacement_Note__c"]) == (
        "Cancelled",
        "Replaced by edited order 000000123-1",
    )
    assert "NextStep" not in opportunity_record(order, make_settings()).fields


@pytest.mark.parametrize(
    ("email", "storable"),
    [
        ("jane.doe@example.com", True),
        ("o'brien+shop@mail.example.co.uk", True),
        ("{weird}|~`!#$%&*=?^@example.org", True),
        ('"Jane Doe"@example.com', False),
        ('"o\\\'brien"@example.com', False),
        ("zoë@example.com", False),
        ("jane@localhost", False),
        (f"{'x' * 70}@example.com", False),
    ],
)
def test_emails_salesforce_cannot_hold_are_kept_out_of_email_fields(
    seed_order, make_settings, email, storable
):
    seed_order["customer_email"] = email
    order = load_order(seed_order)
    opportunity = opportunity_record(order, make_settings()).fields
    contact = contact_fields(order, make_settings())
    guest = lead_record(order, make_settings()).fields
    if storable:
        assert opportunity["Magento_Customer_Email__c"] == contact["Email"] == email
        assert guest["Email"] == email and "Description" not in contact
    else:
        assert opportunity["Magento_Customer_Email__c"] is None and guest["Email"] is None
        assert "Email" not in contact
        assert contact["Description"] == f"Magento customer email: {email}"
        assert guest["Description"].splitlines()[1] == f"Magento customer email: {email}"


def test_billing_address_parts_are_cut_to_salesforce_address_lengths(seed_order, make_settings):
    seed_order["billing_address"].update(
        city="Llanfairpwllgwyngyllgogerychwyrndrobwllllantysiliogogogoch",
        postcode="12345-6789-ABCDE-FGHIJ-KLMNO",
        street=["Unit 1", "x" * 300],
    )
    fields = opportunity_record(load_order(seed_order), make_settings()).fields
    assert fields["Billing_City__c"] == "Llanfairpwllgwyngyllgogerychwyrndrobwll…"
    assert len(fields["Billing_City__c"]) == 40
    assert len(fields["Billing_PostalCode__c"]) == 20
    assert len(fields["Billing_Street__c"]) == 255
    assert fields["Billing_Street__c"].startswith("Unit 1\nxxx")


def test_a_schema_built_once_per_thread_keeps_nothing_of_the_record_before(
    seed_order, make_settings
):
    """Outbound schemas are built once per thread and settings (``OutboundSchema.of``): what one
    record was given (a previous stage, a replacement, links) is not in the next one's fields."""
    settings = make_settings()
    seed_order["state"] = "holded"
    order = load_order(seed_order)
    kept = opportunity_record(order, settings, "Qualification")
    replaced = opportunity_record(order, settings, "Qualification", replaced_by="000000999-1")
    second = opportunity_record(order, settings)
    assert (kept.fields["StageName"], replaced.fields["StageName"]) == (
        "Qualification",
        "Closed Lost",
    )
    assert second.fields["StageName"] == "Prospecting"
    assert second.fields == opportunity_record(order, make_settings()).fields
    assert contact_fields(order, settings, account="001000000000001AAA")["AccountId"]
    assert "AccountId" not in contact_fields(order, settings)

    stages = {}

    def build(stage):
        for _ in range(200):
            record = opportunity_record(order, settings, stage)
            stages.setdefault(stage, set()).add(record.fields["StageName"])

    threads = [threading.Thread(target=build, args=(s,)) for s in ("Qualification", "Closed Won")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert stages == {"Qualification": {"Qualification"}, "Closed Won": {"Closed Won"}}
