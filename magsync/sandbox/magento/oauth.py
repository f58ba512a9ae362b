"""OAuth 1.0a for the REST API, as a Magento integration checks it.

An integration has four secrets: consumer key and secret, access token and token secret, each
32 lowercase letters and digits. Every REST call must be signed with them, HMAC-SHA256, the
parameters in the ``Authorization: OAuth ...`` header (Magento 2.4.4+ dropped HMAC-SHA1).

Checks run in Magento's order and fail with Magento's bodies:

=====================================================  ======  ==================================
problem                                                status  message
=====================================================  ======  ==================================
no OAuth header, or ``Authorization: Bearer <token>``   401    ``The consumer isn't authorized to
(bearer use of integration tokens is off by default           access %resources.``
since 2.4.4)
``oauth_version`` other than 1.0                        400    ``The "%1" Oauth version isn't
                                                               supported.``
a required ``oauth_*`` parameter missing                400    ``"%fieldName" is required...``
token of the wrong length                               400    ``The token length is invalid...``
signature method other than HMAC-SHA256                 400    ``Signature method %1 is not
                                                               supported``
consumer key of the wrong length / unknown              401    ``Consumer key is not the correct
                                                               length`` / ``A consumer having
                                                               the specified key does not exist``
timestamp more than 600 s off                           401    ``An error occurred validating the
                                                               nonce``
nonce already used by this consumer                     401    ``The nonce is already being used
                                                               by the consumer with ID %1``
unknown access token                                    401    ``Specified token does not exist``
wrong signature                                         401    ``The signature is invalid. Verify
                                                               and try again.``
=====================================================  ======  ==================================

Magento itself only refuses timestamps more than 600 s in the *future*; its refusal surfaces as
"An error occurred validating the nonce" because the input exception is rewrapped. The store
refuses stale timestamps too (the RFC 5849 window), with the same answer, so that a client with
a skewed clock or a replayed request is caught here and not only in production.

The signature itself is verified by oauthlib's resource endpoint over the URL as received
(``Host`` header and raw path): bracketed ``searchCriteria[...]`` keys are signed like any other
query parameter, percent-encoded or not.
"""

import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit

from oauthlib.common import urlencoded
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA256, RequestValidator, ResourceEndpoint
from oauthlib.oauth1.rfc5849.utils import parse_authorization_header

from magsync.sandbox.magento.errors import MagentoError, not_authorized, required_fields

SECRET_ALPHABET = string.ascii_lowercase + string.digits
SECRET_LENGTH = 32
TIMESTAMP_WINDOW = 600
REQUIRED = (
    "oauth_consumer_key",
    "oauth_signature",
    "oauth_signature_method",
    "oauth_nonce",
    "oauth_timestamp",
    "oauth_token",
)


def new_secret():
    """32 random lowercase letters and digits, the shape of Magento's integration secrets."""
    return "".join(secrets.choice(SECRET_ALPHABET) for _ in range(SECRET_LENGTH))


def valid_secret(value):
    return len(value) == SECRET_LENGTH and set(value) <= set(SECRET_ALPHABET)


@dataclass(frozen=True)
class Integration:
    """An activated integration: its four secrets and the consumer's id."""

    consumer_key: str = field(default_factory=new_secret)
    consumer_secret: str = field(default_factory=new_secret)
    access_token: str = field(default_factory=new_secret)
    access_token_secret: str = field(default_factory=new_secret)
    consumer_id: int = 1

    def __post_init__(self):
        for name in ("consumer_key", "consumer_secret", "access_token", "access_token_secret"):
            if not valid_secret(getattr(self, name)):
                raise ValueError(f"{name} must be 32 lowercase letters and digits")


class _Validator(RequestValidator):
    """oauthlib's view of one integration; records why a request failed on the request."""

    def __init__(self, integration, nonces):
        super().__init__()
        self.integration = integration
        self.nonces = nonces

    # oauthlib's defaults assume HTTPS, 20-30 character keys and HMAC-SHA1; Magento's local
    # store speaks HTTP and uses 32-character keys signed with HMAC-SHA256.
    enforce_ssl = False
    allowed_signature_methods = (SIGNATURE_HMAC_SHA256,)
    client_key_length = (SECRET_LENGTH, SECRET_LENGTH)
    access_token_length = (SECRET_LENGTH, SECRET_LENGTH)
    timestamp_lifetime = TIMESTAMP_WINDOW
    # Stand-ins oauthlib verifies against when the key or token is unknown (constant time).
    dummy_client = "dummyclientdummyclientdummyclie0"
    dummy_access_token = "dummytokendummytokendummytoken00"  # noqa: S105

    @property
    def safe_characters(self):
        return set(SECRET_ALPHABET)

    def check_nonce(self, nonce):
        # Magento stores any nonce up to its column width; oauthlib's default would demand
        # 20-30 alphanumerics and reject nonces other clients generate.
        return 0 < len(nonce) <= 128

    def validate_client_key(self, client_key, request):
        return secrets.compare_digest(client_key, self.integration.consumer_key)

    def validate_access_token(self, client_key, token, request):
        return secrets.compare_digest(token, self.integration.access_token)

    def validate_timestamp_and_nonce(
        self, client_key, timestamp, nonce, request, request_token=None, access_token=None
    ):
        if not self.nonces.claim(client_key, nonce, int(timestamp)):
            request.magento_error = MagentoError(
                401,
                "The nonce is already being used by the consumer with ID %1",
                [str(self.integration.consumer_id)],
            )
            return False
        return True

    def validate_realms(self, client_key, token, request, uri=None, realms=None):
        return True

    def get_client_secret(self, client_key, request):
        return self.integration.consumer_secret

    def get_access_token_secret(self, client_key, token, request):
        return self.integration.access_token_secret


