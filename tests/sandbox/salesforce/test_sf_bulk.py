"""Bulk API 2.0 ingest: jobs, CSV data as Salesforce's guide shows it, the state machine,
per-record validation shared with the REST API, results, allocations, and simple-salesforce's
``bulk2`` client against the org."""

import csv
import io
import re
import subprocess
import sys

import pytest
from simple_salesforce.exceptions import SalesforceOperationError

from magsync.sandbox.salesforce import ControlClient, bulk
from magsync.sandbox.salesforce.schema import packaged_schema
from tests.helpers import wait_for
from tests.sandbox.salesforce.helpers import https_session
from tests.sandbox.salesforce.test_sf_process import Running
from tests.sandbox.salesforce.test_sf_robustness import read_all, tls_socket

# The CSV files of Salesforce's "Sample CSV Files" and "Bulk Upsert" pages.
SIMPLE_ACCOUNTS = (
    "Name,Description,NumberOfEmployees\n"
    "TestAccount1,Description of TestAccount1,30\n"
    "TestAccount2,Another description,40\n"
    "TestAccount3,Yet another description,50\n"
)
CRLF_CONTACTS = (
    "FirstName,LastName,Description\r\nTom,Jones,Branding guru\r\nIan,Dury,Fuzzy logic expert\r\n"
)
SEMICOLON_CONTACTS = (
    "FirstName;LastName;Title;Birthdate;Description\n"
    'Tom;Jones;Senior Director;1940-06-07Z;"Self-described as ""the top"" branding guru"\n'
    'Ian;Dury;Chief Imagineer;1965-12-11Z;"Expert in fuzzy logic design; Knowledgeable in AI\n'
    'Influential in technology purchases."\n'
)
UPSERT_ACCOUNTS = (
    "customExtIdField__c,name,NumberOfEmployees\n"
    "123,GenePoint,800\n"
    '234,"United Oil & Gas, UK",1467\n'
    '345,"United Oil & Gas, Singapore",348\n'
    "456,Edge Communications,10045\n"
)
FINISHED = ("JobComplete", "Failed", "Aborted")


class Bulk:
    """Raw Bulk API 2.0 requests through the ``data`` fixture."""

    def __init__(self, data):
        self.data = data

    def create(self, **spec):
        response = self.data("POST", "jobs/ingest", json=spec)
        assert response.status_code == 200, response.text
        return response.json()

    def upload(self, job_id, text, content_type="text/csv"):
        body = text.encode() if isinstance(text, str) else text
        return self.data(
            "PUT",
            f"jobs/ingest/{job_id}/batches",
            data=body,
            headers={"Content-Type": content_type},
        )

    def state(self, job_id, state):
        return self.data("PATCH", f"jobs/ingest/{job_id}", json={"state": state})

    def info(self, job_id):
        return self.data("GET", f"jobs/ingest/{job_id}").json()

    def wait(self, job_id, states=FINISHED):
        return wait_for(
            lambda: (info := self.info(job_id))["state"] in states and info,
            what=f"job {job_id} in {states}",
            interval=0.02,
        )

    def run(self, text, **spec):
        """Create, upload, close and wait; the finished job's info."""
        job = self.create(**spec)
        assert self.upload(job["id"], text).status_code == 201
        assert self.state(job["id"], "UploadComplete").status_code == 200
        return self.wait(job["id"])

    def results(self, job_id, kind):
        """``(header, rows)`` of a job's results, read back as CSV."""
        response = self.data("GET", f"jobs/ingest/{job_id}/{kind}/")
        assert response.status_code == 200, response.text
        assert response.headers["Content-Type"].startswith("text/csv")
        return parse_csv(response.text)


def parse_csv(text, delimiter=","):
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=delimiter))
    return rows[0], rows[1:]


@pytest.fixture
def jobs(data):
    return Bulk(data)


def variant_org(org_factory, **options):
    """An org whose Account has the guide's external id and whose Contact has a Birthdate."""
    schema = packaged_schema()
    schema["sobjects"]["Account"]["fields"]["customExtIdField__c"] = {
        "type": "string",
        "length": 40,
        "label": "customExtIdField",
        "externalId": True,
    }
    schema["sobjects"]["Contact"]["fields"]["Birthdate"] = {"type": "date", "label": "Birthdate"}
    return org_factory(schema=schema, **options)


# -- the guide's samples ---------------------------------------------------------------------


