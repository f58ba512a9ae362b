"""``magsync check`` against the sandbox org, the sandbox store and the real RabbitMQ: each check
passes on a sound setup and fails, with its fix, on a broken one; no secret is ever printed."""

import json
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from kombu import Connection
from marshmallow import Schema, fields

from magsync.check import mapping, run
from magsync.check.salesforce import Org
from magsync.messaging.broker import Topology
from magsync.sandbox.magento import SandboxStore
from magsync.settings import Settings
from tests import processes

PACKAGED_SCHEMA = Path(__file__).parent.parent / "magsync/sandbox/salesforce/schema.json"


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def store():
    store = SandboxStore().start()
    yield store
    store.stop()


@pytest.fixture
def env(org, store, rabbitmq_url, broker_namespace):
    """A sound configuration: the sandboxes, RabbitMQ, every optional service set."""
    return {
        **org.settings(),
        **store.settings(),
        "CELERY_BROKER_URL": rabbitmq_url,
        "MAGSYNC_BROKER_NAMESPACE": broker_namespace,
        "SENTRY_DSN": "https://publickey@sentry.example.com/1",
        "FLOWER_BASIC_AUTH": "ops:flower-password",
    }


def secrets_of(env):
    """Every secret value ``env`` holds, and the private key's lines."""
    names = {
        f.metadata["env"] for f in Settings.__dataclass_fields__.values() if f.metadata["secret"]
    }
    found = [v for k, v in env.items() if k in names and v and k != "CELERY_BROKER_URL"]
    found += ["flower-password", "guest@"]  # the broker URL's password shows as ***
    key_path = env.get("SALESFORCE_PRIVATE_KEY_PATH")
    if key_path and Path(key_path).exists():
        found += Path(key_path).read_text().splitlines()[1:-1]
    return found


def check(env):
    """``(report, text)`` of a check run; asserts no secret is in the text."""
    report = run(env)
    text = report.render()
    leaked = [s for s in secrets_of(env) if s in text]
    assert not leaked, text
    return report, text


def entries(text):
    """The report's findings as ``(label, statement, fix)``, each unwrapped."""
    found = []
    for raw in text.splitlines():
        label = raw[2:8].strip()
        if raw.startswith("  ") and label in ("ok", "warn", "FAIL", "skip"):
            found.append([label, raw[8:], ""])
        elif raw.startswith(" " * 8) and found:
            part = raw.strip()
            if part.startswith("fix: ") or found[-1][2]:
                found[-1][2] = f"{found[-1][2]} {part}".strip()
            else:
                found[-1][1] = f"{found[-1][1]} {part}"
    return [tuple(entry) for entry in found]


def entry(text, start):
    """``(label, statement, fix)`` of the one finding whose statement starts with ``start``."""
    [match] = [e for e in entries(text) if e[1].startswith(start)]
    return match


def variant(change):
    schema = json.loads(PACKAGED_SCHEMA.read_text())
    change(schema["sobjects"])
    return schema


# -- passing -----------------------------------------------------------------------------------


def test_a_sound_setup_passes(env, rabbitmq_url, broker_namespace):
    with Connection(rabbitmq_url) as conn:
        Topology(broker_namespace).declare(conn)
    report, text = check(env)
    assert report.exit_code == 0, text
    assert report.count("fail") == 0
    for title in (
        "Settings",
        "Salesforce token",
        "Salesforce API version",
        "Salesforce fields the mapping writes",
        "Salesforce API usage",
        "Magento REST API",
        "RabbitMQ",
    ):
        assert f"\n{title}\n" in f"\n{text}", title
    assert "jwt-bearer grant: token obtained" in text
    assert "API version 58.0: offered by the org" in text
    assert "Magento_Order_ID__c is a unique External ID" in " ".join(text.split())
    assert "'Prospecting', 'Qualification', 'Closed Won', 'Closed Lost' are active" in " ".join(
        text.split()
    )
    assert "the store answered with a signed request" in text
    assert f"queue {broker_namespace}.orders: quorum queue as expected" in text
    assert f"queue {broker_namespace}.dead: quorum queue as expected" in text
    assert "amqp://guest:***@" in text


def test_missing_queues_pass_and_are_not_created(env, rabbitmq_url, broker_namespace):
    report, text = check(env)
    assert report.exit_code == 0, text
    assert f"queue {broker_namespace}.orders: not declared yet" in text
    with Connection(rabbitmq_url) as conn, pytest.raises(conn.channel_errors):
        conn.default_channel.queue_declare(f"{broker_namespace}.orders", passive=True)


