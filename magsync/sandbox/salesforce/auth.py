"""OAuth 2.0 at ``/services/oauth2/token`` and the access tokens of the org.

Grants (form-encoded POST, parameters may also be in the query string, as Salesforce allows):

- ``urn:ietf:params:oauth:grant-type:jwt-bearer`` with ``assertion``: an RS256 JWT signed by the
  connected app's key; ``iss`` = consumer key, ``sub`` = the known username, ``aud`` =
  ``https://login.salesforce.com`` or ``https://test.salesforce.com`` (never the instance URL),
  ``exp`` in seconds, as an int or a digit string, no more than 3 minutes ahead.
  Answer: ``{access_token, scope, instance_url, id, token_type}``; no refresh token, no
  ``expires_in``.
- ``refresh_token`` with ``refresh_token``, ``client_id`` and optionally ``client_secret``.
  Answer adds ``signature`` and ``issued_at``.

Errors are 400 ``{"error", "error_description"}`` with Salesforce's descriptions:
``unsupported_grant_type`` / "grant type not supported", ``invalid_client_id`` / "client
identifier invalid", ``invalid_client`` / "invalid client credentials", and ``invalid_grant``
with "invalid assertion" (unreadable or badly signed), "audience is invalid", "expired
authorization code" (``exp`` past or too far ahead), "user hasn't approved this consumer"
(unknown or revoked user), "expired access/refresh token".

Access tokens live ``ttl`` seconds from issue (the org's session timeout; Salesforce's default is
2 hours); changing the TTL applies to tokens already issued. Revoking the user's authorization
makes the JWT and refresh grants fail until it is restored; access tokens already issued keep
working until they expire (expire them too to model a full revocation).
"""

import base64
import hashlib
import hmac
import secrets
import threading
import time
from urllib.parse import parse_qs

import jwt

JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
AUDIENCES = ("https://login.salesforce.com", "https://test.salesforce.com")
MAX_AHEAD = 180
# simple-salesforce and others round ``exp`` to whole seconds; allow for that and small skew.
SKEW = 5
GRANT_NAMES = {JWT_GRANT: "jwt-bearer", "refresh_token": "refresh_token"}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._"


class OAuthError(Exception):
    """An OAuth error answer."""

    def __init__(self, error, description, status=400):
        super().__init__(f"{error}: {description}")
        self.status = status
        self.body = {"error": error, "error_description": description}


def _invalid_grant(description):
    return OAuthError("invalid_grant", description)


