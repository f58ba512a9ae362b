"""The daily allowance, the in-flight cap, and ``Sforce-Limit-Info`` on every data response."""

import re
import threading

import pytest
from simple_salesforce.exceptions import SalesforceRefusedRequest

from tests.sandbox.salesforce.helpers import direct_client, https_session, opportunity

LIMIT_INFO = re.compile(r"^api-usage=\d+/\d+$")


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status"),
    [
        ("GET", "limits", {}, 200),
        ("POST", "sobjects/Account", {"json": {"Name": "Acme"}}, 201),
        ("PATCH", "sobjects/Opportunity/Magento_Order_ID__c/1", {"json": opportunity()}, 201),
        ("POST", "sobjects/Account", {"json": {}}, 400),
        (
            "POST",
            "sobjects/Account",
            {"data": "Name=Acme", "headers": {"Content-Type": "text/plain"}},
            415,
        ),
        ("GET", "sobjects/Account/001A0000006Vm9rIAC", {}, 404),
        ("GET", "no/such/resource", {}, 404),
        ("PUT", "sobjects/Account", {"json": {}}, 405),
        ("GET", "query", {"params": {"q": "SELECT"}}, 400),
        ("GET", "limits", {"token_override": "00Dxx!expired"}, 401),
    ],
)
def test_every_data_response_carries_the_limit_header(data, method, path, kwargs, status):
    response = data(method, path, **kwargs)
    assert response.status_code == status
    assert LIMIT_INFO.match(response.headers["Sforce-Limit-Info"])


def test_usage_counts_each_call(org, data, sf):
    assert data("GET", "limits").headers["Sforce-Limit-Info"] == "api-usage=1/5000000"
    # simple-salesforce keeps the usage on the SFType object that made the call, and
    # ``sf.Opportunity`` builds a new one on every attribute access.
    opportunities = sf.Opportunity
    opportunities.upsert("Magento_Order_ID__c/1", opportunity())
    assert opportunities.api_usage["api-usage"].used == 2
    assert (
        data("POST", "sobjects/Account", json={}).headers["Sforce-Limit-Info"]
        == "api-usage=3/5000000"
    )
    assert org.stats()["calls_by_kind"] == {"limits": 1, "upsert": 1, "create": 1}


def test_daily_allowance(org_factory):
    org = org_factory(daily_limit=3)
    with https_session(org) as session:
        sf = direct_client(org, session, org.issue_access_token())
        for _ in range(3):
            sf.limits()
        with pytest.raises(SalesforceRefusedRequest) as refused:
            sf.Account.create({"Name": "Acme"})
        assert refused.value.status == 403
        assert refused.value.content == [
            {"message": "TotalRequests Limit exceeded.", "errorCode": "REQUEST_LIMIT_EXCEEDED"}
        ]
        response = session.get(
            f"{org.url}/services/data/v58.0/limits",
            headers={"Authorization": f"Bearer {org.issue_access_token()}"},
            timeout=10,
        )
        assert response.status_code == 403
        assert response.headers["Sforce-Limit-Info"] == "api-usage=3/3"
        assert org.records("Account") == []
        assert org.stats()["rejected"] == {"TotalRequests": 2}
        org.set_limits(daily_limit=4)
        accounts = sf.Account
        assert accounts.create({"Name": "Acme"})["success"]
        assert accounts.api_usage["api-usage"] == (4, 4)


def test_usage_can_be_set_near_the_limit(org, sf):
    org.set_limits(api_usage=4_999_999)
    sf.limits()
    with pytest.raises(SalesforceRefusedRequest):
        sf.limits()


def test_concurrent_requests_past_the_cap(org_factory):
    org = org_factory(max_in_flight=2, latency_ms=800)
    token = org.issue_access_token()
    barrier = threading.Barrier(4)
    answers = []

    def call():
        with https_session(org) as session:
            # Connect first so that the four requests reach the org together.
            session.get(f"{org.url}/services/data/", timeout=10)
            barrier.wait()
            response = session.get(
                f"{org.url}/services/data/v58.0/limits",
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            answers.append(
                (response.status_code, response.json(), response.headers.get("Sforce-Limit-Info"))
            )

    threads = [threading.Thread(target=call) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(status for status, _, _ in answers)
    assert statuses == [200, 200, 403, 403]
    refusals = [body for status, body, _ in answers if status == 403]
    assert (
        refusals
        == [
            [
                {
                    "message": "ConcurrentPerOrgLongTxn Limit exceeded.",
                    "errorCode": "REQUEST_LIMIT_EXCEEDED",
                }
            ]
        ]
        * 2
    )
    assert all(LIMIT_INFO.match(info) for _, _, info in answers)
    stats = org.stats()
    assert stats["rejected"] == {"ConcurrentPerOrgLongTxn": 2}
    assert stats["in_flight_peak"] == 2
    assert stats["api_calls"] == 2