# -- settings ----------------------------------------------------------------------------------


def test_malformed_settings_fail_and_the_rest_is_skipped(env):
    report, text = check(
        {**env, "SALESFORCE_LOGIN_URL": "http://login.example.com", "MAGSYNC_DELIVERY_LIMIT": "x"}
    )
    assert report.exit_code == 1
    assert "SALESFORCE_LOGIN_URL: must be an https:// URL" in text
    assert "MAGSYNC_DELIVERY_LIMIT" in text
    assert report.count("skip") == 8  # every other check needs parsed settings


def test_missing_credentials_name_the_variable(env):
    incomplete = {k: v for k, v in env.items() if k != "SALESFORCE_USERNAME"}
    report, text = check(incomplete)
    assert report.exit_code == 1
    label, statement, fix = entry(text, "Salesforce credentials:")
    assert label == "FAIL" and "SALESFORCE_USERNAME" in statement
    assert "SALESFORCE_CLIENT_ID" in fix
    assert "salesforce-token: needs" not in text
    assert "token: the Salesforce credentials are incomplete" in text


def test_a_key_that_is_not_a_key_fails_without_being_printed(env):
    pem = "-----BEGIN PRIVATE KEY-----\\nbm90IGEga2V5IGF0IGFsbA==\\n-----END PRIVATE KEY-----"
    report, text = check({**env, "SALESFORCE_PRIVATE_KEY": pem})
    assert report.exit_code == 1
    label, statement, _ = entry(text, "Salesforce credentials:")
    assert label == "FAIL" and "not a usable RSA PEM key" in statement
    assert "bm90IGEga2V5IGF0IGFsbA" not in text


def test_half_configured_magento_fails(env):
    report, text = check({**env, "MAGENTO_ACCESS_TOKEN": ""})
    assert report.exit_code == 1
    label, statement, fix = entry(text, "MAGENTO_*:")
    assert label == "FAIL" and "MAGENTO_ACCESS_TOKEN not set" in statement
    assert fix == "fix: set all five MAGENTO_ REST variables, or none"


# -- the Salesforce token ----------------------------------------------------------------------


def test_a_key_the_org_does_not_know_fails_with_the_fix(env, tmp_path):
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "other.pem"
    path.write_bytes(
        other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    report, text = check({**env, "SALESFORCE_PRIVATE_KEY_PATH": str(path)})
    assert report.exit_code == 1
    label, statement, fix = entry(text, "jwt-bearer grant:")
    assert label == "FAIL"
    assert "does not match the connected app's certificate" in statement
    assert "invalid_grant: invalid assertion" in statement
    assert fix.startswith("fix: SALESFORCE_PRIVATE_KEY_PATH")
    assert "salesforce-api: needs a Salesforce token" in text
    assert "salesforce-fields: needs an API version" in text


def test_an_unknown_user_fails_with_the_fix(env):
    report, text = check({**env, "SALESFORCE_USERNAME": "someone.else@example.com"})
    assert report.exit_code == 1
    label, statement, fix = entry(text, "jwt-bearer grant:")
    assert label == "FAIL" and "user hasn't approved this consumer" in statement
    assert fix.startswith("fix: check SALESFORCE_USERNAME")


# -- the API version ---------------------------------------------------------------------------


def test_an_api_version_the_org_does_not_offer_fails(env):
    report, text = check({**env, "SALESFORCE_API_VERSION": "99.0"})
    assert report.exit_code == 1
    label, statement, fix = entry(text, "API version 99.0:")
    assert label == "FAIL" and "the org does not offer it; it offers 46.0 to 64.0" in statement
    assert fix.startswith("fix: set SALESFORCE_API_VERSION")


# -- the org's API usage -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("used", "label", "says"),
    [
        (120, "ok", None),
        (850, "warn", "backfill waits until usage falls"),
        (960, "warn", "live orders wait until usage falls"),
    ],
)
def test_the_usage_shows_with_the_pacing_thresholds(org, env, used, label, says):
    org.set_limits(daily_limit=1000, api_usage=used)
    report, text = check(env)
    assert report.exit_code == 0, text  # busy is not broken: it falls by itself
    found, statement, fix = entry(text, "daily API requests:")
    assert found == label
    # The describe calls before it are counted too: the figure is what /limits said.
    reported = int(statement.split("daily API requests: ", 1)[1].split(" of ", 1)[0])
    assert used < reported < used + 20
    assert " of 1,000 used in the last 24 hours (" in statement
    assert "from GET /limits" in statement
    assert "MAGSYNC_API_BUDGET 80% (backfill and reconciliation pause above it)" in statement
    assert "MAGSYNC_API_HALT 95% (live orders wait above it)" in statement
    if says:
        assert statement.endswith(says)
        assert "rolling 24 hours" in fix
    else:
        assert not fix