def test_simple_csv_insert(org, jobs):
    job = jobs.create(object="Account", contentType="CSV", operation="insert")
    assert job["state"] == "Open"
    assert re.fullmatch(r"750[0-9A-Za-z]{15}", job["id"])
    assert job["contentUrl"] == f"services/data/v58.0/jobs/ingest/{job['id']}/batches"
    assert (job["apiVersion"], job["lineEnding"], job["columnDelimiter"]) == (58.0, "LF", "COMMA")
    assert (job["concurrencyMode"], job["contentType"]) == ("Parallel", "CSV")
    uploaded = jobs.upload(job["id"], SIMPLE_ACCOUNTS)
    assert (uploaded.status_code, uploaded.content) == (201, b"")
    closed = jobs.state(job["id"], "UploadComplete").json()
    assert closed["state"] == "UploadComplete"
    info = jobs.wait(job["id"])
    assert info["state"] == "JobComplete"
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (3, 0)
    assert info["jobType"] == "V2Ingest"
    stored = {r["Name"]: r for r in org.records("Account")}
    assert stored["TestAccount2"]["Description"] == "Another description"
    assert stored["TestAccount3"]["NumberOfEmployees"] == 50
    header, rows = jobs.results(job["id"], "successfulResults")
    assert header == ["sf__Id", "sf__Created", "Name", "Description", "NumberOfEmployees"]
    assert [row[1:] for row in rows] == [
        ["true", "TestAccount1", "Description of TestAccount1", "30"],
        ["true", "TestAccount2", "Another description", "40"],
        ["true", "TestAccount3", "Yet another description", "50"],
    ]
    assert [row[0] for row in rows] == [stored[row[2]]["Id"] for row in rows]
    assert jobs.results(job["id"], "failedResults") == (
        ["sf__Id", "sf__Error", "Name", "Description", "NumberOfEmployees"],
        [],
    )
    assert jobs.results(job["id"], "unprocessedrecords") == (
        ["Name", "Description", "NumberOfEmployees"],
        [],
    )


def test_crlf_line_ending(org, jobs):
    info = jobs.run(CRLF_CONTACTS, object="Contact", operation="insert", lineEnding="CRLF")
    assert (info["state"], info["numberRecordsProcessed"]) == ("JobComplete", 2)
    contacts = {r["LastName"]: r for r in org.records("Contact")}
    assert contacts["Dury"]["Description"] == "Fuzzy logic expert"
    assert contacts["Jones"]["Name"] == "Tom Jones"
    response = jobs.data("GET", f"jobs/ingest/{info['id']}/successfulResults/")
    assert response.text.endswith('"Fuzzy logic expert"\r\n')
    assert response.text.count("\r\n") == 3


@pytest.mark.parametrize(
    ("text", "line_ending"),
    [(CRLF_CONTACTS, "LF"), (CRLF_CONTACTS.replace("\r\n", "\n"), "CRLF")],
    ids=["crlf data, LF job", "lf data, CRLF job"],
)
def test_a_line_ending_other_than_the_jobs_fails_the_job(org, jobs, text, line_ending):
    info = jobs.run(text, object="Contact", operation="insert", lineEnding=line_ending)
    assert info["state"] == "Failed"
    assert info["errorMessage"] == (
        "ClientInputError : LineEnding is invalid on user data. "
        f"Current LineEnding setting is {line_ending}"
    )
    assert info["numberRecordsProcessed"] == 0
    assert org.records("Contact") == []
    unprocessed = jobs.data("GET", f"jobs/ingest/{info['id']}/unprocessedrecords/")
    assert unprocessed.text == text


def test_semicolon_delimiter_and_escaped_fields(org_factory):
    org = variant_org(org_factory)
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        info = jobs.run(
            SEMICOLON_CONTACTS, object="Contact", operation="insert", columnDelimiter="SEMICOLON"
        )
        assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0)
        text = jobs.data("GET", f"jobs/ingest/{info['id']}/successfulResults/").text
    contacts = {r["LastName"]: r for r in org.records("Contact")}
    assert contacts["Jones"]["Description"] == 'Self-described as "the top" branding guru'
    assert contacts["Jones"]["Birthdate"] == "1940-06-07"
    assert contacts["Dury"]["Description"] == (
        "Expert in fuzzy logic design; Knowledgeable in AI\nInfluential in technology purchases."
    )
    header, rows = parse_csv(text, delimiter=";")
    assert header[:2] == ["sf__Id", "sf__Created"]
    assert rows[0][2:] == [
        "Tom",
        "Jones",
        "Senior Director",
        "1940-06-07Z",
        'Self-described as "the top" branding guru',
    ]


def data_caller(org, session):
    token = org.issue_access_token()

    def call(method, path, **kwargs):
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        url = f"{org.url}/services/data/v58.0/{path}"
        return session.request(method, url, headers=headers, timeout=10, **kwargs)

    return call


