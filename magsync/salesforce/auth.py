"""Salesforce access tokens for long-running workers.

Two grants, chosen by which settings are present:

- JWT bearer (the default): an RS256 assertion ``{iss: client id, sub: username, aud: login or
  test URL, exp: now + 3 min}`` signed with the connected app's private key
  (``SALESFORCE_PRIVATE_KEY_PATH`` or the PEM itself in ``SALESFORCE_PRIVATE_KEY``);
- refresh token (web-server flow): ``SALESFORCE_REFRESH_TOKEN`` with the client id and secret.

``TokenProvider`` keeps one token per process, shared by its threads; ``refresh(stale)`` asks the
token endpoint once however many callers saw the same stale token (single flight). Failures
raise ``AuthenticationFailed`` (a ``RetryLater``: the order waits and is retried) with the
endpoint's error code as ``reason`` and its description in ``errors``, never the token or the key.

A failure starts an *episode*: it is logged each time, reported to Sentry once, and for
``SALESFORCE_TOKEN_RETRY_INTERVAL`` seconds callers get the same failure without another token
request (Salesforce allows 3,600 logins per user per hour and blocks addresses that keep
failing). The episode ends with the first call Salesforce accepts (``accepted()``).

``explain(error)`` turns a failure into the cause and the fix, in plain words, for
``magsync check`` and ``magsync worker``.
"""

import logging
import os
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests

from magsync import alerts
from magsync.errors import AuthenticationFailed
from magsync.settings import ConfigError

log = logging.getLogger(__name__)

TOKEN_PATH = "/services/oauth2/token"  # noqa: S105 - a URL path, not a secret
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
ASSERTION_LIFETIME = 180  # Salesforce accepts an exp at most 3 minutes ahead


@dataclass(frozen=True)
class Token:
    access_token: str = field(repr=False)
    instance_url: str
    issued_at: float


def load_private_key(settings):
    """The connected app's PEM private key, from the setting or the file it names."""
    if settings.sf_private_key:
        # Hosts without files keep the PEM in one environment variable, often with "\n" escapes.
        return settings.sf_private_key.replace("\\n", "\n")
    try:
        with open(settings.sf_private_key_path, encoding="ascii") as handle:
            return handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        cause = getattr(exc, "strerror", None) or "not a text file"
        raise ConfigError(
            f"SALESFORCE_PRIVATE_KEY_PATH cannot be read: {cause} ({settings.sf_private_key_path})"
        ) from None


class JwtBearerGrant:
    """The OAuth 2.0 JWT bearer flow."""

    name = "jwt-bearer"

    def __init__(self, settings):
        self.settings = settings
        self.private_key = load_private_key(settings)

    def form(self):
        now = int(time.time())
        claims = {
            "iss": self.settings.sf_client_id,
            "sub": self.settings.sf_username,
            "aud": self.settings.sf_token_audience,
            "exp": now + ASSERTION_LIFETIME,
        }
        try:
            assertion = jwt.encode(claims, self.private_key, algorithm="RS256")
        except (ValueError, TypeError, jwt.PyJWTError) as exc:
            # The key's content must never reach a log: report its kind of failure only.
            raise ConfigError(
                f"the Salesforce private key is not a usable RSA PEM key ({type(exc).__name__})"
            ) from None
        return {"grant_type": JWT_GRANT, "assertion": assertion}


class RefreshTokenGrant:
    """The web-server flow's refresh token."""

    name = "refresh-token"

    def __init__(self, settings):
        self.settings = settings

    def form(self):
        return {
            "grant_type": "refresh_token",
            "refresh_token": self.settings.sf_refresh_token,
            "client_id": self.settings.sf_client_id,
            "client_secret": self.settings.sf_client_secret,
        }


def grant_for(settings):
    """The grant the settings configure; ``ConfigError`` naming what is missing otherwise."""
    if settings.sf_refresh_token:
        settings.require("sf_client_id", "sf_client_secret")
        return RefreshTokenGrant(settings)
    settings.require("sf_client_id", "sf_username")
    if not (settings.sf_private_key or settings.sf_private_key_path):
        raise ConfigError(
            "missing required settings: SALESFORCE_PRIVATE_KEY_PATH or SALESFORCE_PRIVATE_KEY "
            "(the connected app's private key for the JWT bearer flow)"
        )
    return JwtBearerGrant(settings)


