"""Injected faults and latency, set in-process and through the control API."""

import json
import socket
import ssl
import time
from urllib.parse import urlsplit

import pytest
import requests
from simple_salesforce.exceptions import (
    SalesforceAuthenticationFailed,
    SalesforceGeneralError,
    SalesforceMalformedRequest,
    SalesforceRefusedRequest,
)

from magsync.sandbox.salesforce import ControlClient
from magsync.sandbox.salesforce.faults import FaultError
from tests.helpers import wait_for
from tests.sandbox.salesforce.helpers import login_client, opportunity

UPSERT = "Magento_Order_ID__c/000000123"

# (spec, status, content type, body check, simple-salesforce exception)
KINDS = [
    (
        {"kind": "unavailable"},
        503,
        "text/html",
        lambda b: "Service Unavailable" in b,
        SalesforceGeneralError,
    ),
    (
        {"kind": "unknown_exception"},
        500,
        "application/json",
        lambda b: '"errorCode":"UNKNOWN_EXCEPTION"' in b,
        SalesforceGeneralError,
    ),
    (
        {"kind": "unable_to_lock_row"},
        400,
        "application/json",
        lambda b: '"errorCode":"UNABLE_TO_LOCK_ROW"' in b,
        SalesforceMalformedRequest,
    ),
    (
        {"kind": "throttled"},
        429,
        "application/json",
        lambda b: "Too Many Requests" in b,
        SalesforceGeneralError,
    ),
    (
        {"kind": "request_limit"},
        403,
        "application/json",
        lambda b: (
            b
            == '[{"message":"TotalRequests Limit exceeded.","errorCode":"REQUEST_LIMIT_EXCEEDED"}]'
        ),
        SalesforceRefusedRequest,
    ),
    (
        {"kind": "request_limit", "limit": "ConcurrentPerOrgLongTxn"},
        403,
        "application/json",
        lambda b: "ConcurrentPerOrgLongTxn Limit exceeded." in b,
        SalesforceRefusedRequest,
    ),
    (
        {
            "kind": "status",
            "status": 502,
            "body": "<html>Bad Gateway</html>",
            "content_type": "text/html",
        },
        502,
        "text/html",
        lambda b: b == "<html>Bad Gateway</html>",
        SalesforceGeneralError,
    ),
]


@pytest.mark.parametrize(("spec", "status", "content_type", "check", "exception"), KINDS)
def test_fault_kinds(org, sf, data, spec, status, content_type, check, exception):
    org.add_fault(spec, method="PATCH", path="/services/data/v58.0/sobjects/Opportunity/")
    response = data("PATCH", f"sobjects/Opportunity/{UPSERT}", json=opportunity())
    assert response.status_code == status
    assert response.headers["Content-Type"].startswith(content_type)
    assert check(response.text)
    assert response.headers["Sforce-Limit-Info"] == "api-usage=0/5000000"
    with pytest.raises(exception):
        sf.Opportunity.upsert(UPSERT, opportunity())
    assert org.records("Opportunity") == []
    assert data("GET", "limits").status_code == 200  # other methods and paths pass
    stats = org.stats()
    assert stats["faults_fired"] == 2
    assert stats["calls_by_kind"] == {"limits": 1}


def test_count_after_and_removal(org, sf):
    rule = org.add_fault(
        kind="unavailable",
        count=2,
        after=1,
        path_regex=r"/sobjects/Opportunity/Magento_Order_ID__c/",
    )
    assert sf.Opportunity.upsert(UPSERT, opportunity()) == 201
    for _ in range(2):
        with pytest.raises(SalesforceGeneralError):
            sf.Opportunity.upsert(UPSERT, opportunity())
    assert sf.Opportunity.upsert(UPSERT, opportunity()) == 200
    (described,) = org.fault_rules()
    assert (described["id"], described["fired"], described["count"], described["after"]) == (
        rule["id"],
        2,
        2,
        1,
    )
    assert org.remove_fault(rule["id"]) is True
    assert org.fault_rules() == []


@pytest.mark.parametrize(
    ("probability", "low", "high"), [(0.0, 0, 0), (0.5, 60, 140), (1.0, 200, 200)]
)
def test_probability(org, data, probability, low, high):
    org.add_fault(kind="throttled", probability=probability, path="/services/data/v58.0/limits")
    throttled = sum(data("GET", "limits").status_code == 429 for _ in range(200))
    assert low <= throttled <= high