def test_quoted_commas_quotes_and_newlines_round_trip(org, jobs):
    text = (
        "Name,Description,Phone\n"
        '"Acme, Inc.","Says ""hello""\nand goodbye",555-0100\n'
        'Plain,"",""\n'
        '"Smith", "Jones",555-0101\n'
        "Last,trailing space ,\n"
        "Café Zoë,Ünïcode,\n"
    )
    info = jobs.run(text, object="Account", operation="insert")
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (5, 1)
    stored = {r["Name"]: r for r in org.records("Account")}
    assert stored["Café Zoë"]["Description"] == "Ünïcode"
    assert stored["Acme, Inc."]["Description"] == 'Says "hello"\nand goodbye'
    assert stored["Plain"].get("Description") is None
    # Values are not trimmed.
    assert stored["Last"]["Description"] == "trailing space "
    _, rows = jobs.results(info["id"], "successfulResults")
    assert rows[0][2:] == ["Acme, Inc.", 'Says "hello"\nand goodbye', "555-0100"]
    assert rows[-1][2:] == ["Café Zoë", "Ünïcode", ""]
    # A space before an opening quote: that record alone fails.
    _, failed = jobs.results(info["id"], "failedResults")
    assert [row[1] for row in failed] == [
        "ClientInputError:Failed to parse CSV. Found unescaped quote. A value with quote should "
        "be within a quote:--"
    ]
    assert "Smith" not in stored


def test_na_nulls_a_field_and_an_empty_value_leaves_it(org, jobs):
    [account_id] = org.insert(
        "Account", [{"Name": "Acme", "Description": "Old", "Phone": "555-0100"}]
    )
    text = f"Id,Description,Phone,Website\n{account_id},#N/A,,example.com\n"
    info = jobs.run(text, object="Account", operation="update")
    assert (info["state"], info["numberRecordsFailed"]) == ("JobComplete", 0)
    [stored] = org.records("Account")
    assert (stored["Description"], stored["Phone"], stored["Website"]) == (
        None,
        "555-0100",
        "example.com",
    )
    _, rows = jobs.results(info["id"], "successfulResults")
    assert rows == [[account_id, "false", account_id, "#N/A", "", "example.com"]]


# -- validation, the same as the REST API's -----------------------------------------------------

LARGE_ORDERS_RULE = {
    "name": "Large_orders_need_approval",
    "field": "Amount",
    "operator": "gt",
    "value": 250000,
    "message": "Orders over 250,000 need a manual approval.",
    "errorDisplayField": "Amount",
}
# (a record as CSV values, the error its REST upsert answers)
INVALID_OPPORTUNITIES = [
    ({"Name": ""}, "REQUIRED_FIELD_MISSING"),
    ({"Name": "x" * 121}, "STRING_TOO_LONG"),
    ({"StageName": "Dreaming"}, "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"),
    ({"Amount": "300000"}, "FIELD_CUSTOM_VALIDATION_EXCEPTION"),
    ({"Magento_Customer_Email__c": "not an address"}, "INVALID_EMAIL_ADDRESS"),
    ({"AccountId": "001000000000000AAA"}, "INVALID_CROSS_REFERENCE_KEY"),
]


def test_a_record_fails_with_the_rest_apis_error(org_factory):
    schema = packaged_schema()
    schema["sobjects"]["Opportunity"]["validationRules"] = [LARGE_ORDERS_RULE]
    org = org_factory(schema=schema)
    columns = ["Magento_Order_ID__c", "Name", "StageName", "CloseDate", "Amount"]
    columns += ["Magento_Customer_Email__c", "AccountId"]
    base = {"Name": "Order", "StageName": "Prospecting", "CloseDate": "2024-01-31"}
    base.update({"Amount": "10", "Magento_Customer_Email__c": "", "AccountId": ""})
    lines = [",".join(columns), ",".join(["OK-1", *[base[c] for c in columns[1:]]])]
    for number, (change, _) in enumerate(INVALID_OPPORTUNITIES):
        values = {**base, **change}
        lines.append(",".join([f"BAD-{number}", *[values[c] for c in columns[1:]]]))
    with https_session(org) as session:
        call = data_caller(org, session)
        jobs = Bulk(call)
        info = jobs.run(
            "\n".join(lines) + "\n",
            object="Opportunity",
            operation="upsert",
            externalIdFieldName="Magento_Order_ID__c",
        )
        assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (7, 6)
        _, failed = jobs.results(info["id"], "failedResults")
        errors = {row[2]: row[1] for row in failed}
        for number, (change, code) in enumerate(INVALID_OPPORTUNITIES):
            body = {k: v for k, v in {**base, **change}.items() if v != ""}
            rest = call("PATCH", f"sobjects/Opportunity/Magento_Order_ID__c/R-{number}", json=body)
            [error] = rest.json()
            assert error["errorCode"] == code
            fields = " ".join(error["fields"])
            expected = f"{code}:{error['message']}:{fields} --" if fields else None
            assert errors[f"BAD-{number}"] == (expected or f"{code}:{error['message']}:--")
    assert [r["Magento_Order_ID__c"] for r in org.records("Opportunity")] == ["OK-1"]
    assert errors["BAD-0"] == ("REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --")


