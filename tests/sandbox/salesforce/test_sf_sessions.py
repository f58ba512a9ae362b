"""Sessions: 401 INVALID_SESSION_ID for expired or unknown tokens, and what simple-salesforce
1.12.10 does with it in direct-session mode (magsync's) and in its own login modes."""

import time

import pytest
from simple_salesforce.exceptions import SalesforceAuthenticationFailed, SalesforceExpiredSession

from tests.sandbox.salesforce.helpers import direct_client, login_client, opportunity

INVALID_SESSION = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer 00Dxx0000000001!AQunknown", "OAuth 00Dxx0000000001!AQunknown", "Bearer "],
)
def test_unknown_or_missing_token_is_401_list(org, session, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    response = session.get(f"{org.url}/services/data/v58.0/limits", headers=headers, timeout=10)
    assert response.status_code == 401
    assert response.json() == INVALID_SESSION
    assert response.headers["Sforce-Limit-Info"] == "api-usage=0/5000000"
    assert response.headers["WWW-Authenticate"] == "Token"


def test_malformed_authorization_header(org, session):
    response = session.get(
        f"{org.url}/services/data/v58.0/limits", headers={"Authorization": "Basic abc"}, timeout=10
    )
    assert response.status_code == 401
    assert response.json() == [
        {"message": "INVALID_HEADER_TYPE", "errorCode": "INVALID_AUTH_HEADER"}
    ]


def test_token_expires_after_ttl(org_factory, data):
    org = org_factory(token_ttl=1.0)
    token = org.issue_access_token()
    assert (
        data("GET", f"{org.url}/services/data/v58.0/limits", token_override=token).status_code
        == 200
    )
    time.sleep(1.1)
    expired = data("GET", f"{org.url}/services/data/v58.0/limits", token_override=token)
    assert expired.status_code == 401
    assert expired.json() == INVALID_SESSION


def test_expire_tokens_now(org, data):
    assert data("GET", "limits").status_code == 200
    assert org.expire_tokens() == 1
    assert data("GET", "limits").json() == INVALID_SESSION


def test_token_ttl_can_change_while_running(org, data):
    assert data("GET", "limits").status_code == 200
    org.set_token_ttl(0)
    assert data("GET", "limits").status_code == 401


def test_direct_session_mode_raises_once_without_refreshing(org, sf):
    """With a session id simple-salesforce has no way to log in again: one 401, no token request,
    no retry loop. magsync refreshes the token itself and builds a new client."""
    org.expire_tokens()
    with pytest.raises(SalesforceExpiredSession) as expired:
        sf.Opportunity.upsert("Magento_Order_ID__c/000000123", opportunity())
    assert expired.value.status == 401
    assert expired.value.content == INVALID_SESSION
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Opportunity")
    stats = org.stats()
    assert stats["rejected"] == {"INVALID_SESSION_ID": 2}
    assert stats["responses"] == {"401": 2}
    assert stats["token_requests_total"] == 0


def test_a_fresh_token_works_after_expiry(org, session, sf):
    org.expire_tokens()
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Opportunity")
    again = direct_client(org, session, org.issue_access_token())
    assert again.query("SELECT Id FROM Opportunity")["totalSize"] == 0


def test_login_mode_refreshes_once_after_expiry(org, session):
    sf = login_client(org, session)
    org.expire_tokens()
    assert sf.Opportunity.upsert("Magento_Order_ID__c/000000123", opportunity()) == 201
    stats = org.stats()
    assert stats["token_requests"] == {"jwt-bearer": 2}
    assert stats["responses"] == {"200": 2, "201": 1, "401": 1}  # two token grants
    assert len(org.records("Opportunity")) == 1


def test_login_mode_query_gives_up_after_three_refreshes(org_factory, session):
    """Salesforce._call_salesforce counts its retries: with sessions that never last it
    refreshes three times and then raises."""
    org = org_factory(token_ttl=0)
    sf = login_client(org, session)
    with pytest.raises(SalesforceExpiredSession):
        sf.query("SELECT Id FROM Opportunity")
    stats = org.stats()
    assert stats["rejected"] == {"INVALID_SESSION_ID": 4}
    assert stats["token_requests"] == {"jwt-bearer": 5}


def test_login_mode_record_calls_do_not_stop_refreshing(org_factory, session):
    """SFType._call_salesforce drops its retry count when it recurses (simple-salesforce issue
    804): it refreshes for as long as the org grants tokens, far past the three retries of the
    query path. Here the token endpoint starts refusing after ten refreshes, which is what ends
    the loop."""
    org = org_factory(token_ttl=0)
    sf = login_client(org, session)
    org.add_fault(
        path="/services/oauth2/token",
        after=10,
        kind="status",
        status=400,
        body={"error": "invalid_grant", "error_description": "expired authorization code"},
    )
    with pytest.raises(SalesforceAuthenticationFailed):
        sf.Opportunity.upsert("Magento_Order_ID__c/000000123", opportunity())
    stats = org.stats()
    assert stats["token_requests"] == {"jwt-bearer": 1 + 10 + 1}
    assert stats["rejected"] == {"INVALID_SESSION_ID": 11}
    assert stats["faults_fired"] == 1