def test_the_thresholds_shown_are_the_configured_ones(org, env):
    org.set_limits(daily_limit=1000, api_usage=600)
    report, text = check({**env, "MAGSYNC_API_BUDGET": "0.5", "MAGSYNC_API_HALT": "90%"})
    assert report.exit_code == 0, text
    label, statement, _ = entry(text, "daily API requests:")
    assert label == "warn" and "MAGSYNC_API_BUDGET 50%" in statement
    assert "MAGSYNC_API_HALT 90%" in statement


# -- the fields the mapping writes -------------------------------------------------------------


def _drop(name):
    return lambda objects: objects["Opportunity"]["fields"].pop(name)


def _set(sobject, name, **attributes):
    return lambda objects: objects[sobject]["fields"][name].update(attributes)


def _without_stage(stage):
    def change(objects):
        field = objects["Opportunity"]["fields"]["StageName"]
        field["picklist"] = [value for value in field["picklist"] if value != stage]

    return change


def _drop_from(sobject, name):
    return lambda objects: objects[sobject]["fields"].pop(name)


def _without_role(role):
    def change(objects):
        field = objects["OpportunityContactRole"]["fields"]["Role"]
        field["picklist"] = [value for value in field["picklist"] if value != role]

    return change


def _required_extra(objects):
    objects["Opportunity"]["fields"]["Region__c"] = {
        "type": "string",
        "label": "Region",
        "length": 40,
        "required": True,
    }


FIELD_CASES = [
    pytest.param(
        _drop("Billing_City__c"),
        "Opportunity.Billing_City__c: does not exist",
        "create it on Opportunity",
        id="missing-field",
    ),
    pytest.param(
        _set("Opportunity", "Magento_Order_ID__c", externalId=False, unique=False),
        "Opportunity.Magento_Order_ID__c: is not flagged External ID",
        "tick External ID and Unique",
        id="not-external-id",
    ),
    pytest.param(
        _set("Opportunity", "Magento_Order_ID__c", unique=False),
        "Opportunity.Magento_Order_ID__c: is an External ID but not Unique",
        "tick Unique",
        id="not-unique",
    ),
    pytest.param(
        _without_stage("Closed Won"),
        "Opportunity.StageName: 'Closed Won' is not a value of the picklist",
        "add or activate 'Closed Won'",
        id="stage-missing",
    ),
    pytest.param(
        _set("Opportunity", "Amount", type="string", length=20),
        "Opportunity.Amount: is a Text(20) field; the mapping writes number values",
        "change its type to Currency or Number",
        id="amount-is-text",
    ),
    pytest.param(
        _set("Opportunity", "CloseDate", type="datetime"),
        "Opportunity.CloseDate: is a Date/Time field; the mapping writes date values",
        "change its type to Date",
        id="close-date-is-datetime",
    ),
    pytest.param(
        _set("Opportunity", "Name", length=80),
        "Opportunity.Name: holds 80 characters; the mapping writes up to 120",
        "make it a Text(120) field or longer",
        id="name-too-short",
    ),
    pytest.param(
        _set("Opportunity", "Magento_Customer_Email__c", type="phone", length=40),
        "Opportunity.Magento_Customer_Email__c: is a Phone(40) field; the mapping writes email",
        "change its type to Email or Text",
        id="email-is-phone",
    ),
    pytest.param(
        _set("Opportunity", "Magento_Customer_Email__c", updateable=False),
        "Opportunity.Magento_Customer_Email__c: the integration user cannot write it "
        "(updateable: false)",
        "Edit access",
        id="not-updateable",
    ),
    pytest.param(
        _required_extra,
        "Opportunity.Region__c: is required to create a Opportunity and the mapping does not",
        "make it optional or give it a default",
        id="required-unwritten",
    ),
    pytest.param(
        _set("Account", "BillingCity", length=20),
        "Account.BillingCity: holds 20 characters; the mapping writes up to 40",
        "make it a Text(40) field or longer",
        id="account-field-too-short",
    ),
    pytest.param(
        _set("Opportunity", "Billing_City__c", length=30),
        "Opportunity.Billing_City__c: holds 30 characters; the mapping writes up to 40",
        "make it a Text(40) field or longer",
        id="billing-field-too-short",
    ),
    pytest.param(
        _set("Lead", "Magento_Order_ID__c", externalId=False, unique=False),
        "Lead.Magento_Order_ID__c: is not flagged External ID",
        "tick External ID",
        id="lead-key-not-external-id",
    ),
    pytest.param(
        _drop_from("Opportunity", "NextStep"),
        "Opportunity.NextStep: does not exist",
        "create it on Opportunity",
        id="replaced-note-missing",
    ),
    pytest.param(
        _set("Opportunity", "NextStep", updateable=False),
        "Opportunity.NextStep: the integration user cannot write it (updateable: false)",
        "Edit access",
        id="replaced-note-not-updateable",
    ),
    pytest.param(
        _drop_from("OpportunityContactRole", "IsPrimary"),
        "OpportunityContactRole.IsPrimary: does not exist",
        "create it on OpportunityContactRole",
        id="contact-role-field-missing",
    ),
    pytest.param(
        _set("OpportunityContactRole", "ContactId", createable=False),
        "OpportunityContactRole.ContactId: the integration user cannot write it "
        "(createable: false)",
        "Edit access",
        id="contact-role-contact-not-createable",
    ),
    pytest.param(
        _without_role("Decision Maker"),
        "OpportunityContactRole.Role: 'Decision Maker' is not a value of the picklist",
        "add or activate 'Decision Maker'",
        id="contact-role-missing",
    ),
    pytest.param(
        _set("Opportunity", "AccountId", type="string", length=18),
        "Opportunity.AccountId: is a Text(18) field; the mapping writes record ids into it",
        "change its type to Lookup",
        id="account-link-is-text",
    ),
]