def test_a_value_that_is_not_of_the_fields_type(org, jobs):
    text = "Name,NumberOfEmployees,AnnualRevenue\nAcme,many,1\nGlobex,12,lots\n"
    info = jobs.run(text, object="Account", operation="insert")
    assert info["numberRecordsFailed"] == 2
    _, failed = jobs.results(info["id"], "failedResults")
    assert [row[1] for row in failed] == [
        "INVALID_FIELD:Failed to deserialize field at col 2. Due to, 'many' is not a valid "
        "value for the type xsd:int:NumberOfEmployees --",
        "INVALID_FIELD:Failed to deserialize field at col 3. Due to, 'lots' is not a valid "
        "value for the type xsd:double:AnnualRevenue --",
    ]
    assert org.records("Account") == []


def test_a_header_field_the_object_lacks_fails_the_job(org, jobs):
    info = jobs.run("Name,Colour__c\nAcme,red\n", object="Account", operation="insert")
    assert info["state"] == "Failed"
    assert info["errorMessage"] == "InvalidBatch : Field name not found : Colour__c"
    assert org.records("Account") == []


# -- operations --------------------------------------------------------------------------------


def test_upsert_creates_then_updates_by_external_id(org_factory):
    org = variant_org(org_factory)
    [existing] = org.insert("Account", [{"Name": "Old name", "customExtIdField__c": "456"}])
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        spec = {"object": "Account", "operation": "upsert"}
        spec["externalIdFieldName"] = "customExtIdField__c"
        first = jobs.run(UPSERT_ACCOUNTS, **spec)
        assert first["externalIdFieldName"] == "customExtIdField__c"
        _, created = jobs.results(first["id"], "successfulResults")
        assert [(row[2], row[1]) for row in created] == [
            ("123", "true"),
            ("234", "true"),
            ("345", "true"),
            ("456", "false"),
        ]
        assert created[3][0] == existing
        again = jobs.run(UPSERT_ACCOUNTS.replace("800", "900"), **spec)
        _, updated = jobs.results(again["id"], "successfulResults")
    assert [row[1] for row in updated] == ["false"] * 4
    assert [row[0] for row in updated] == [row[0] for row in created]
    accounts = {r["customExtIdField__c"]: r for r in org.records("Account")}
    assert len(accounts) == 4
    assert accounts["123"]["NumberOfEmployees"] == 900
    assert accounts["234"]["Name"] == "United Oil & Gas, UK"
    assert accounts["456"]["Name"] == "Edge Communications"


def test_upsert_refuses_duplicate_and_missing_external_ids(org, jobs):
    text = (
        "Magento_Order_ID__c,Name,StageName,CloseDate\n"
        "A-1,First,Prospecting,2024-01-31\n"
        "a-1,Second,Prospecting,2024-01-31\n"
        ",Third,Prospecting,2024-01-31\n"
        "B-1,Fourth,Prospecting,2024-01-31\n"
    )
    spec = {"object": "Opportunity", "operation": "upsert"}
    info = jobs.run(text, externalIdFieldName="Magento_Order_ID__c", **spec)
    assert (info["numberRecordsProcessed"], info["numberRecordsFailed"]) == (4, 3)
    _, failed = jobs.results(info["id"], "failedResults")
    assert [row[1] for row in failed] == [
        "DUPLICATE_EXTERNAL_ID:Duplicate external id specified: A-1:Magento_Order_ID__c --",
        "DUPLICATE_EXTERNAL_ID:Duplicate external id specified: a-1:Magento_Order_ID__c --",
        "MISSING_ARGUMENT:Magento_Order_ID__c not specified:Magento_Order_ID__c --",
    ]
    assert [r["Name"] for r in org.records("Opportunity")] == ["Fourth"]


