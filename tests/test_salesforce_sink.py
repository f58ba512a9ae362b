"""The Salesforce sink (JWT tokens, one-call upserts, error outcomes) against the sandbox org
over real HTTPS."""

import copy
import json
import threading
import time
from pathlib import Path

import pytest

from magsync.errors import AuthenticationFailed, DeadLetter, RetryLater, Throttled
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.mapping.records import Record
from magsync.salesforce.auth import TokenProvider, grant_for
from magsync.salesforce.rest import build_session
from magsync.salesforce.writer import SalesforceWriter
from magsync.settings import ConfigError, Settings
from tests.helpers import Clock, load_fixture

PACKAGED_SCHEMA = Path(__file__).parent.parent / "magsync/sandbox/salesforce/schema.json"


@pytest.fixture
def org(org_factory):
    return org_factory()


def settings_for(org, **env):
    return Settings.from_env({**org.settings(), **{k: str(v) for k, v in env.items()}})


def writer_for(settings, clock=time.monotonic):
    session = build_session(settings)
    return SalesforceWriter(settings, TokenProvider(settings, session, clock=clock), session)


@pytest.fixture
def seed_record(org):
    order = load_order(load_fixture("seed_webhook.json")["order"])
    return opportunity_record(order, settings_for(org))


def test_upsert_creates_then_updates_the_same_record(org, seed_record):
    writer = writer_for(settings_for(org))
    [first] = writer.upsert([seed_record])
    assert first.ok and first.created is True and first.id.startswith("006")
    [second] = writer.upsert([seed_record])
    assert second.ok and second.created is False and second.id == first.id
    [stored] = org.records("Opportunity")
    assert stored["Amount"] == 99.99
    assert stored["Name"] == "Order 000000123 - Jane Doe"
    assert org.stats()["calls_by_kind"] == {"upsert": 2}
    assert org.stats()["token_requests"] == {"jwt-bearer": 1}
    assert writer.last_api_usage.startswith("api-usage=")


@pytest.mark.parametrize("number", ["000000123-1", "A/B 7#?%", "Zoë's order"])
def test_external_id_is_url_encoded(org, seed_record, number):
    record = Record(
        "Opportunity",
        "Magento_Order_ID__c",
        number,
        {**seed_record.fields, "Magento_Order_ID__c": number},
    )
    [result] = writer_for(settings_for(org)).upsert([record])
    assert result.ok
    [stored] = org.records("Opportunity")
    assert stored["Magento_Order_ID__c"] == number


def test_expired_session_is_refreshed_once_and_the_call_repeated(org, seed_record):
    writer = writer_for(settings_for(org))
    writer.upsert([seed_record])
    org.expire_tokens()
    [result] = writer.upsert([seed_record])
    assert result.ok
    stats = org.stats()
    assert stats["token_requests"] == {"jwt-bearer": 2}
    assert stats["rejected"] == {"INVALID_SESSION_ID": 1}


def test_concurrent_callers_share_one_refresh(org, seed_record):
    settings = settings_for(org)
    session = build_session(settings)
    tokens = TokenProvider(settings, session)
    stale = tokens.current()
    barrier = threading.Barrier(8)
    seen = []

    def refresh():
        barrier.wait()
        seen.append(tokens.refresh(stale))

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(token) for token in seen}) == 1
    assert seen[0] is not stale
    assert org.stats()["token_requests"] == {"jwt-bearer": 2}


def test_revoked_user_is_an_authentication_failure_to_retry(org, seed_record):
    clock = Clock()
    writer = writer_for(settings_for(org, SALESFORCE_TOKEN_RETRY_INTERVAL=0.2), clock)
    org.revoke_user()
    with pytest.raises(AuthenticationFailed) as info:
        writer.upsert([seed_record])
    assert isinstance(info.value, RetryLater)
    assert info.value.reason == "invalid_grant"
    org.restore_user()
    clock.sleep(0.3)  # a failed token request is not repeated within the retry interval
    assert writer.upsert([seed_record])[0].ok


def test_token_is_never_in_errors_or_reprs(org, seed_record):
    settings = settings_for(org)
    tokens = TokenProvider(settings, build_session(settings))
    token = tokens.current()
    assert token.access_token not in repr(token)
    org.revoke_user()
    with pytest.raises(AuthenticationFailed) as info:
        tokens.refresh(token)
    assert token.access_token not in str(info.value)
    key = Path(settings.sf_private_key_path).read_text()
    assert key.splitlines()[1] not in str(info.value)


@pytest.mark.parametrize(
    ("fault", "outcome", "reason"),
    [
        ({"kind": "unavailable"}, RetryLater, "http_503"),
        ({"kind": "unknown_exception"}, RetryLater, "UNKNOWN_EXCEPTION"),
        ({"kind": "unable_to_lock_row"}, RetryLater, "UNABLE_TO_LOCK_ROW"),
        ({"kind": "throttled"}, Throttled, "throttled"),
        ({"kind": "request_limit"}, Throttled, "throttled"),
        ({"kind": "drop"}, RetryLater, "connection_error"),
        ({"kind": "hang", "seconds": 3}, RetryLater, "timeout"),
    ],
)
def test_faults_become_retry_outcomes(org, seed_record, fault, outcome, reason):
    writer = writer_for(settings_for(org, SALESFORCE_TIMEOUT=1))
    writer.tokens.current()
    org.add_fault(method="PATCH", path="/services/data/", count=1, **fault)
    with pytest.raises(outcome) as info:
        writer.upsert([seed_record])
    assert info.value.reason == reason
    assert not isinstance(info.value, DeadLetter)
    # The fault fired once; the next attempt goes through.
    assert writer.upsert([seed_record])[0].ok


