"""Adobe I/O Events deliveries: their RSA signatures, the public keys those name, the recipient,
the event id, and the asynchronous registration check.

What Adobe sends (I/O Events guide, ``aio-lib-events``):

- ``x-adobe-digital-signature-1`` / ``-2``: base64 RSA-SHA256 (PKCS#1 v1.5) of the raw body, and
  ``x-adobe-public-key1-path`` / ``-2-path``: where each public key is, on
  ``https://static.adobeioevents.com`` (``ADOBE_IO_PUBLIC_KEY_BASE_URL``). The delivery is
  authentic when either signature verifies; keys may be cached for at most 24 hours.
- ``recipientclientid`` (formerly ``recipient_client_id``) names the I/O project the event is
  for; ``eventid`` (formerly ``event_id``, and ``x-adobe-event-id``) identifies the event across
  Adobe's retries. CloudEvents ``id`` is not that id.

Only key paths of Adobe's shape (``/prod/keys/<name>.pem``) are ever fetched, and only from the
configured origin: a path that tries to leave it (``..``, ``//``, a URL, a backslash, percent
escapes) is refused before any request is made.
"""

import base64
import binascii
import hashlib
import logging
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from urllib.parse import urlsplit

import requests
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

log = logging.getLogger(__name__)

SIGNATURE_HEADERS = ("x-adobe-digital-signature-1", "x-adobe-digital-signature-2")
KEY_PATH_HEADERS = ("x-adobe-public-key1-path", "x-adobe-public-key2-path")
EVENT_ID_HEADER = "x-adobe-event-id"
KEY_PATH = re.compile(r"/prod/keys/[A-Za-z0-9][A-Za-z0-9_-]{0,127}\.pem")
MAX_KEY_BYTES = 16 * 1024
MAX_SIGNATURE_CHARS = 2048
# Event ids of this shape are kept as they are; any other is kept as its digest.
PLAIN_EVENT_ID = re.compile(r"[A-Za-z0-9._:-]{1,100}")


class DeliveryRefused(Exception):
    """A delivery is refused; ``status`` and ``error`` are the HTTP answer."""

    status = 401
    error = "invalid_signature"


class SignatureMissing(DeliveryRefused):
    """Neither signature (with its key path) is present."""


class SignatureInvalid(DeliveryRefused):
    """No signature verifies over the body with the key its header names."""


class KeysUnavailable(DeliveryRefused):
    """A key could not be fetched (network, 5xx) and no other verified: Adobe should retry."""

    status = 503
    error = "public_key_unavailable"


class WrongRecipient(DeliveryRefused):
    """The event is addressed to another I/O project."""

    status = 403
    error = "wrong_recipient"


class UnsafeKeyPath(ValueError):
    """A key path not of Adobe's shape: never fetched."""


class KeyUnavailable(Exception):
    """The key host did not answer, or failed (5xx): worth trying again later."""


class KeyRefused(Exception):
    """The key host answered, but with no RSA public key at that path."""


def key_url(base_url, path):
    """The URL of the key at ``path`` on ``base_url``; ``UnsafeKeyPath`` for any other shape."""
    if not isinstance(path, str) or not KEY_PATH.fullmatch(path):
        raise UnsafeKeyPath("key path is not of the form /prod/keys/<name>.pem")
    return base_url + path


@dataclass
class _Cached:
    key: rsa.RSAPublicKey
    fetched_at: float


class KeyStore:
    """Adobe's public keys by path: fetched on first use, kept ``max_age`` seconds.

    One per process, shared by every thread. At most ``max_keys`` keys are kept (the least
    recently used goes first); concurrent requests for one missing key wait for a single fetch.
    ``clock`` is injectable for tests; ``verify`` is requests' TLS verification (a CA bundle
    path for a stand-in).
    """

    def __init__(self, base_url, max_age, timeout, verify=True, max_keys=32, clock=time.monotonic):
        self.base_url = base_url.rstrip("/")
        self.max_age = max_age
        self.timeout = timeout
        self.verify = verify
        self.max_keys = max_keys
        self.clock = clock
        self._keys = OrderedDict()
        self._fetching = {}
        self._lock = threading.Lock()

    def _fresh(self, path):
        entry = self._keys.get(path)
        if entry is None or self.clock() - entry.fetched_at >= self.max_age:
            return None
        self._keys.move_to_end(path)
        return entry.key

    def get(self, path):
        """The RSA public key at ``path``.

        Raises ``UnsafeKeyPath`` (nothing fetched), ``KeyUnavailable`` or ``KeyRefused``.
        """
        url = key_url(self.base_url, path)
        with self._lock:
            key = self._fresh(path)
            if key is not None:
                return key
            fetching = self._fetching.setdefault(path, threading.Lock())
        with fetching:
            with self._lock:
                key = self._fresh(path)
            if key is not None:
                return key
            try:
                key = self._fetch(url)
            except (KeyUnavailable, KeyRefused):
                with self._lock:
                    self._fetching.pop(path, None)
                raise
            with self._lock:
                self._keys[path] = _Cached(key, self.clock())
                self._keys.move_to_end(path)
                while len(self._keys) > self.max_keys:
                    self._keys.popitem(last=False)
                self._fetching.pop(path, None)
        log.info("adobe public key fetched", extra={"key_path": path})
        return key

    def _fetch(self, url):
        try:
            with requests.get(
                url, timeout=self.timeout, verify=self.verify, allow_redirects=False, stream=True
            ) as response:
                status = response.status_code
                content = response.raw.read(MAX_KEY_BYTES + 1, decode_content=True)
        except requests.RequestException as exc:
            raise KeyUnavailable(f"{type(exc).__name__}") from None
        if status >= 500 or status == 429:
            raise KeyUnavailable(f"key host answered {status}")
        if status != 200 or len(content) > MAX_KEY_BYTES:
            raise KeyRefused(f"key host answered {status}")
        try:
            key = serialization.load_pem_public_key(content)
        except ValueError:
            raise KeyRefused("not a PEM public key") from None
        if not isinstance(key, rsa.RSAPublicKey):
            raise KeyRefused("not an RSA public key")
        return key