def test_update_and_delete_by_id(org, jobs):
    ids = org.insert("Account", [{"Name": "One"}, {"Name": "Two"}])
    text = f"Id,Name\n{ids[0]},Uno\nnot-an-id,X\n001000000000000AAA,Y\n,Z\n"
    info = jobs.run(text, object="Account", operation="update")
    _, failed = jobs.results(info["id"], "failedResults")
    assert [row[1] for row in failed] == [
        "MALFORMED_ID:malformed id not-an-id:--",
        "INVALID_CROSS_REFERENCE_KEY:invalid cross reference id:--",
        "MISSING_ARGUMENT:Id not specified in an update call:--",
    ]
    removed = jobs.run(f"Id\n{ids[1]}\n{ids[1]}\n", object="Account", operation="delete")
    _, deleted = jobs.results(removed["id"], "successfulResults")
    assert deleted == [[ids[1], "false", ids[1]]]
    _, failed = jobs.results(removed["id"], "failedResults")
    assert failed == [["", "ENTITY_IS_DELETED:entity is deleted:--", ids[1]]]
    assert [r["Name"] for r in org.records("Account")] == ["Uno"]
    wrong = jobs.run(f"Id,Name\n{ids[0]},x\n", object="Account", operation="delete")
    assert wrong["errorMessage"] == "InvalidBatch : The 'delete' batch must contain only ids"


@pytest.mark.parametrize(
    ("spec", "code", "message"),
    [
        (
            {"object": "Starship", "operation": "insert"},
            "INVALIDENTITY",
            "Entity 'Starship' is not supported by the Bulk API.",
        ),
        (
            {"object": "Opportunity", "operation": "upsert"},
            "INVALIDJOB",
            "External ID was blank for Opportunity. An External ID must be specified for upsert.",
        ),
        (
            {"object": "Opportunity", "operation": "upsert", "externalIdFieldName": "Name"},
            "INVALIDJOB",
            "Field name provided, Name does not match an External ID, Salesforce Id, or indexed "
            "field for Opportunity",
        ),
        ({"object": "Account", "operation": "merge"}, "INVALIDJOB", "Invalid operation: merge"),
        (
            {"object": "Account", "operation": "insert", "lineEnding": "CR"},
            "INVALIDJOB",
            "Invalid lineEnding: CR",
        ),
        (
            {"object": "Account", "operation": "insert", "contentType": "JSON"},
            "INVALIDJOB",
            "Invalid contentType: JSON",
        ),
    ],
)
def test_a_job_that_cannot_be_created(org, data, spec, code, message):
    response = data("POST", "jobs/ingest", json=spec)
    assert response.status_code == 400
    assert response.json() == [{"message": message, "errorCode": code}]
    assert org.bulk_jobs() == []


# -- the state machine -------------------------------------------------------------------------


def test_wrong_state_changes_are_refused(org_factory):
    # A long queue keeps the closed job in UploadComplete for the whole test.
    org = org_factory(bulk_latency=60)
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        job_id = jobs.create(object="Account", operation="insert")["id"]
        refused = jobs.data("DELETE", f"jobs/ingest/{job_id}")
        assert refused.status_code == 400
        assert refused.json()[0]["errorCode"] == "INVALIDJOBSTATE"
        assert jobs.state(job_id, "JobComplete").status_code == 400
        jobs.upload(job_id, SIMPLE_ACCOUNTS)
        assert jobs.state(job_id, "UploadComplete").json()["state"] == "UploadComplete"
        late = jobs.upload(job_id, SIMPLE_ACCOUNTS)
        assert late.status_code == 409
        assert late.json() == [
            {
                "message": f"Job {job_id} is in state UploadComplete: data can only be uploaded "
                "to an Open job",
                "errorCode": "INVALIDJOBSTATE",
            }
        ]
        again = jobs.state(job_id, "UploadComplete")
        assert (again.status_code, again.json()[0]["message"]) == (
            400,
            "Closing already UploadComplete Job not allowed",
        )
        assert jobs.state(job_id, "Aborted").json()["state"] == "Aborted"
        assert jobs.state(job_id, "Aborted").json() == [
            {"message": "Aborting already Aborted Job not allowed", "errorCode": "INVALIDJOBSTATE"}
        ]
    assert org.records("Account") == []


def test_a_complete_job_can_be_neither_closed_nor_aborted(org, jobs):
    job_id = jobs.run(SIMPLE_ACCOUNTS, object="Account", operation="insert")["id"]
    again = jobs.state(job_id, "UploadComplete")
    assert (again.status_code, again.json()) == (
        400,
        [{"message": "Closing already Completed Job not allowed", "errorCode": "INVALIDJOBSTATE"}],
    )
    abort = jobs.state(job_id, "Aborted")
    assert (abort.status_code, abort.json()) == (
        400,
        [{"message": "Aborting already Completed Job not allowed", "errorCode": "INVALIDJOBSTATE"}],
    )
    assert len(org.records("Account")) == 3