@pytest.mark.parametrize(("change", "finding", "fix"), FIELD_CASES)
def test_an_org_that_does_not_fit_the_mapping_fails(org_factory, env, change, finding, fix):
    variant_org = org_factory(schema=variant(change))
    report, text = check({**env, **variant_org.settings()})
    assert report.exit_code == 1, text
    label, _, found_fix = entry(text, finding)
    assert label == "FAIL" and fix in found_fix
    assert report.count("fail") == 1, text


def test_fields_of_records_only_ever_created_need_not_be_updateable(org_factory, env):
    variant_org = org_factory(schema=variant(_set("Account", "BillingCity", updateable=False)))
    report, text = check({**env, **variant_org.settings()})
    assert report.exit_code == 0, text


def test_the_replaced_note_field_is_checked_as_configured(env):
    report, text = check({**env, "SALESFORCE_REPLACED_NOTE_FIELD": "Replaced_Note__c"})
    assert report.exit_code == 1, text
    label, _, fix = entry(text, "Opportunity.Replaced_Note__c: does not exist")
    assert label == "FAIL" and "create it on Opportunity" in fix
    assert report.count("fail") == 1, text


def test_the_contact_role_and_the_replaced_order_are_checked(env):
    report, text = check(env)
    assert report.exit_code == 0, text
    flat = " ".join(text.split())
    assert "OpportunityContactRole (ContactRoleSchema): the 4 fields the mapping writes" in flat
    assert "Role 'Decision Maker' is active" in flat
    assert "Opportunity (ReplacedOrderSchema): the 2 fields the mapping writes exist, can be " in (
        flat
    )


def test_the_stage_map_is_checked_as_configured(env):
    report, text = check({**env, "SALESFORCE_STAGE_MAP": "new=Prospecting;complete=Shipped"})
    assert report.exit_code == 1
    assert "Opportunity.StageName: 'Shipped' is not a value of the picklist" in " ".join(
        text.split()
    )


def test_billing_parts_fit_the_fields_they_are_cut_for(env):
    _report, text = check(env)
    assert not [e for e in entries(text) if e[1].startswith("Opportunity.Billing_")], text


class CityNoteSchema(Schema):
    """A mapping that writes the store's text uncut into a shorter field."""

    class Meta:
        salesforce_object = "Lead"

    LastName = fields.Function(lambda order: "Buyer")
    Company = fields.Function(lambda order: "Shop")
    Title = fields.Function(lambda order: order.billing_address.city)