def test_both_request_limit_variants_are_throttling(org_factory, seed_record):
    org = org_factory(daily_limit=3)
    writer = writer_for(settings_for(org))
    for _ in range(3):
        writer.upsert([seed_record])
    with pytest.raises(Throttled) as info:
        writer.upsert([seed_record])
    assert info.value.errors[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    assert "TotalRequests" in info.value.errors[0]["message"]


def test_org_validation_errors_are_dead_letters_with_the_error_list(org, seed_record):
    writer = writer_for(settings_for(org))
    bad_stage = Record(
        "Opportunity",
        "Magento_Order_ID__c",
        "000000124",
        {**seed_record.fields, "StageName": "Shipped", "Magento_Order_ID__c": "000000124"},
    )
    with pytest.raises(DeadLetter) as info:
        writer.upsert([bad_stage])
    assert info.value.status == 400
    assert info.value.errors[0]["errorCode"] == "INVALID_OR_NULL_FOR_RESTRICTED_PICKLIST"
    assert info.value.errors[0]["fields"] == ["StageName"]
    assert org.records("Opportunity") == []


def test_missing_custom_field_in_the_org_is_a_dead_letter(org_factory, seed_record):
    schema = json.loads(PACKAGED_SCHEMA.read_text())
    del schema["sobjects"]["Opportunity"]["fields"]["Billing_City__c"]
    org = org_factory(schema=schema)
    with pytest.raises(DeadLetter) as info:
        writer_for(settings_for(org)).upsert([seed_record])
    assert info.value.reason == "INVALID_FIELD"


def test_key_field_not_external_id_is_a_dead_letter(org_factory, seed_record):
    schema = json.loads(PACKAGED_SCHEMA.read_text())
    field = schema["sobjects"]["Opportunity"]["fields"]["Magento_Order_ID__c"]
    field["externalId"] = False
    field["unique"] = False
    field.pop("idLookup", None)
    org = org_factory(schema=schema)
    with pytest.raises(DeadLetter) as info:
        writer_for(settings_for(org)).upsert([seed_record])
    assert info.value.status in (400, 404)
    assert org.records("Opportunity") == []


def test_several_records_go_in_one_collections_call(org, seed_record):
    records = []
    for n in range(3):
        number = f"00000020{n}"
        fields = {**seed_record.fields, "Magento_Order_ID__c": number}
        records.append(Record("Opportunity", "Magento_Order_ID__c", number, fields))
    broken = copy.deepcopy(records[1].fields)
    broken["Name"] = "x" * 121
    records[1] = Record("Opportunity", "Magento_Order_ID__c", records[1].external_id, broken)
    results = writer_for(settings_for(org)).upsert(records)
    assert [r.ok for r in results] == [True, False, True]
    assert results[1].error.reason == "STRING_TOO_LONG"
    assert isinstance(results[1].error, DeadLetter)
    assert org.stats()["calls_by_kind"] == {"collectionsUpsert": 1}
    assert sorted(r["Magento_Order_ID__c"] for r in org.records("Opportunity")) == [
        "000000200",
        "000000202",
    ]


def test_private_key_from_the_environment_with_escaped_newlines(org, seed_record):
    pem = Path(org.settings()["SALESFORCE_PRIVATE_KEY_PATH"]).read_text()
    env = {k: v for k, v in org.settings().items() if k != "SALESFORCE_PRIVATE_KEY_PATH"}
    settings = Settings.from_env({**env, "SALESFORCE_PRIVATE_KEY": pem.replace("\n", "\\n")})
    assert writer_for(settings).upsert([seed_record])[0].ok


def test_unusable_key_is_a_config_error_that_does_not_echo_the_key(org, tmp_path):
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
    settings = settings_for(org, SALESFORCE_PRIVATE_KEY_PATH=bad)
    with pytest.raises(ConfigError) as info:
        TokenProvider(settings, build_session(settings)).current()
    assert "bm90IGEga2V5" not in str(info.value)


def test_missing_jwt_settings_are_named():
    with pytest.raises(ConfigError, match="SALESFORCE_CLIENT_ID"):
        grant_for(Settings.from_env({}))
    with pytest.raises(ConfigError, match="SALESFORCE_PRIVATE_KEY_PATH"):
        grant_for(Settings.from_env({"SALESFORCE_CLIENT_ID": "x", "SALESFORCE_USERNAME": "u"}))


def test_ca_bundle_wins_over_requests_ca_bundle_in_the_environment(org, seed_record, monkeypatch):
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent/ca.pem")
    assert writer_for(settings_for(org)).upsert([seed_record])[0].ok