def test_data_must_be_uploaded_once(org, jobs):
    job_id = jobs.create(object="Account", operation="insert")["id"]
    jobs.upload(job_id, SIMPLE_ACCOUNTS)
    jobs.upload(job_id, SIMPLE_ACCOUNTS)
    refused = jobs.state(job_id, "UploadComplete")
    assert refused.status_code == 400
    assert refused.json() == [
        {
            "message": f"Found multipe contents for job: <{job_id[:15]}>, please 'Close' / "
            "'Abort' / 'Delete' the current Job then create a new Job and make sure you only do "
            "'PUT' once on a given Job.",
            "errorCode": "INVALIDJOB",
        }
    ]
    assert jobs.info(job_id)["state"] == "Open"
    assert jobs.upload(job_id, SIMPLE_ACCOUNTS, "application/json").status_code == 415


def test_an_unknown_job_is_not_found(jobs):
    known = jobs.create(object="Account", operation="insert")["id"]
    assert jobs.info(known)["id"] == known
    # A job is found by its 15-character id too.
    assert jobs.info(known[:15])["id"] == known
    for method, path in [
        ("GET", "jobs/ingest/7505g000001AbCdAAK"),
        ("GET", "jobs/ingest/7505g000001AbCdAAK/failedResults/"),
        ("PUT", "jobs/ingest/7505g000001AbCdAAK/batches"),
    ]:
        response = jobs.data(method, path)
        assert response.status_code == 404
        assert response.json()[0]["errorCode"] == "NOT_FOUND"


def test_abort_while_in_progress_leaves_the_records_unprocessed(org_factory):
    # Two seconds queued and two in progress: time enough to see InProgress and abort it.
    org = org_factory(bulk_latency=2)
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        job_id = jobs.create(object="Account", operation="insert")["id"]
        jobs.upload(job_id, SIMPLE_ACCOUNTS)
        jobs.state(job_id, "UploadComplete")
        jobs.wait(job_id, ("InProgress",))
        aborted = jobs.state(job_id, "Aborted").json()
        assert aborted["state"] == "Aborted"
        wait_for(lambda: org.stats()["bulk"]["jobs_running"] == 0, what="processing to end")
        info = jobs.info(job_id)
        assert (info["state"], info["numberRecordsProcessed"]) == ("Aborted", 0)
        header, rows = jobs.results(job_id, "unprocessedRecords")
        assert header == ["Name", "Description", "NumberOfEmployees"]
        assert [row[0] for row in rows] == ["TestAccount1", "TestAccount2", "TestAccount3"]
        assert org.records("Account") == []
        assert jobs.data("DELETE", f"jobs/ingest/{job_id}").status_code == 204
        assert jobs.data("GET", f"jobs/ingest/{job_id}").status_code == 404


def test_an_open_job_can_be_aborted_and_deleted(org, jobs):
    job_id = jobs.create(object="Account", operation="insert")["id"]
    jobs.upload(job_id, SIMPLE_ACCOUNTS)
    assert jobs.state(job_id, "Aborted").json()["state"] == "Aborted"
    assert jobs.data("GET", f"jobs/ingest/{job_id}/unprocessedrecords/").text == SIMPLE_ACCOUNTS
    assert jobs.results(job_id, "failedResults") == (
        ["sf__Id", "sf__Error", "Name", "Description", "NumberOfEmployees"],
        [],
    )
    assert jobs.data("DELETE", f"jobs/ingest/{job_id}").status_code == 204
    assert org.bulk_jobs() == []


def test_the_job_list_pages_by_a_thousand(org, jobs):
    created = [jobs.create(object="Account", operation="insert")["id"] for _ in range(1001)]
    first = jobs.data("GET", "jobs/ingest").json()
    assert first["done"] is False
    assert len(first["records"]) == 1000
    assert first["records"][0]["id"] == created[0]
    assert first["nextRecordsUrl"].startswith("/services/data/v58.0/jobs/ingest?queryLocator=")
    second = jobs.data("GET", org.url + first["nextRecordsUrl"]).json()
    assert second["done"] is True
    assert second["nextRecordsUrl"] is None
    assert [job["id"] for job in second["records"]] == created[1000:]
    assert jobs.data("GET", "jobs/ingest?jobType=Classic").json()["records"] == []


# -- limits and API calls ----------------------------------------------------------------------


def test_every_request_is_an_api_call(org, jobs):
    info = jobs.run(SIMPLE_ACCOUNTS, object="Account", operation="insert")
    polls = org.stats()["calls_by_kind"]["ingestInfo"]
    for kind in ("successfulResults", "failedResults", "unprocessedrecords"):
        jobs.results(info["id"], kind)
    response = jobs.data("GET", "jobs/ingest")
    calls = 1 + 1 + 1 + polls + 3 + 1
    assert response.headers["Sforce-Limit-Info"] == f"api-usage={calls}/5000000"
    assert org.stats()["calls_by_kind"] == {
        "ingestCreate": 1,
        "ingestUpload": 1,
        "ingestState": 1,
        "ingestInfo": polls,
        "ingestResults": 3,
        "ingestList": 1,
    }