class NonceLedger:
    """Nonces seen per consumer; forgets those whose timestamp left the accepted window."""

    def __init__(self):
        self._seen = {}
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def claim(self, client_key, nonce, timestamp):
        """True the first time a consumer uses ``nonce``, False after."""
        now = time.time()
        with self._lock:
            if now >= self._next_sweep:
                horizon = now - 2 * TIMESTAMP_WINDOW
                self._seen = {key: ts for key, ts in self._seen.items() if ts >= horizon}
                self._next_sweep = now + TIMESTAMP_WINDOW
            key = (client_key, nonce)
            if key in self._seen:
                return False
            self._seen[key] = timestamp
            return True


class OAuthGate:
    """Verifies REST requests for one integration; :meth:`check` raises on refusal."""

    def __init__(self, integration):
        self.integration = integration
        self._validator = _Validator(integration, NonceLedger())
        self._endpoint = ResourceEndpoint(self._validator)

    def check(self, method, url, headers):
        """Accept or raise :class:`MagentoError` for a request (absolute ``url`` as received)."""
        authorization = headers.get("Authorization", "")
        if not authorization.lower().startswith("oauth "):
            # No OAuth (or a bearer token): no integration identity, so the ACL check fails.
            raise not_authorized()
        try:
            params = dict(parse_authorization_header(authorization))
        except ValueError:
            raise not_authorized() from None
        self._check_protocol(params)
        url = _oauth_safe_url(url)
        valid, request = self._endpoint.validate_protected_resource_request(
            url, http_method=method, body=None, headers={"Authorization": authorization}
        )
        if valid:
            return
        error = getattr(request, "magento_error", None) if request is not None else None
        if error is not None:
            raise error
        log = request.validator_log if request is not None else {}
        if log.get("resource_owner") is False:
            raise MagentoError(401, "Specified token does not exist")
        raise MagentoError(401, "The signature is invalid. Verify and try again.")

    def _check_protocol(self, params):
        """The checks Magento makes before it looks at the signature, with its messages."""
        version = params.get("oauth_version")
        if version is not None and version != "1.0":
            raise MagentoError(400, 'The "%1" Oauth version isn\'t supported.', [version])
        missing = [name for name in REQUIRED if not params.get(name)]
        if missing:
            raise required_fields(missing)
        if len(params["oauth_token"]) != SECRET_LENGTH:
            raise MagentoError(400, "The token length is invalid. Check the length and try again.")
        if not valid_secret(params["oauth_token"]):
            raise MagentoError(401, "Specified token does not exist")
        method = params["oauth_signature_method"]
        if method != SIGNATURE_HMAC_SHA256:
            raise MagentoError(400, "Signature method %1 is not supported", [method])
        key = params["oauth_consumer_key"]
        if len(key) != SECRET_LENGTH:
            raise MagentoError(401, "Consumer key is not the correct length")
        if not secrets.compare_digest(key, self.integration.consumer_key):
            raise MagentoError(401, "A consumer having the specified key does not exist")
        try:
            stamp = int(params["oauth_timestamp"])
        except ValueError:
            stamp = 0
        if stamp <= 0 or abs(time.time() - stamp) > TIMESTAMP_WINDOW:
            raise MagentoError(401, "An error occurred validating the nonce")


def _oauth_safe_url(url):
    """The URL with its query re-encoded when it holds characters oauthlib refuses.

    Clients may send ``searchCriteria[pageSize]`` with literal brackets; the decoded parameters
    (what the signature covers) are the same either way.
    """
    parts = urlsplit(url)
    if not parts.query or set(parts.query) <= urlencoded:
        return url
    query = urlencode(parse_qsl(parts.query, keep_blank_values=True))
    return parts._replace(query=query).geturl()