def answer_before_close(org, token, method, path, body):
    """Every byte the org sends back to ``method path`` before it closes the connection.

    A client with no timeout to speak of (10 s): it sees how a held request ends.
    """
    url = urlsplit(org.url)
    payload = json.dumps(body).encode()
    request = (
        f"{method} {path} HTTP/1.1\r\nHost: {url.netloc}\r\nAuthorization: Bearer {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    context = ssl.create_default_context(cafile=str(org.ca_path))
    received = b""
    with (
        socket.create_connection((url.hostname, url.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname=url.hostname) as tls,
    ):
        tls.sendall(request + payload)
        while chunk := tls.recv(65536):
            received += chunk
    return received


def test_hang_past_the_client_timeout_then_close(org, data, session, token):
    path = f"/services/data/v58.0/sobjects/Opportunity/{UPSERT}"
    org.add_fault(kind="hang", seconds=1.0, path="/services/data/v58.0/sobjects/Opportunity/")
    # An answer or a close before the client's timeout would return or raise ConnectionError.
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.patch(
            f"{org.url}{path}",
            json=opportunity(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.3,
        )
    # A client that outwaits the hang sees its end: the connection closed, no answer, no write.
    assert answer_before_close(org, token, "PATCH", path, opportunity()) == b""
    assert org.records("Opportunity") == []
    assert data("GET", "limits").status_code == 200


def test_hang_then_proceed_lands_the_write_the_client_gave_up_on(org, data, session, token):
    org.add_fault(kind="hang", seconds=0.5, then="proceed", count=1)
    with pytest.raises(requests.exceptions.ReadTimeout):
        session.patch(
            f"{org.url}/services/data/v58.0/sobjects/Opportunity/{UPSERT}",
            json=opportunity(),
            headers={"Authorization": f"Bearer {token}"},
            timeout=0.2,
        )
    wait_for(lambda: org.records("Opportunity"), timeout=10, what="the held write to land")
    assert len(org.records("Opportunity")) == 1
    assert data("PATCH", f"sobjects/Opportunity/{UPSERT}", json=opportunity()).status_code == 200


def test_hang_then_respond(org, data):
    org.add_fault(
        kind="hang",
        seconds=0.3,
        then="respond",
        status=503,
        body="<html>timeout</html>",
        content_type="text/html",
    )
    started = time.monotonic()
    response = data("GET", "limits")
    assert time.monotonic() - started >= 0.3
    assert (response.status_code, response.text) == (503, "<html>timeout</html>")


def test_drop_closes_without_an_answer(org, data):
    org.add_fault(kind="drop", count=1, method="POST")
    with pytest.raises(requests.exceptions.ConnectionError):
        data("POST", "sobjects/Account", json={"Name": "Acme"})
    assert org.records("Account") == []
    assert data("POST", "sobjects/Account", json={"Name": "Acme"}).status_code == 201


def test_faults_on_the_token_endpoint(org, session):
    org.add_fault(kind="unavailable", path="/services/oauth2/token", count=1)
    with pytest.raises(SalesforceAuthenticationFailed) as failed:
        login_client(org, session)
    assert failed.value.code == 503
    assert login_client(org, session).session_id
    assert org.stats()["token_requests"] == {"jwt-bearer": 2}


def test_latency_and_jitter(org, data):
    org.set_latency(150)
    started = time.monotonic()
    data("GET", "limits")
    assert time.monotonic() - started >= 0.15
    org.set_latency(20, jitter_ms=60)
    durations = []
    for _ in range(5):
        started = time.monotonic()
        data("GET", "limits")
        durations.append(time.monotonic() - started)
    assert min(durations) >= 0.02
    # Each call is held the latency plus a uniform share of the jitter (timing calls over HTTP
    # on a busy machine would measure the machine, not the org).
    delays = [org.delay() for _ in range(200)]
    assert all(0.02 <= delay <= 0.08 for delay in delays)
    assert max(delays) - min(delays) > 0.03
    org.set_latency(0)


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "explode"},
        {"kind": "hang", "then": "later"},
        {"probability": 2},
        {"path_regex": "("},
        {"colour": "red"},
    ],
)
def test_bad_fault_rules(org, spec):
    with pytest.raises(FaultError):
        org.add_fault(spec)


def test_control_api_from_another_process(org, data):
    with ControlClient(org.url, org.ca_path) as control:
        assert control.settings() == org.settings()
        rule = control.add_fault(kind="unavailable", path="/services/data/v58.0/limits")
        assert control.fault_rules()[0]["id"] == rule["id"]
        assert data("GET", "limits").status_code == 503
        assert control.remove_fault(rule["id"]) is True
        assert control.remove_fault(rule["id"]) is False
        control.add_fault(kind="drop")  # the control API itself is never faulted
        control.clear_faults()
        assert control.set_latency(5, 5) == {"latency_ms": 5.0, "jitter_ms": 5.0}
        control.set_latency(0)
        ids = control.insert("Account", [{"Name": "Acme"}])
        assert [r["Id"] for r in control.records("Account")] == ids
        assert data("GET", "limits").status_code == 200
        assert control.expire_tokens() == 1
        assert data("GET", "limits").status_code == 401
        fresh = control.issue_access_token()
        assert data("GET", "limits", token_override=fresh).status_code == 200
        assert control.issue_refresh_token().startswith("5Aep861")
        control.revoke_user()
        assert not org.sessions.authorized(org.username)
        control.restore_user()
        assert control.set_limits(daily_limit=10) == {
            "daily_limit": 10,
            "max_in_flight": 25,
            "api_usage": 2,
        }
        assert control.set_token_ttl(60) == {"token_ttl": 60.0}
        stats = control.stats()
        assert stats["calls_by_kind"] == {"limits": 2}
        control.reset_stats()
        assert (control.stats()["api_calls"], control.stats()["api_usage"]) == (0, 0)
        assert len(control.records("Account")) == 1
        control.reset()
        assert control.records("Account") == []
        assert control.stats()["api_usage"] == 0
        assert org.daily_limit == 5_000_000
        assert (
            data("GET", "limits", token_override=fresh).status_code == 200
        )  # tokens survive a reset


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "faults", {"kind": "explode"}, 400),
        ("POST", "token-ttl", {}, 400),
        ("GET", "records/Widget__c", None, 404),
        ("POST", "records/Account", {"records": [{"Phone": "1"}]}, 400),
        ("DELETE", "faults/fault-unknown", None, 404),
        ("POST", "users/someone@example.com/revoke", None, 404),
        ("GET", "nothing-here", None, 404),
        ("POST", "latency", "not json", 400),
    ],
)
def test_control_api_refusals(org, session, method, path, body, status):
    kwargs = {"data": body} if isinstance(body, str) else {"json": body}
    response = session.request(method, f"{org.url}/_sandbox/{path}", timeout=10, **kwargs)
    assert response.status_code == status
    assert "error" in response.json()