def test_the_daily_allowance_covers_bulk_requests(org_factory):
    org = org_factory(daily_limit=2)
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        job_id = jobs.create(object="Account", operation="insert")["id"]
        jobs.upload(job_id, SIMPLE_ACCOUNTS)
        refused = jobs.state(job_id, "UploadComplete")
    assert refused.status_code == 403
    assert refused.json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert org.bulk_jobs()[0]["state"] == "Open"


def test_one_batch_per_ten_thousand_records_against_the_daily_allocation(org_factory):
    org = org_factory(bulk_daily_batches=2)
    names = "".join(f"Account {n}\n" for n in range(bulk.BATCH_RECORDS + 1))
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        big = jobs.run("Name\n" + names, object="Account", operation="insert")
        assert (big["state"], big["numberRecordsProcessed"]) == ("JobComplete", 10001)
        assert org.stats()["bulk"]["batches_used"] == 2
        limits = jobs.data("GET", "limits").json()["DailyBulkApiBatches"]
        assert limits == {"Max": 2, "Remaining": 0}
        over = jobs.run(SIMPLE_ACCOUNTS, object="Account", operation="insert")
        assert over["state"] == "Failed"
        assert over["errorMessage"] == (
            "ExceededQuota : The org has used its allocation of 2 batches in the last 24 hours"
        )
        _, unprocessed = jobs.results(over["id"], "unprocessedrecords")
        assert len(unprocessed) == 3
    assert len(org.records("Account")) == 10001


def test_records_past_the_daily_allocation_stay_unprocessed(org_factory):
    org = org_factory(bulk_daily_records=10_005)
    names = "".join(f"Account {n}\n" for n in range(bulk.BATCH_RECORDS + 10))
    with https_session(org) as session:
        jobs = Bulk(data_caller(org, session))
        info = jobs.run("Name\n" + names, object="Account", operation="insert")
        assert info["state"] == "Failed"
        assert info["errorMessage"].startswith("ExceededQuota : ")
        assert info["numberRecordsProcessed"] == bulk.BATCH_RECORDS
        _, unprocessed = jobs.results(info["id"], "unprocessedrecords")
    assert [row[0] for row in unprocessed] == [f"Account {n}" for n in range(10000, 10010)]
    assert len(org.records("Account")) == bulk.BATCH_RECORDS


