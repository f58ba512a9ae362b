"""The webhook signature: ``X-Magento-Signature: sha256=<hex>``, an HMAC-SHA256 of the raw body.

Pure functions with known test vectors; the receiver fails closed on every error raised here.
"""

import hashlib
import hmac

HEADER = "X-Magento-Signature"
ALGORITHMS = {"sha256": hashlib.sha256}


class SignatureError(Exception):
    """The request is not signed as it must be; ``status`` is the HTTP answer (400 or 401)."""

    status = 401


class SignatureMissing(SignatureError):
    status = 401


class UnsupportedAlgorithm(SignatureError):
    status = 400


class SignatureMismatch(SignatureError):
    status = 401


def sign(body: bytes, secret: str, algorithm: str = "sha256") -> str:
    """The header value for ``body``: ``sha256=<lowercase hex HMAC>``."""
    digest = hmac.new(secret.encode("utf-8"), body, ALGORITHMS[algorithm]).hexdigest()
    return f"{algorithm}={digest}"


def verify(body: bytes, header: str | None, secrets) -> None:
    """Raise ``SignatureError`` unless ``header`` is a valid signature of ``body``.

    ``secrets`` lists the accepted secrets (several during a rotation); every one is compared in
    constant time, so the time taken does not tell which one matched or how much of it.
    """
    if not header or not header.strip():
        raise SignatureMissing(f"missing {HEADER} header")
    algorithm, sep, received = header.strip().partition("=")
    algorithm = algorithm.strip().lower()
    if not sep or algorithm not in ALGORITHMS:
        raise UnsupportedAlgorithm(f"{HEADER} must be sha256=<hex>")
    received = received.strip().lower().encode("ascii", "replace")
    matched = False
    for secret in secrets:
        expected = sign(body, secret, algorithm).partition("=")[2].encode("ascii")
        matched |= hmac.compare_digest(expected, received)
    if not matched:
        raise SignatureMismatch("signature does not match the body")
