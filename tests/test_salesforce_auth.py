"""Salesforce authentication for long-running workers, against the sandbox org over HTTPS:
both grants, failure episodes (logged each time, reported to Sentry once, not repeated at the
token endpoint within the retry interval), a token refused right after its grant, and the plain
words for each failure."""

import logging
import threading
from pathlib import Path

import pytest
import sentry_sdk

from magsync import alerts
from magsync.errors import AuthenticationFailed, RetryLater
from magsync.mapping.opportunity import opportunity_record
from magsync.mapping.order import load_order
from magsync.salesforce.auth import TokenProvider, explain, refused_credentials
from magsync.salesforce.rest import build_session
from magsync.salesforce.writer import SalesforceWriter
from magsync.settings import Settings
from tests.helpers import Clock, load_fixture
from tests.sentry_stub import SentryStub


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def sentry(make_settings):
    stub = SentryStub().start()
    alerts.init(make_settings(SENTRY_DSN=stub.dsn))
    yield stub
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # an inactive client again
    stub.stop()


def settings_for(org, **env):
    return Settings.from_env({**org.settings(), **{k: str(v) for k, v in env.items()}})


def writer_for(settings, clock=None):
    session = build_session(settings)
    tokens = TokenProvider(settings, session, clock=clock) if clock else None
    return SalesforceWriter(settings, tokens or TokenProvider(settings, session), session)


@pytest.fixture
def seed_record(org):
    order = load_order(load_fixture("seed_webhook.json")["order"])
    return opportunity_record(order, settings_for(org))


def auth_events(stub):
    sentry_sdk.flush(timeout=5)
    return [e for e in stub.events() if e.get("tags", {}).get("alert") == "salesforce_auth"]


def test_refresh_token_grant_obtains_and_renews_tokens(org, seed_record):
    settings = settings_for(
        org,
        SALESFORCE_REFRESH_TOKEN=org.issue_refresh_token(),
        SALESFORCE_CLIENT_SECRET=org.client_secret,
    )
    writer = writer_for(settings)
    assert writer.upsert([seed_record])[0].ok
    org.expire_tokens()
    assert writer.upsert([seed_record])[0].ok
    assert org.stats()["token_requests"] == {"refresh_token": 2}


def test_revoked_refresh_token_is_explained(org):
    settings = settings_for(
        org,
        SALESFORCE_REFRESH_TOKEN=org.issue_refresh_token(),
        SALESFORCE_CLIENT_SECRET=org.client_secret,
    )
    org.revoke_user()  # withdraws the refresh tokens too
    with pytest.raises(AuthenticationFailed) as info:
        TokenProvider(settings, build_session(settings)).current()
    cause, fix = explain(info.value)
    assert "refresh token" in cause
    assert "SALESFORCE_REFRESH_TOKEN" in fix
    assert refused_credentials(info.value)


def test_a_failed_grant_is_not_repeated_within_the_retry_interval(org, seed_record):
    clock = Clock()
    writer = writer_for(settings_for(org, SALESFORCE_TOKEN_RETRY_INTERVAL=30), clock)
    org.revoke_user()
    for _ in range(5):
        with pytest.raises(AuthenticationFailed) as info:
            writer.upsert([seed_record])
        assert info.value.reason == "invalid_grant"
        clock.now += 5
    assert org.stats()["token_requests"] == {"jwt-bearer": 1}
    org.restore_user()
    clock.now += 10  # 35 s after the failure
    assert writer.upsert([seed_record])[0].ok
    assert org.stats()["token_requests"] == {"jwt-bearer": 2}