def test_an_upload_may_be_larger_than_a_rest_body_but_not_past_100_mb(org, jobs):
    job_id = jobs.create(object="Account", operation="insert")["id"]
    nine_mb = "Name\n" + ("y" * 99 + "\n") * (9 * 1024 * 1024 // 100)
    assert jobs.upload(job_id, nine_mb).status_code == 201
    job_id = jobs.create(object="Account", operation="insert")["id"]
    request = (
        f"PUT /services/data/v58.0/jobs/ingest/{job_id}/batches HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\nAuthorization: Bearer {org.issue_access_token()}\r\n"
        f"Content-Type: text/csv\r\nContent-Length: {bulk.MAX_UPLOAD + 1}\r\n\r\n"
    )
    with tls_socket(org) as sock:
        sock.sendall(request.encode())
        answer = read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413 ")
    assert f"maximum size of {bulk.MAX_UPLOAD} bytes".encode() in body


# -- simple-salesforce's bulk2 client, unchanged -----------------------------------------------


def test_simple_salesforce_bulk2_upsert_end_to_end(org, sf, tmp_path):
    path = tmp_path / "orders.csv"
    columns = ["Magento_Order_ID__c", "Name", "StageName", "CloseDate", "Amount", "Description"]
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(columns)
        for n in range(5000):
            name = "" if n % 1000 == 999 else f"Order {n:09d} - Doe, Jane"
            detail = f'Item "{n}", qty 1\nshipped'
            writer.writerow([f"{n:09d}", name, "Prospecting", "2024-01-31", "99.99", detail])
    [result] = sf.bulk2.Opportunity.upsert(
        csv_file=str(path), external_id_field="Magento_Order_ID__c", wait=0.1
    )
    assert result["numberRecordsProcessed"] == 5000
    assert (result["numberRecordsFailed"], result["numberRecordsTotal"]) == (5, 5000)
    failed = list(
        csv.DictReader(
            io.StringIO(sf.bulk2.Opportunity.get_failed_records(result["job_id"]), newline="")
        )
    )
    assert [row["Magento_Order_ID__c"] for row in failed] == [
        f"{n:09d}" for n in (999, 1999, 2999, 3999, 4999)
    ]
    assert {row["sf__Error"] for row in failed} == {
        "REQUIRED_FIELD_MISSING:Required fields are missing: [Name]:Name --"
    }
    successful = list(
        csv.DictReader(
            io.StringIO(sf.bulk2.Opportunity.get_successful_records(result["job_id"]), newline="")
        )
    )
    assert len(successful) == 4995
    assert {row["sf__Created"] for row in successful} == {"true"}
    assert successful[0]["Description"] == 'Item "0", qty 1\nshipped'
    stored = {r["Magento_Order_ID__c"]: r for r in org.records("Opportunity")}
    assert len(stored) == 4995
    assert stored["000000000"]["Id"] == successful[0]["sf__Id"]
    assert stored["000000000"]["Name"] == "Order 000000000 - Doe, Jane"
    unprocessed = sf.bulk2.Opportunity.get_unprocessed_records(result["job_id"])
    assert unprocessed == ",".join(columns) + "\n"
    # The same file again updates every record it created.
    [again] = sf.bulk2.Opportunity.upsert(
        csv_file=str(path), external_id_field="Magento_Order_ID__c", wait=0.1
    )
    updated = csv.DictReader(
        io.StringIO(sf.bulk2.Opportunity.get_successful_records(again["job_id"]), newline="")
    )
    assert {row["sf__Created"] for row in updated} == {"false"}
    assert len(org.records("Opportunity")) == 4995
    kinds = org.stats()["calls_by_kind"]
    assert (kinds["ingestCreate"], kinds["ingestUpload"], kinds["ingestState"]) == (2, 2, 2)


def test_simple_salesforce_reports_a_failed_job(org, sf, tmp_path):
    path = tmp_path / "accounts.csv"
    path.write_text("Name,Colour__c\nAcme,red\n", encoding="utf-8")
    with pytest.raises(SalesforceOperationError, match="Field name not found : Colour__c"):
        sf.bulk2.Account.insert(csv_file=str(path), wait=0.1)
    [job] = org.bulk_jobs()
    assert job["state"] == "Failed"


def test_simple_salesforce_delete_job_deletes_but_cannot_read_the_204(org, sf):
    """Salesforce answers a job's DELETE with 204 and no body; simple-salesforce's ``delete_job``
    decodes a body anyway, so it raises once the job is gone (magsync never calls it)."""
    [result] = sf.bulk2.Account.insert(records=[{"Name": "Gone"}], wait=0.1)
    assert [job["id"] for job in org.bulk_jobs()] == [result["job_id"]]
    with pytest.raises(ValueError):  # requests' JSONDecodeError of the empty body
        sf.bulk2.Account._client.delete_job(result["job_id"], False)
    assert org.bulk_jobs() == []


# -- control -----------------------------------------------------------------------------------


def test_control_api_sets_the_bulk_latency_and_allocations(org, jobs):
    with ControlClient(org.url, org.ca_path) as control:
        assert control.set_bulk(latency=0.25, daily_batches=7) == {
            "latency": 0.25,
            "daily_batches": 7,
            "daily_records": bulk.DAILY_RECORDS,
        }
        info = jobs.run(SIMPLE_ACCOUNTS, object="Account", operation="insert")
        assert [job["id"] for job in control.bulk_jobs()] == [info["id"]]
        assert control.stats()["bulk"]["batches_used"] == 1
        control.reset()
        assert control.bulk_jobs() == []
        assert control.stats()["bulk"]["latency"] == 0.0
    assert jobs.data("GET", f"jobs/ingest/{info['id']}").status_code == 404


def test_the_command_takes_the_bulk_options(tmp_path):
    org = Running(
        "--state-dir",
        str(tmp_path / "state"),
        "--bulk-latency",
        "0.5",
        "--bulk-daily-batches",
        "5",
        "--bulk-daily-records",
        "1000",
    )
    try:
        settings = org.settings
        with ControlClient(settings["SALESFORCE_LOGIN_URL"], settings["SALESFORCE_CA_BUNDLE"]) as c:
            stats = c.stats()["bulk"]
        assert (stats["latency"], stats["daily_batches"], stats["daily_records"]) == (0.5, 5, 1000)
    finally:
        assert org.stop()[0] == 0
    command = [sys.executable, "-m", "magsync", "sandbox", "salesforce"]
    refused = subprocess.run(
        [*command, "--state-dir", str(tmp_path), "--bulk-latency", "-1"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert refused.returncode == 2
    assert "--bulk-latency" in refused.stderr
