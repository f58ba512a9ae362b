"""The token endpoint: the JWT bearer and refresh-token grants, answered as Salesforce does."""

import time

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from simple_salesforce.exceptions import SalesforceAuthenticationFailed

from tests.sandbox.salesforce.helpers import JWT_GRANT, assertion, login_client, token_request


def test_jwt_grant_answers_like_salesforce(org, session):
    response = token_request(org, session, {"grant_type": JWT_GRANT, "assertion": assertion(org)})
    assert response.status_code == 200
    body = response.json()
    assert list(body) == ["access_token", "scope", "instance_url", "id", "token_type"]
    assert body["instance_url"] == org.url
    assert body["token_type"] == "Bearer"
    assert body["id"] == f"{org.url}/id/{org.org_id}/{org.user_id}"
    assert body["access_token"].startswith(org.org_id[:15] + "!")
    probe = session.get(
        f"{org.url}/services/data/v58.0/limits",
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=10,
    )
    assert probe.status_code == 200


@pytest.mark.parametrize("exp", [lambda now: now + 170, lambda now: str(now + 170)])
def test_exp_as_number_or_digit_string(org, session, exp):
    claim = exp(int(time.time()))
    response = token_request(
        org, session, {"grant_type": JWT_GRANT, "assertion": assertion(org, exp=claim)}
    )
    assert response.status_code == 200


@pytest.fixture(scope="module")
def stranger_key(tmp_path_factory):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path_factory.mktemp("stranger") / "key.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


# (case, claims(org, now), signed by a stranger's key, error, description)
JWT_ERRORS = [
    ("foreign key", lambda org, now: {}, True, "invalid_grant", "invalid assertion"),
    (
        "unknown iss",
        lambda org, now: {"iss": "3MVG9x"},
        False,
        "invalid_client_id",
        "client identifier invalid",
    ),
    (
        "instance aud",
        lambda org, now: {"aud": org.url},
        False,
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "other aud",
        lambda org, now: {"aud": "https://example.com"},
        False,
        "invalid_grant",
        "audience is invalid",
    ),
    (
        "expired",
        lambda org, now: {"exp": now - 10},
        False,
        "invalid_grant",
        "expired authorization code",
    ),
    (
        "too far",
        lambda org, now: {"exp": now + 600},
        False,
        "invalid_grant",
        "expired authorization code",
    ),
    (
        "exp in ms",
        lambda org, now: {"exp": now * 1000},
        False,
        "invalid_grant",
        "expired authorization code",
    ),
    ("no exp", lambda org, now: {"exp": None}, False, "invalid_grant", "invalid assertion"),
    ("exp text", lambda org, now: {"exp": "soon"}, False, "invalid_grant", "invalid assertion"),
    (
        "unknown sub",
        lambda org, now: {"sub": "nobody@example.com"},
        False,
        "invalid_grant",
        "user hasn't approved this consumer",
    ),
]


@pytest.mark.parametrize(
    ("claims", "foreign", "error", "description"),
    [case[1:] for case in JWT_ERRORS],
    ids=[case[0] for case in JWT_ERRORS],
)
def test_jwt_grant_errors(org, session, stranger_key, claims, foreign, error, description):
    signed = assertion(org, stranger_key if foreign else None, **claims(org, int(time.time())))
    response = token_request(org, session, {"grant_type": JWT_GRANT, "assertion": signed})
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


@pytest.mark.parametrize(
    ("form", "error", "description"),
    [
        ({"grant_type": JWT_GRANT, "assertion": "not-a-jwt"}, "invalid_grant", "invalid assertion"),
        ({"grant_type": JWT_GRANT}, "invalid_grant", "invalid assertion"),
        (
            {"grant_type": "password", "username": "x"},
            "unsupported_grant_type",
            "grant type not supported",
        ),
        ({}, "unsupported_grant_type", "grant type not supported"),
    ],
)
def test_malformed_token_requests(org, session, form, error, description):
    response = token_request(org, session, form)
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_token_request_must_be_a_post(org, session):
    response = session.get(f"{org.url}/services/oauth2/token", timeout=10)
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"


def test_json_body_is_not_a_token_request(org, session):
    response = session.post(
        f"{org.url}/services/oauth2/token",
        json={"grant_type": JWT_GRANT, "assertion": assertion(org)},
        timeout=10,
    )
    assert response.status_code == 400
    assert response.json()["error"] == "unsupported_grant_type"


def test_revoked_user_fails_until_restored(org, session):
    form = {"grant_type": JWT_GRANT, "assertion": assertion(org)}
    org.revoke_user()
    refused = token_request(org, session, form)
    assert refused.status_code == 400
    assert refused.json() == {
        "error": "invalid_grant",
        "error_description": "user hasn't approved this consumer",
    }
    org.restore_user()
    assert token_request(org, session, form).status_code == 200


def test_refresh_token_grant(org, session):
    refresh = org.issue_refresh_token()
    form = {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": org.client_id}
    response = token_request(org, session, form)
    assert response.status_code == 200
    body = response.json()
    assert {
        "access_token",
        "signature",
        "scope",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    } == set(body)
    assert "refresh_token" not in body
    with_secret = token_request(org, session, {**form, "client_secret": org.client_secret})
    assert with_secret.status_code == 200


@pytest.mark.parametrize(
    ("change", "error", "description"),
    [
        ({"refresh_token": "5Aep861unknown"}, "invalid_grant", "expired access/refresh token"),
        ({"client_id": "3MVG9other"}, "invalid_client_id", "client identifier invalid"),
        ({"client_secret": "wrong"}, "invalid_client", "invalid client credentials"),
        ({"revoke": True}, "invalid_grant", "expired access/refresh token"),
    ],
)
def test_refresh_token_errors(org, session, change, error, description):
    form = {
        "grant_type": "refresh_token",
        "refresh_token": org.issue_refresh_token(),
        "client_id": org.client_id,
    }
    if change.pop("revoke", False):
        org.revoke_user()
        org.restore_user()
    form.update(change)
    response = token_request(org, session, form)
    assert response.status_code == 400
    assert response.json() == {"error": error, "error_description": description}


def test_token_requests_are_counted_by_grant_and_not_against_the_allowance(org, session):
    for _ in range(3):
        token_request(org, session, {"grant_type": JWT_GRANT, "assertion": assertion(org)})
    token_request(org, session, {"grant_type": JWT_GRANT, "assertion": "bad"})
    refresh = org.issue_refresh_token()
    token_request(
        org,
        session,
        {"grant_type": "refresh_token", "refresh_token": refresh, "client_id": org.client_id},
    )
    stats = org.stats()
    assert stats["token_requests"] == {"jwt-bearer": 4, "refresh_token": 1}
    assert stats["token_requests_total"] == 5
    assert stats["token_errors"] == {"invalid_grant": 1}
    assert stats["api_usage"] == 0
    assert stats["api_calls"] == 0


def test_simple_salesforce_jwt_login_mode(org, session):
    sf = login_client(org, session)
    assert sf.sf_instance == org.url.removeprefix("https://")
    assert sf.query("SELECT Id FROM Pricebook2 WHERE IsStandard = true")["totalSize"] == 1
    assert org.stats()["token_requests"] == {"jwt-bearer": 1}


def test_simple_salesforce_login_with_revoked_user(org, session):
    org.revoke_user()
    # simple-salesforce adds a warning that tells how to authorize the app interactively.
    with (
        pytest.warns(UserWarning, match="self-authorize"),
        pytest.raises(SalesforceAuthenticationFailed) as failed,
    ):
        login_client(org, session)
    assert failed.value.code == "invalid_grant"
