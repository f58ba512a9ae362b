"""Fixtures for the sandbox Salesforce org: the org on a free port, an HTTPS session that trusts
its CA, an access token, a simple-salesforce client in direct-session mode, and raw data calls."""

import pytest

from tests.sandbox.salesforce.helpers import API, direct_client, https_session


@pytest.fixture
def org(org_factory):
    return org_factory()


@pytest.fixture
def session(org):
    with https_session(org) as s:
        yield s


@pytest.fixture
def token(org):
    return org.issue_access_token()


@pytest.fixture
def sf(org, session, token):
    return direct_client(org, session, token)


@pytest.fixture
def data(org, session, token):
    """``data(method, path, **kwargs)``: a raw request to ``/services/data/v58.0/<path>``."""

    def call(method, path, token_override=None, **kwargs):
        headers = {
            "Authorization": f"Bearer {token_override or token}",
            **kwargs.pop("headers", {}),
        }
        url = path if path.startswith("https://") else f"{org.url}/services/data/v{API}/{path}"
        return session.request(method, url, headers=headers, timeout=10, **kwargs)

    return call