def test_a_store_field_passed_through_uncut_is_a_warning(org):
    settings = Settings.from_env(org.settings())
    [target] = mapping.targets(settings, schemas=[CityNoteSchema])
    client = Org(settings)
    try:
        client.connect()
        findings = mapping.field_findings(target, client.describe("Lead"))
    finally:
        client.close()
    [warning] = [f for f in findings if f.status == "warn"]
    assert warning.subject == "Lead.Title"
    assert warning.detail.startswith("holds 128 characters; the mapping passes the store's text")
    assert "STRING_TOO_LONG" in warning.detail
    assert not [f for f in findings if f.status == "fail"]


# -- the check follows the mapping -------------------------------------------------------------


def test_every_outbound_schema_of_the_mapping_is_checked():
    names = {schema.__name__ for schema in mapping.mapping_schemas()}
    assert "OpportunitySchema" in names
    assert "MagentoOrderSchema" not in names  # inbound: tolerates unknown fields
    settings = Settings.from_env({})
    [target] = [t for t in mapping.targets(settings) if t.schema.__name__ == "OpportunitySchema"]
    specs = {spec.name: spec for spec in target.fields}
    assert {"Name", "Amount", "StageName", "CloseDate", "Magento_Order_ID__c"} <= set(specs)
    assert (specs["Name"].kind, specs["Name"].length, specs["Name"].bounded) == ("text", 120, True)
    assert specs["Amount"].kind == "number"
    assert specs["CloseDate"].kind == "date"
    assert specs["Magento_Customer_Email__c"].kind == "email"
    assert specs["Magento_Order_ID__c"].key
    assert set(specs["StageName"].values) == set(settings.sf_stage_map.values())


def test_every_outbound_schema_declares_where_its_fields_go():
    declared = {}
    for schema in mapping.mapping_schemas():
        meta = schema.Meta
        assert meta.salesforce_write in ("upsert", "create", "update"), schema
        assert (meta.salesforce_write == "upsert") == hasattr(meta, "salesforce_key"), schema
        declared[schema.__name__] = (meta.salesforce_object, meta.salesforce_write)
    assert declared["OpportunitySchema"] == ("Opportunity", "upsert")
    assert declared["ContactRoleSchema"] == ("OpportunityContactRole", "create")
    assert declared["ReplacedOrderSchema"] == ("Opportunity", "update")
    settings = Settings.from_env({"SALESFORCE_REPLACED_NOTE_FIELD": "Replaced_Note__c"})
    [closing] = [t for t in mapping.targets(settings) if t.schema.__name__ == "ReplacedOrderSchema"]
    assert {spec.name for spec in closing.fields} == {"StageName", "Replaced_Note__c"}
    [role] = [t for t in mapping.targets(settings) if t.schema.__name__ == "ContactRoleSchema"]
    kinds = {spec.name: spec.kind for spec in role.fields}
    assert kinds == {
        "OpportunityId": "reference",
        "ContactId": "reference",
        "Role": "text",
        "IsPrimary": "boolean",
    }


class OrderNoteSchema(Schema):
    """Creates Leads that mention the order's number: the number is no upsert key here."""

    class Meta:
        salesforce_object = "Lead"
        salesforce_write = "create"

    LastName = fields.Function(lambda order: "Buyer")
    Company = fields.Function(lambda order: "Shop")
    Title = fields.Function(lambda order: order.increment_id)


def test_the_upsert_key_is_read_from_the_declaration_not_guessed(org):
    settings = Settings.from_env(org.settings())
    [target] = mapping.targets(settings, schemas=[OrderNoteSchema])
    assert not [spec for spec in target.fields if spec.key]
    client = Org(settings)
    try:
        client.connect()
        findings = mapping.field_findings(target, client.describe("Lead"))
    finally:
        client.close()
    assert [f.status for f in findings] == ["ok"], findings


class WarrantySchema(Schema):
    """A mapping the project does not have: what the check makes of a new one."""

    class Meta:
        salesforce_object = "Lead"

    LastName = fields.Function(lambda order: order.customer_lastname or "Buyer")
    Company = fields.Function(lambda order: "Warranty desk")
    Rating = fields.Function(lambda order: "Platinum")
    Warranty_Code__c = fields.Function(lambda order: f"W-{order.increment_id}")


def test_a_new_mapping_is_checked_without_changes_to_the_check(org):
    settings = Settings.from_env(org.settings())
    [target] = mapping.targets(settings, schemas=[WarrantySchema])
    assert target.sobject == "Lead"
    client = Org(settings)
    try:
        client.connect()
        findings = mapping.field_findings(target, client.describe("Lead"))
    finally:
        client.close()
    failures = {f.subject: f.detail for f in findings if f.status == "fail"}
    assert failures == {
        "Lead.Rating": "'Platinum' is not a value of the picklist, and the mapping writes it",
        "Lead.Warranty_Code__c": "does not exist, or the integration user cannot see it",
    }


