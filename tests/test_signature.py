import hashlib
import hmac

import pytest

from magsync.magento import signature

BODY = b'{"event":"sales_order_save_after","order":{"entity_id":1,"increment_id":"000000001"}}'


def test_sign_matches_an_independent_hmac():
    expected = hmac.new(b"s3cret", BODY, hashlib.sha256).hexdigest()
    assert signature.sign(BODY, "s3cret") == f"sha256={expected}"


def test_known_vector():
    # RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?"
    value = signature.sign(b"what do ya want for nothing?", "Jefe")
    assert value == "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"


def test_valid_signature_passes_with_any_rotated_secret():
    header = signature.sign(BODY, "new-secret")
    signature.verify(BODY, header, ["old-secret", "new-secret"])
    signature.verify(BODY, header.upper().replace("SHA256=", "sha256="), ["new-secret"])


@pytest.mark.parametrize(
    ("header", "error"),
    [
        (None, signature.SignatureMissing),
        ("", signature.SignatureMissing),
        ("sha1=" + hmac.new(b"k", BODY, hashlib.sha1).hexdigest(), signature.UnsupportedAlgorithm),
        ("deadbeef", signature.UnsupportedAlgorithm),
        ("sha256=" + "0" * 64, signature.SignatureMismatch),
        ("sha256=not-hex-at-all", signature.SignatureMismatch),
        ("sha256=", signature.SignatureMismatch),
    ],
)
def test_rejections(header, error):
    with pytest.raises(error):
        signature.verify(BODY, header, ["k"])


def test_statuses_follow_the_seed_rules():
    assert signature.SignatureMissing.status == 401
    assert signature.UnsupportedAlgorithm.status == 400
    assert signature.SignatureMismatch.status == 401


def test_body_change_breaks_the_signature():
    header = signature.sign(BODY, "k")
    with pytest.raises(signature.SignatureMismatch):
        signature.verify(BODY + b" ", header, ["k"])