class TokenProvider:
    """One access token per process; thread-safe, refreshed once for many callers.

    ``current()`` and ``refresh(stale)`` return a ``Token`` or raise ``AuthenticationFailed``;
    ``refused(token, errors)`` is the failure for a token Salesforce rejects right after issuing
    it; ``accepted()`` tells the provider a call went through (ending a failure episode).
    """

    def __init__(self, settings, session, grant=None, clock=time.monotonic):
        self.settings = settings
        self.session = session
        self.grant = grant or grant_for(settings)
        self.clock = clock
        self._token = None
        self._lock = threading.Lock()
        self._failure = None  # (AuthenticationFailed, clock time) of the last failed request
        self._failing = False  # an episode is open: reported, not yet ended by a good call
        self.requests_made = 0

    def current(self):
        """The process's token, fetching one if there is none yet."""
        token = self._token
        if token is not None:
            return token
        return self.refresh(None)

    def refresh(self, stale):
        """A token newer than ``stale``; only the first caller to see ``stale`` fetches one.

        Within ``SALESFORCE_TOKEN_RETRY_INTERVAL`` of a failed request, callers (including the
        ones that queued behind it) get that failure again without a request.
        """
        with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token
            self._token = None
            held = self._held_failure()
            if held is not None:
                raise held
            try:
                self._token = self._request()
            except AuthenticationFailed as exc:
                self._failed(exc)
                raise
            self._failure = None
            return self._token

    def refused(self, token, errors):
        """The ``AuthenticationFailed`` for a token Salesforce refused right after issuing it."""
        error = AuthenticationFailed(
            "Salesforce refused a freshly issued token",
            reason="INVALID_SESSION_ID",
            errors=errors,
            status=401,
        )
        with self._lock:
            if self._token is token:
                self._token = None
            self._failed(error)
        return error

    def accepted(self):
        """A call with the process's token went through: a failure episode, if any, is over."""
        if not self._failing:
            return
        with self._lock:
            if not self._failing:
                return
            self._failing = False
            self._failure = None
        log.info("salesforce authentication recovered", extra={"grant": self.grant.name})

    def invalidate(self):
        with self._lock:
            self._token = None

    # -- inside the lock -----------------------------------------------------------------------

    def _held_failure(self):
        if self._failure is None:
            return None
        error, at = self._failure
        if self.clock() - at >= self.settings.sf_token_retry_interval:
            return None
        # A new instance per raise: one exception object raised in many threads would keep
        # growing a shared traceback.
        return AuthenticationFailed(
            str(error), reason=error.reason, errors=error.errors, status=error.status
        )

    def _failed(self, error):
        self._failure = (error, self.clock())
        description = next(iter(error.errors), {}).get("message") or ""
        context = {
            "grant": self.grant.name,
            "reason": error.reason,
            "description": description,
            "status": error.status,
            "first_in_episode": not self._failing,
        }
        # WARNING, not ERROR: Sentry's logging integration turns errors into events, and the
        # episode is reported once, below, not once per order.
        log.warning("salesforce authentication failed", extra=context)
        if not self._failing:
            self._failing = True
            alerts.capture_auth_failure(error, self.grant.name, os.getpid())

    def _request(self):
        url = self.settings.sf_login_url + TOKEN_PATH
        self.requests_made += 1
        try:
            response = self.session.post(
                url,
                data=self.grant.form(),
                headers={"Accept": "application/json"},
                timeout=self.settings.sf_timeout,
            )
        except requests.RequestException as exc:
            raise AuthenticationFailed(
                f"Salesforce token endpoint unreachable: {type(exc).__name__}",
                reason="token_endpoint_unreachable",
                errors=[{"errorCode": None, "message": type(exc).__name__, "fields": []}],
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error") or f"http_{response.status_code}"
            description = body.get("error_description") or ""
            raise AuthenticationFailed(
                f"Salesforce refused the {self.grant.name} grant: {error} {description}".strip(),
                reason=error,
                errors=[{"errorCode": error, "message": description, "fields": []}],
                status=response.status_code,
            )
        log.info("salesforce token obtained", extra={"grant": self.grant.name})
        return Token(body["access_token"], body["instance_url"].rstrip("/"), time.time())


# -- plain words --------------------------------------------------------------------------------

_KEY_FIX = (
    "SALESFORCE_PRIVATE_KEY_PATH (or SALESFORCE_PRIVATE_KEY) must be the private key of the "
    "certificate uploaded to the connected app (Setup > App Manager > the app > Edit > Use "
    "digital signatures), and SALESFORCE_CLIENT_ID that app's consumer key"
)

# (error, words in the description) -> (cause, fix); the first match wins, "" matches any
# description. Salesforce's descriptions are English whatever the org's language.
EXPLANATIONS = (
    (
        "invalid_client_id",
        "",
        "Salesforce knows no connected app with this client id",
        "set SALESFORCE_CLIENT_ID to the connected app's consumer key (Setup > App Manager > "
        "the app > View > Consumer Key); a new app takes up to 10 minutes to become usable",
    ),
    (
        "invalid_client",
        "",
        "Salesforce refused the client secret",
        "set SALESFORCE_CLIENT_SECRET to the connected app's consumer secret",
    ),
    (
        "invalid_grant",
        "approved",
        "the user is unknown, or not pre-authorised for the connected app",
        "check SALESFORCE_USERNAME (the integration user's username, not its email); in the "
        "connected app's policies set Permitted Users to 'Admin approved users are "
        "pre-authorized' and add the user's profile or permission set",
    ),
    (
        "invalid_app_access",
        "",
        "the user is not allowed to use the connected app",
        "add the integration user's profile or permission set to the connected app",
    ),
    (
        "invalid_grant",
        "audience",
        "Salesforce refused the JWT audience",
        "leave SALESFORCE_AUDIENCE unset, or set it to https://login.salesforce.com for a "
        "production org and https://test.salesforce.com for a sandbox",
    ),
    (
        "invalid_grant",
        "expired authorization code",
        "Salesforce found the assertion expired: this machine's clock is off",
        "synchronise the clock (NTP); the assertion is valid for 3 minutes from now",
    ),
    (
        "invalid_grant",
        "assertion",
        "the assertion's signature does not match the connected app's certificate",
        _KEY_FIX,
    ),
    (
        "invalid_grant",
        "refresh token",
        "the refresh token is expired or revoked",
        "authorise the connected app again and set SALESFORCE_REFRESH_TOKEN to the new token "
        "(or use the JWT bearer flow, which needs no refresh token)",
    ),
    (
        "invalid_grant",
        "",
        "Salesforce refused the grant",
        "check the connected app, the user and the key or refresh token; the error above is "
        "Salesforce's own",
    ),
    (
        "unsupported_grant_type",
        "",
        "the connected app does not allow this flow",
        "enable the OAuth flow in the connected app's settings",
    ),
    (
        "token_endpoint_unreachable",
        "",
        "the Salesforce token endpoint did not answer",
        "check SALESFORCE_LOGIN_URL, the network path to it and, with a private CA, "
        "SALESFORCE_CA_BUNDLE; if Salesforce is down, orders wait and are retried",
    ),
)

_SERVER_TROUBLE = (
    "Salesforce's token endpoint failed",
    "nothing to fix here if Salesforce is having an incident (trust.salesforce.com); orders "
    "wait and are retried",
)


def explain(error):
    """``(cause, fix)`` in plain words for an ``AuthenticationFailed`` (never secrets)."""
    description = (next(iter(error.errors), {}).get("message") or "").lower()
    for code, words, cause, fix in EXPLANATIONS:
        if error.reason == code and words in description:
            return cause, fix
    if error.status is not None and error.status >= 500:
        return _SERVER_TROUBLE
    if error.reason == "INVALID_SESSION_ID":
        return (
            "Salesforce refused a token it had just issued",
            "check the connected app's IP relaxation and session policies for the user",
        )
    return "Salesforce refused the credentials", _KEY_FIX


def refused_credentials(error):
    """True when the token endpoint answered and said no (not an outage or a network error)."""
    return error.status is not None and 400 <= error.status < 500