# -- Magento -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "words", "fix"),
    [
        ("MAGENTO_CONSUMER_SECRET", "the signature does not match", "MAGENTO_CONSUMER_SECRET"),
        ("MAGENTO_ACCESS_TOKEN", "Magento knows no such access token", "MAGENTO_ACCESS_TOKEN"),
        ("MAGENTO_CONSUMER_KEY", "no integration with this consumer key", "MAGENTO_CONSUMER_KEY"),
    ],
)
def test_a_wrong_magento_secret_fails_with_the_fix(env, variable, words, fix):
    wrong = "z" * len(env[variable])
    report, text = check({**env, variable: wrong})
    assert report.exit_code == 1
    label, statement, found_fix = entry(text, "GET /rest/V1/orders?searchCriteria[pageSize]=1:")
    assert label == "FAIL" and words in statement and fix in found_fix
    assert wrong not in text


def test_an_unreachable_store_fails(env, unused_port):
    report, text = check({**env, "MAGENTO_BASE_URL": f"http://127.0.0.1:{unused_port}"})
    assert report.exit_code == 1
    assert "the store did not answer (ConnectionError)" in text


def test_without_magento_settings_the_store_is_not_checked(env):
    without = {k: v for k, v in env.items() if not k.startswith("MAGENTO_") or "WEBHOOK" in k}
    report, text = check(without)
    assert report.exit_code == 0, text
    assert "skip  GET /rest/V1/orders?searchCriteria[pageSize]=1: the store's REST API is" in text


# -- RabbitMQ ----------------------------------------------------------------------------------


def test_a_broker_that_is_down_fails(env, unused_port):
    report, text = check(
        {**env, "CELERY_BROKER_URL": f"amqp://guest:guest@127.0.0.1:{unused_port}//"}
    )
    assert report.exit_code == 1
    label, statement, fix = entry(text, f"amqp://guest:***@127.0.0.1:{unused_port}//:")
    assert label == "FAIL"
    assert "RabbitMQ refused the connection or did not answer" in statement
    assert fix.startswith("fix: start RabbitMQ, or correct CELERY_BROKER_URL")
    assert "queue " not in text


def test_a_queue_declared_differently_fails(env, rabbitmq_url, broker_namespace):
    with Connection(rabbitmq_url) as conn:
        topology = Topology(broker_namespace)
        channel = conn.default_channel
        for entity in (topology.dead_exchange, topology.dead_queue, topology.exchange):
            entity.bind(channel).declare()
        # A classic queue where magsync declares a quorum queue with a dead-letter exchange.
        channel.queue_declare(f"{broker_namespace}.orders", durable=True, auto_delete=False)
    report, text = check(env)
    assert report.exit_code == 1
    label, statement, fix = entry(text, f"queue {broker_namespace}.orders:")
    assert label == "FAIL"
    assert "declared differently from what magsync declares" in statement
    assert "PRECONDITION_FAILED - inequivalent arg" in statement
    assert "MAGSYNC_BROKER_NAMESPACE" in fix
    assert f"queue {broker_namespace}.dead: quorum queue as expected" in text


# -- the command -------------------------------------------------------------------------------


def test_the_command_prints_the_report_and_exits_1_on_failure(env):
    argv = [str(processes.BIN / "magsync"), "check"]
    base = processes.BASE_ENV
    good = subprocess.run(
        argv, env={**base, **env}, capture_output=True, text=True, timeout=120, check=False
    )
    assert good.returncode == 0, good.stdout + good.stderr
    assert good.stdout.rstrip().endswith("nothing failed.")
    bad = subprocess.run(
        argv,
        env={**base, **env, "SALESFORCE_USERNAME": "nobody@example.com"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode == 1
    assert "fix: check SALESFORCE_USERNAME" in bad.stdout
    assert bad.stderr == ""
    for secret in secrets_of(env):
        assert secret not in good.stdout + bad.stdout


def test_the_readme_shows_the_command():
    from click.testing import CliRunner

    from magsync.cli import main

    assert CliRunner().invoke(main, ["check", "--help"]).exit_code == 0
    readme = (Path(__file__).parent.parent / "README.rst").read_text(encoding="utf-8")
    assert "$ magsync check" in readme
    assert "Ready: " in readme and "fix the failures above before going live." in readme
