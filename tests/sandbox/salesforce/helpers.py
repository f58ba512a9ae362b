"""What the sandbox org's tests share besides fixtures: HTTPS sessions that trust the org's CA,
simple-salesforce clients in direct-session and JWT-login modes, JWT assertions, and the seed's
Opportunity as an upsert body."""

import time
from pathlib import Path

import jwt
import requests
import requests.adapters
from simple_salesforce import Salesforce

from tests.helpers import SEED_OPPORTUNITY

API = "58.0"
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"


def https_session(org):
    """A keep-alive session that verifies the org against its ca.pem."""
    session = requests.Session()
    session.verify = str(org.ca_path)
    # requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE from the environment override
    # Session.verify; a client of the sandbox has to opt out of that.
    session.trust_env = False
    return session


def direct_client(org, session, token):
    """simple-salesforce in direct-session mode, the way magsync uses it."""
    return Salesforce(instance_url=org.url, session_id=token, session=session, version=API)


def assertion(org, key_path=None, **claims):
    """A signed JWT bearer assertion for ``org``; ``claims`` override or (None) remove claims."""
    body = {
        "iss": org.client_id,
        "sub": org.username,
        "aud": "https://login.salesforce.com",
        "exp": int(time.time()) + 120,
    }
    body.update(claims)
    body = {k: v for k, v in body.items() if v is not None}
    key = Path(key_path or org.client_key_path).read_bytes()
    return jwt.encode(body, key, algorithm="RS256")


def token_request(org, session, data):
    return session.post(f"{org.url}/services/oauth2/token", data=data, timeout=10)


class LoginHostToOrg(requests.adapters.HTTPAdapter):
    """Sends what simple-salesforce addresses to https://login.salesforce.com to the org
    (its login modes always build the token URL from a ``*.salesforce.com`` domain)."""

    def __init__(self, org_url):
        super().__init__()
        self.org_url = org_url

    def send(self, request, **kwargs):
        request.url = request.url.replace("https://login.salesforce.com", self.org_url, 1)
        return super().send(request, **kwargs)


def login_client(org, session):
    """simple-salesforce in JWT-login mode (it can refresh its own session)."""
    session.mount("https://login.salesforce.com", LoginHostToOrg(org.url))
    return Salesforce(
        username=org.username,
        consumer_key=org.client_id,
        privatekey_file=str(org.client_key_path),
        session=session,
        version=API,
    )


def opportunity(**fields):
    """The seed's Opportunity as an upsert body (no external-id field), with ``fields`` changed."""
    body = {k: v for k, v in SEED_OPPORTUNITY.items() if k != "Magento_Order_ID__c"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not None}
