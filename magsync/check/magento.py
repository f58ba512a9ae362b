"""The Magento check: the store answers a signed ``GET /rest/V1/orders?searchCriteria[pageSize]=1``.

The request is signed exactly as the worker signs it (``MagentoClient``'s OAuth 1.0a,
HMAC-SHA256); Magento's refusal message says which of the four secrets is wrong.
"""

import re

import requests

from magsync.check.report import Finding
from magsync.magento.client import MagentoClient

PROBE = "/orders"
PROBE_PARAMS = {"searchCriteria[pageSize]": 1}
SUBJECT = "GET /rest/V1/orders?searchCriteria[pageSize]=1"


# Words of Magento's 401 message -> (cause, fix); the first match wins.
REFUSALS = (
    (
        "signature is invalid",
        "the signature does not match: a secret is wrong",
        "copy MAGENTO_CONSUMER_SECRET and MAGENTO_ACCESS_TOKEN_SECRET again from System > "
        "Integrations > the integration > Integration Details",
    ),
    (
        "consumer",
        "Magento knows no integration with this consumer key",
        "copy MAGENTO_CONSUMER_KEY again from the integration's details (reactivating an "
        "integration changes its secrets)",
    ),
    (
        "token",
        "Magento knows no such access token",
        "copy MAGENTO_ACCESS_TOKEN again from the integration's details",
    ),
    (
        "nonce",
        "Magento refused the request's timestamp: this machine's clock is off",
        "synchronise the clock (NTP)",
    ),
)
_NOT_ALLOWED = (
    "the integration may not read orders",
    "give the integration the Sales > Operations > Orders resource (System > Integrations > "
    "the integration > API), then activate it again and copy the new secrets",
)


def _message(response):
    """Magento's error message with its ``%name`` / ``%1`` parameters filled in."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:200].strip()
    if not isinstance(body, dict):
        return str(body)[:200]
    message, params = str(body.get("message") or ""), body.get("parameters") or {}
    if isinstance(params, list):
        params = {str(i + 1): v for i, v in enumerate(params)}
    return re.sub(r"%(\w+)", lambda m: str(params.get(m.group(1), m.group(0))), message)


def check_magento(ctx):
    settings = ctx.settings
    if not settings.magento_rest_enabled:
        yield Finding.skip(SUBJECT, "the store's REST API is not configured (see Settings)")
        return
    client = MagentoClient(settings)
    ctx.resource("magento", lambda: client.session)
    try:
        response = client.session.get(
            client.rest_url + PROBE,
            params=PROBE_PARAMS,
            auth=client.auth,
            headers={"Accept": "application/json"},
            timeout=settings.magento_timeout,
        )
    except requests.RequestException as exc:
        yield Finding.fail(
            SUBJECT,
            f"the store did not answer ({type(exc).__name__})",
            f"check MAGENTO_BASE_URL ({settings.magento_base_url}) and the network path to it",
        )
        return
    if response.status_code == 200:
        body = response.json()
        yield Finding.ok(
            SUBJECT,
            f"the store answered with a signed request ({body.get('total_count', '?')} orders)",
        )
        return
    said = _message(response)
    if response.status_code == 401:
        lowered = said.lower()
        cause, fix = _NOT_ALLOWED
        if "authorized" not in lowered:
            cause, fix = next(((c, f) for w, c, f in REFUSALS if w in lowered), _NOT_ALLOWED)
    elif response.status_code == 404:
        cause, fix = (
            "no REST API at this address",
            "check MAGENTO_BASE_URL (the store's base URL, without /rest) and MAGENTO_STORE_CODE",
        )
    else:
        cause, fix = (
            f"the store failed (HTTP {response.status_code})",
            "look at the store's exception log; run the check again once it answers",
        )
    yield Finding.fail(SUBJECT, f"{cause} (Magento said: {said})", fix)
