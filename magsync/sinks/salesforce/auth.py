"""Salesforce access tokens for long-running workers.

Two grants, chosen by which settings are present:

- JWT bearer (the default): an RS256 assertion ``{iss: client id, sub: username, aud: login or
  test URL, exp: now + 3 min}`` signed with the connected app's private key
  (``SALESFORCE_PRIVATE_KEY_PATH`` or the PEM itself in ``SALESFORCE_PRIVATE_KEY``);
- refresh token (web-server flow): ``SALESFORCE_REFRESH_TOKEN`` with the client id and secret.

``TokenProvider`` keeps one token per process, shared by its threads; ``refresh(stale)`` asks the
token endpoint once however many callers saw the same stale token (single flight). Failures
raise ``AuthenticationFailed`` with the endpoint's error code, never the token or the key.
"""

import logging
import threading
import time
from dataclasses import dataclass, field

import jwt
import requests

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
    except OSError as exc:
        raise ConfigError(
            f"SALESFORCE_PRIVATE_KEY_PATH cannot be read: {exc.strerror} ({exc.filename})"
        ) from exc


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
    """One access token per process; thread-safe, refreshed once for many callers."""

    def __init__(self, settings, session, grant=None):
        self.settings = settings
        self.session = session
        self.grant = grant or grant_for(settings)
        self._token = None
        self._lock = threading.Lock()
        self.requests_made = 0

    def current(self):
        """The process's token, fetching one if there is none yet."""
        token = self._token
        if token is not None:
            return token
        return self.refresh(None)

    def refresh(self, stale):
        """A token newer than ``stale``; only the first caller to see ``stale`` fetches one."""
        with self._lock:
            if self._token is not None and self._token is not stale:
                return self._token
            self._token = None
            self._token = self._request()
            return self._token

    def invalidate(self):
        with self._lock:
            self._token = None

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
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or "access_token" not in body:
            error = body.get("error") or f"http_{response.status_code}"
            description = body.get("error_description") or ""
            log.error(
                "salesforce token request refused",
                extra={"grant": self.grant.name, "error": error, "description": description},
            )
            raise AuthenticationFailed(
                f"Salesforce refused the {self.grant.name} grant: {error} {description}".strip(),
                reason=error,
                status=response.status_code,
            )
        log.info("salesforce token obtained", extra={"grant": self.grant.name})
        return Token(body["access_token"], body["instance_url"].rstrip("/"), time.time())
