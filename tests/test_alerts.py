"""Sentry alerts: real envelopes to a local ingest endpoint; secrets masked."""

import pytest
import sentry_sdk

from magsync import alerts
from magsync.errors import DeadLetter
from tests.sentry_stub import SentryStub


@pytest.fixture
def sentry():
    stub = SentryStub().start()
    yield stub
    sentry_sdk.get_client().close(timeout=2)
    sentry_sdk.init()  # an inactive client again
    stub.stop()


@pytest.mark.parametrize(
    ("text", "hidden"),
    [
        ("Authorization: Bearer 00D5g000004!AQ4AQ.x-y", "00D5g000004!AQ4AQ.x-y"),
        ("grant_type=jwt&assertion=eyJhbGciOi.abc.def", "eyJhbGciOi.abc.def"),
        ("client_secret=abc123&x=1", "abc123"),
        ("amqp://guest:hunter2@rabbit:5672//", "hunter2"),
        ("ledger at postgresql+psycopg://magsync:hunter2@db/ledger failed", "hunter2"),
        (
            "key -----BEGIN RSA PRIVATE KEY-----\nMIIEpA\n-----END RSA PRIVATE KEY----- end",
            "MIIEpA",
        ),
    ],
)
def test_mask_hides_secrets(text, hidden):
    masked = alerts.mask(text)
    assert hidden not in masked
    assert "[Filtered]" in masked


def test_mask_leaves_ordinary_text_alone():
    text = "order 000000123 dead-lettered: REQUIRED_FIELD_MISSING"
    assert alerts.mask(text) == text


def test_dead_letter_is_one_event_tagged_with_the_order(sentry, make_settings):
    assert alerts.init(make_settings(SENTRY_DSN=sentry.dsn, SENTRY_ENVIRONMENT="test"))
    error = DeadLetter(
        "Salesforce 400: REQUIRED_FIELD_MISSING",
        reason="REQUIRED_FIELD_MISSING",
        errors=[{"errorCode": "REQUIRED_FIELD_MISSING", "message": "m", "fields": ["Name"]}],
        status=400,
    )
    alerts.capture_dead_letter(error, "000000123")
    sentry_sdk.flush(timeout=5)
    [event] = sentry.wait_for(1)
    assert event["tags"]["order"] == "000000123"
    assert event["tags"]["reason"] == "REQUIRED_FIELD_MISSING"
    assert event["environment"] == "test"
    assert event["contexts"]["dead_letter"]["errors"][0]["fields"] == ["Name"]


def test_scrub_masks_exception_values_and_drops_request_bodies(sentry, make_settings):
    alerts.init(make_settings(SENTRY_DSN=sentry.dsn))
    secret = "eyJ" + "zecret.body.sig"  # built at run time: source context must not hold it
    try:
        raise RuntimeError(f"token request failed: assertion={secret}")
    except RuntimeError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=5)
    [event] = sentry.wait_for(1)
    assert event["exception"]["values"][0]["value"] == "token request failed: [Filtered]"
    assert all(secret.encode() not in raw for raw in sentry.raw())


def test_without_a_dsn_nothing_is_initialised(make_settings):
    assert alerts.init(make_settings()) is False


def test_frame_variables_never_reach_sentry(sentry, make_settings):
    alerts.init(make_settings(SENTRY_DSN=sentry.dsn))
    # Built at run time, so only a frame's variables (not its source lines) could carry it.
    form = {"grant_type": "jwt", "assertion": "eyJ" + "frame.local.variable"}

    try:
        raise ValueError("token endpoint refused the grant")
    except ValueError:
        sentry_sdk.capture_exception()
    sentry_sdk.flush(timeout=5)
    [event] = sentry.wait_for(1)
    assert event["exception"]["values"][0]["value"] == "token endpoint refused the grant"
    assert all(form["assertion"].encode() not in raw for raw in sentry.raw())


def test_logged_errors_are_breadcrumbs_not_events(sentry, make_settings):
    import logging

    alerts.init(make_settings(SENTRY_DSN=sentry.dsn))
    logging.getLogger("magsync.test").error("order dead-lettered", extra={"order": "000000777"})
    alerts.capture_dead_letter(DeadLetter("x", reason="INVALID_FIELD"), "000000777")
    sentry_sdk.flush(timeout=5)
    events = sentry.wait_for(2, timeout=3)
    assert len(events) == 1
    assert events[0]["tags"]["order"] == "000000777"
    crumbs = events[0]["breadcrumbs"]["values"]
    assert any(c.get("message") == "order dead-lettered" for c in crumbs)