class Sessions:
    """Access and refresh tokens of the org's one connected app and user (thread-safe)."""

    def __init__(self, identity, public_key, ttl):
        self.identity = identity
        self.public_key = public_key
        self.ttl = float(ttl)
        self._tokens = {}
        self._refresh = set()
        self._revoked = set()
        self._lock = threading.Lock()

    # -- tokens ------------------------------------------------------------------------------

    def _new_token(self):
        body = "".join(secrets.choice(_ALPHABET) for _ in range(96))
        return f"{self.identity.org_id[:15]}!AQ{body}"

    def issue(self):
        """A new access token for the known user."""
        token = self._new_token()
        with self._lock:
            self._tokens[token] = time.monotonic()
        return token

    def valid(self, token):
        """True when ``token`` was issued and has not expired."""
        with self._lock:
            issued = self._tokens.get(token)
            if issued is None:
                return False
            if time.monotonic() - issued >= self.ttl:
                del self._tokens[token]
                return False
            return True

    def expire_all(self):
        """Expire every access token now; returns how many were live."""
        with self._lock:
            count = len(self._tokens)
            self._tokens.clear()
            return count

    def set_ttl(self, seconds):
        if seconds < 0:
            raise ValueError("token TTL must not be negative")
        self.ttl = float(seconds)

    def issue_refresh_token(self):
        """A refresh token for the known user, as a web-server or user-agent flow would grant."""
        token = "5Aep861" + "".join(secrets.choice(_ALPHABET[:62]) for _ in range(80))
        with self._lock:
            self._refresh.add(token)
        return token

    def revoke(self, username):
        """Withdraw ``username``'s authorization of the connected app (refresh tokens too)."""
        self._known(username)
        with self._lock:
            self._revoked.add(username.lower())
            self._refresh.clear()

    def restore(self, username):
        self._known(username)
        with self._lock:
            self._revoked.discard(username.lower())

    def _known(self, username):
        if not isinstance(username, str) or username.lower() != self.identity.username.lower():
            raise KeyError(username)

    def authorized(self, username):
        return (
            isinstance(username, str)
            and username.lower() == self.identity.username.lower()
            and username.lower() not in self._revoked
        )

    # -- the token endpoint --------------------------------------------------------------------

    def grant(self, form, instance_url):
        """``(grant name, answer)`` for a token request's parameters; raises ``OAuthError``."""
        grant_type = form.get("grant_type")
        if grant_type == JWT_GRANT:
            self._jwt_bearer(form.get("assertion"))
        elif grant_type == "refresh_token":
            self._refresh_grant(form)
        else:
            raise OAuthError("unsupported_grant_type", "grant type not supported")
        token = self.issue()
        answer = {
            "access_token": token,
            "scope": "api",
            "instance_url": instance_url,
            "id": f"{instance_url}/id/{self.identity.org_id}/{self.identity.user_id}",
            "token_type": "Bearer",
        }
        if grant_type == "refresh_token":
            issued_at = str(int(time.time() * 1000))
            digest = hmac.new(
                self.identity.client_secret.encode(),
                (answer["id"] + issued_at).encode(),
                hashlib.sha256,
            ).digest()
            answer["signature"] = base64.b64encode(digest).decode()
            answer["issued_at"] = issued_at
        return answer

    def _jwt_bearer(self, assertion):
        if not assertion:
            raise _invalid_grant("invalid assertion")
        try:
            header = jwt.get_unverified_header(assertion)
            claims = jwt.decode(assertion, options={"verify_signature": False})
        except jwt.PyJWTError:
            raise _invalid_grant("invalid assertion") from None
        if claims.get("iss") != self.identity.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        if header.get("alg") != "RS256":
            raise _invalid_grant("invalid assertion")
        try:
            jwt.decode(
                assertion,
                self.public_key,
                algorithms=["RS256"],
                options={
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_aud": False,
                    "verify_iss": False,
                },
            )
        except jwt.PyJWTError:
            raise _invalid_grant("invalid assertion") from None
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        if not any(a in AUDIENCES for a in audiences):
            raise _invalid_grant("audience is invalid")
        exp = claims.get("exp")
        # Salesforce takes exp as a JSON number or a string of digits (simple-salesforce sends
        # the latter); anything else is not a usable assertion.
        if isinstance(exp, str) and exp.isdigit():
            exp = int(exp)
        if isinstance(exp, bool) or not isinstance(exp, (int, float)):
            raise _invalid_grant("invalid assertion")
        now = time.time()
        if exp <= now or exp > now + MAX_AHEAD + SKEW:
            raise _invalid_grant("expired authorization code")
        if not self.authorized(claims.get("sub")):
            raise _invalid_grant("user hasn't approved this consumer")

    def _refresh_grant(self, form):
        if form.get("client_id") != self.identity.client_id:
            raise OAuthError("invalid_client_id", "client identifier invalid")
        secret = form.get("client_secret")
        if secret is not None and not hmac.compare_digest(secret, self.identity.client_secret):
            raise OAuthError("invalid_client", "invalid client credentials")
        with self._lock:
            known = form.get("refresh_token") in self._refresh
        if not known or not self.authorized(self.identity.username):
            raise _invalid_grant("expired access/refresh token")


def token_form(query, body, content_type):
    """The token request's parameters: the query string, then a form-encoded body over it."""
    params = {key: values[-1] for key, values in parse_qs(query, keep_blank_values=True).items()}
    if (
        body
        and (content_type or "").split(";")[0].strip().lower()
        == "application/x-www-form-urlencoded"
    ):
        text = body.decode("utf-8", errors="replace")
        for key, values in parse_qs(text, keep_blank_values=True).items():
            params[key] = values[-1]
    return params