def _decode(signature):
    if not signature or len(signature) > MAX_SIGNATURE_CHARS:
        return None
    try:
        return base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError):
        return None


def _verifies(key, signature, body):
    try:
        key.verify(signature, body, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


def verify(body, headers, keys):
    """Return the key path whose signature verifies ``body``; raise ``DeliveryRefused`` if none.

    ``headers`` is the request's (case-insensitive) headers. A key that cannot be fetched only
    matters when no other signature verifies: then ``KeysUnavailable`` (503, so Adobe retries);
    otherwise ``SignatureMissing`` or ``SignatureInvalid`` (401).
    """
    pairs = [
        (headers.get(signature), headers.get(path))
        for signature, path in zip(SIGNATURE_HEADERS, KEY_PATH_HEADERS, strict=True)
    ]
    present = [(signature, path) for signature, path in pairs if signature and path]
    if not present:
        raise SignatureMissing("missing x-adobe-digital-signature and key path headers")
    unavailable = False
    for text, path in present:
        signature = _decode(text)
        if signature is None:
            continue
        try:
            key = keys.get(path)
        except (UnsafeKeyPath, KeyRefused):
            continue
        except KeyUnavailable:
            unavailable = True
            continue
        if _verifies(key, signature, body):
            return path
    if unavailable:
        raise KeysUnavailable("a public key could not be fetched; try again later")
    raise SignatureInvalid("no signature verifies over the body")


def _first(document, *names):
    for name in names:
        value = document.get(name)
        if isinstance(value, str) and value:
            return value
    return None


def recipient_of(document):
    """The I/O project an event is for: ``recipientclientid``, else the older name."""
    return _first(document, "recipientclientid", "recipient_client_id")


def check_recipient(document, client_id):
    """Raise ``WrongRecipient`` unless ``document`` is addressed to ``client_id``."""
    if recipient_of(document) != client_id:
        raise WrongRecipient("the event is for another I/O project")


def event_id_of(document, header=None):
    """The event's id across retries: ``eventid``, else ``event_id``, else the header's."""
    return _first(document, "eventid", "event_id") or (header or None)


def event_key(event_id):
    """What magsync keys an event by: the id itself, or ``sha256:<hex>`` of an unusual one.

    At most 100 characters, so ``<increment_id>:<key>`` stays far below AMQP's 255-byte limit
    on a task id, and the ledger's column can hold it.
    """
    if PLAIN_EVENT_ID.fullmatch(event_id):
        return event_id
    return "sha256:" + hashlib.sha256(event_id.encode("utf-8", "surrogatepass")).hexdigest()


# -- the asynchronous registration check ---------------------------------------------------------


def validation_target(url, hosts):
    """``url`` when magsync may GET it to confirm a registration, else ``ValueError``.

    HTTPS only, to a host (or ``host:port``) of ``hosts``, without credentials in it.
    """
    if not isinstance(url, str) or len(url) > 2048 or "\\" in url:
        raise ValueError("not a URL")
    parts = urlsplit(url)
    if parts.scheme != "https" or parts.username or parts.password or not parts.hostname:
        raise ValueError("validationUrl must be an https:// URL without credentials")
    try:
        port = parts.port
    except ValueError:
        raise ValueError("validationUrl has an invalid port") from None
    host = parts.hostname.lower()
    allowed = f"{host}:{port}" in hosts if port is not None else host in hosts
    if not allowed:
        raise ValueError("validationUrl is not on an Adobe validation host")
    return url


class Validator:
    """GETs registration ``validationUrl``\\ s in background threads (a few at a time)."""

    def __init__(self, hosts, timeout, verify=True, max_running=2):
        self.hosts = hosts
        self.timeout = timeout
        self.verify = verify
        self._slots = threading.BoundedSemaphore(max_running)

    def submit(self, url):
        """Start confirming ``url``; False when it is not allowed or too many are running."""
        try:
            validation_target(url, self.hosts)
        except ValueError as exc:
            log.warning("adobe validationUrl refused", extra={"reason": str(exc)})
            return False
        if not self._slots.acquire(blocking=False):
            log.warning("adobe validationUrl not fetched: validations already running")
            return False
        thread = threading.Thread(
            target=self._run, args=(url,), name="adobe-validation", daemon=True
        )
        thread.start()
        return True

    def _run(self, url):
        host = urlsplit(url).hostname
        try:
            with requests.get(
                url, timeout=self.timeout, verify=self.verify, allow_redirects=False
            ) as response:
                status = response.status_code
        except requests.RequestException as exc:
            log.error(
                "adobe registration not validated",
                extra={"host": host, "cause": type(exc).__name__},
            )
            return
        finally:
            self._slots.release()
        if 200 <= status < 300:
            log.info("adobe registration validated", extra={"host": host, "status": status})
        else:
            log.error("adobe registration not validated", extra={"host": host, "status": status})