def test_concurrent_callers_share_one_failed_refresh(org):
    settings = settings_for(org)
    tokens = TokenProvider(settings, build_session(settings))
    stale = tokens.current()
    org.revoke_user()
    barrier = threading.Barrier(8)
    failures = []

    def refresh():
        barrier.wait()
        try:
            tokens.refresh(stale)
        except AuthenticationFailed as exc:
            failures.append(exc.reason)

    threads = [threading.Thread(target=refresh) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == ["invalid_grant"] * 8
    assert org.stats()["token_requests"] == {"jwt-bearer": 2}  # the first grant, one refresh


def test_an_episode_is_reported_to_sentry_once_and_again_after_a_recovery(org, seed_record, sentry):
    clock = Clock()
    writer = writer_for(settings_for(org, SALESFORCE_TOKEN_RETRY_INTERVAL=1), clock)
    assert writer.upsert([seed_record])[0].ok
    org.revoke_user()
    org.expire_tokens()
    for _ in range(4):  # four orders fail, each after a fresh token request
        with pytest.raises(AuthenticationFailed):
            writer.upsert([seed_record])
        clock.now += 2
    assert org.stats()["token_errors"] == {"invalid_grant": 4}
    [event] = auth_events(sentry)
    assert event["tags"]["reason"] == "invalid_grant"
    assert event["tags"]["grant"] == "jwt-bearer"
    assert event["level"] == "error"
    assert event["message"] == "Salesforce authentication failing: invalid_grant"
    assert event["contexts"]["salesforce_auth"]["errors"][0]["message"] == (
        "user hasn't approved this consumer"
    )

    org.restore_user()
    assert writer.upsert([seed_record])[0].ok  # the episode ends
    org.revoke_user()
    org.expire_tokens()
    clock.now += 2
    with pytest.raises(AuthenticationFailed):
        writer.upsert([seed_record])
    assert len(auth_events(sentry)) == 2


def test_a_token_refused_right_after_its_grant_is_an_authentication_failure(
    org, seed_record, sentry
):
    writer = writer_for(settings_for(org))
    org.set_token_ttl(0)  # every token is dead on arrival
    for _ in range(3):
        with pytest.raises(AuthenticationFailed) as info:
            writer.upsert([seed_record])
        assert info.value.reason == "INVALID_SESSION_ID"
        assert isinstance(info.value, RetryLater)
    cause, _ = explain(info.value)
    assert "just issued" in cause
    stats = org.stats()
    assert stats["rejected"] == {"INVALID_SESSION_ID": 2}  # the first call and its one repeat
    assert stats["token_requests"] == {"jwt-bearer": 2}  # then held for the retry interval
    assert len(auth_events(sentry)) == 1
    assert org.records("Opportunity") == []


def test_an_unreachable_token_endpoint_is_a_failure_to_retry(org, seed_record, caplog):
    writer = writer_for(settings_for(org, SALESFORCE_TIMEOUT=1))
    org.add_fault(kind="drop", path="/services/oauth2/token", count=1)
    with caplog.at_level(logging.INFO), pytest.raises(AuthenticationFailed) as info:
        writer.upsert([seed_record])
    assert info.value.reason == "token_endpoint_unreachable"
    assert not refused_credentials(info.value)
    assert "SALESFORCE_LOGIN_URL" in explain(info.value)[1]
    [record] = [r for r in caplog.records if r.getMessage() == "salesforce authentication failed"]
    assert record.reason == "token_endpoint_unreachable"
    assert record.levelno == logging.WARNING  # an ERROR would be a Sentry event per order


def test_failures_never_carry_the_token_or_the_key(org, seed_record, sentry, caplog):
    settings = settings_for(org, SALESFORCE_TOKEN_RETRY_INTERVAL=0.01)
    session = build_session(settings)
    tokens = TokenProvider(settings, session)
    writer = SalesforceWriter(settings, tokens, session)
    token = tokens.current().access_token
    key_lines = Path(settings.sf_private_key_path).read_text().splitlines()[1:-1]
    org.revoke_user()
    org.expire_tokens()
    with caplog.at_level(logging.DEBUG), pytest.raises(AuthenticationFailed) as info:
        writer.upsert([seed_record])
    sentry_sdk.flush(timeout=5)
    assert len(sentry.wait_for(1)) == 1
    texts = [
        str(info.value),
        repr(info.value.describe()),
        *(r.getMessage() + repr(vars(r)) for r in caplog.records),
    ]
    raw = b"".join(sentry.raw())
    for secret in (token, *key_lines):
        assert all(secret not in text for text in texts)
        assert secret.encode() not in raw


@pytest.mark.parametrize(
    ("reason", "description", "status", "words"),
    [
        ("invalid_client_id", "client identifier invalid", 400, "SALESFORCE_CLIENT_ID"),
        ("invalid_client", "invalid client credentials", 400, "SALESFORCE_CLIENT_SECRET"),
        ("invalid_grant", "user hasn't approved this consumer", 400, "SALESFORCE_USERNAME"),
        ("invalid_grant", "audience is invalid", 400, "SALESFORCE_AUDIENCE"),
        ("invalid_grant", "expired authorization code", 400, "clock"),
        ("invalid_grant", "invalid assertion", 400, "SALESFORCE_PRIVATE_KEY_PATH"),
        ("invalid_grant", "expired access/refresh token", 400, "SALESFORCE_REFRESH_TOKEN"),
        ("token_endpoint_unreachable", "ConnectionError", None, "SALESFORCE_LOGIN_URL"),
        ("http_503", "", 503, "incident"),
    ],
)
def test_each_failure_has_plain_words_and_a_fix(reason, description, status, words):
    error = AuthenticationFailed(
        "refused",
        reason=reason,
        errors=[{"errorCode": reason, "message": description, "fields": []}],
        status=status,
    )
    cause, fix = explain(error)
    assert cause and words in fix
    assert refused_credentials(error) is (status == 400)
