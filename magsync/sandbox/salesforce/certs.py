"""The sandbox org's persistent identity in its state directory, generated on first start.

Files (PEM):

- ``ca.pem`` / ``ca_key.pem``: a private CA; clients verify the server against ``ca.pem``.
- ``server.pem`` / ``server_key.pem``: the HTTPS certificate for 127.0.0.1, ::1, localhost and
  the host the org listens on (re-issued by the same CA when a new host is not covered).
- ``client_key.pem`` / ``client_cert.pem``: the connected app's RSA key pair for the JWT bearer
  flow; the org verifies assertions against ``client_cert.pem`` as Salesforce does against the
  certificate uploaded to the connected app.
- ``org.json``: the connected app's consumer key and secret, the org id and the known user.

Everything is reused on later starts so that settings pasted into ``.env`` stay valid.
"""

import datetime
import ipaddress
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from magsync.sandbox.salesforce import ids

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
DEFAULT_USERNAME = "integration@magsync-sandbox.example.com"


@dataclass(frozen=True)
class Identity:
    """Paths and names of one sandbox org; see the module docstring for the files."""

    state_dir: Path
    ca_path: Path
    server_cert_path: Path
    server_key_path: Path
    client_key_path: Path
    client_cert_path: Path
    client_id: str
    client_secret: str
    username: str
    org_id: str
    user_id: str


def ensure(state_dir, host):
    """Create what is missing in ``state_dir`` (keys, certificates, ``org.json``) and load it.

    Paths are absolute, so settings printed for ``.env`` work from any working directory.
    """
    state_dir = Path(state_dir).expanduser().resolve()
    state_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "ca": state_dir / "ca.pem",
        "ca_key": state_dir / "ca_key.pem",
        "server": state_dir / "server.pem",
        "server_key": state_dir / "server_key.pem",
        "client_key": state_dir / "client_key.pem",
        "client_cert": state_dir / "client_cert.pem",
        "org": state_dir / "org.json",
    }
    if not (paths["ca"].exists() and paths["ca_key"].exists()):
        _write_ca(paths["ca"], paths["ca_key"])
    if not _server_cert_covers(paths["server"], host) or not paths["server_key"].exists():
        _write_server_cert(paths, host)
    if not (paths["client_key"].exists() and paths["client_cert"].exists()):
        _write_client_pair(paths["client_key"], paths["client_cert"])
    if not paths["org"].exists():
        _write_json(paths["org"], _new_org())
    org = json.loads(paths["org"].read_text())
    return Identity(
        state_dir=state_dir,
        ca_path=paths["ca"],
        server_cert_path=paths["server"],
        server_key_path=paths["server_key"],
        client_key_path=paths["client_key"],
        client_cert_path=paths["client_cert"],
        client_id=org["client_id"],
        client_secret=org["client_secret"],
        username=org["username"],
        org_id=org["org_id"],
        user_id=org["user_id"],
    )


def _new_org():
    # Consumer keys of connected apps start with 3MVG9 and run to 85 characters.
    client_id = "3MVG9" + "".join(secrets.choice(_ALNUM) for _ in range(80))
    client_secret = "".join(secrets.choice("0123456789ABCDEF") for _ in range(64))
    serial = secrets.randbelow(62**6)
    return {
        "client_id": client_id,
        "client_secret": client_secret,
        "username": DEFAULT_USERNAME,
        "org_id": ids.make("00D", serial),
        "user_id": ids.make("005", serial + 1),
    }


def _now():
    return datetime.datetime.now(datetime.UTC)


def _write_private(path, key):
    data = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _write_cert(path, cert):
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _write_json(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(data, handle, indent=2)


def _name(common_name):
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "magsync sandbox"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _self_signed(name, key, now):
    """A builder for a certificate ``key`` signs for itself, valid for ten years."""
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=3650))
    )


def _write_ca(cert_path, key_path):
    key = ec.generate_private_key(ec.SECP256R1())
    name = _name("magsync sandbox Salesforce CA")
    now = _now()
    cert = (
        _self_signed(name, key, now)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, key)
    _write_cert(cert_path, cert)


def _alt_names(host):
    names = {"127.0.0.1", "::1", "localhost"}
    if host:
        names.add(host)
    out = []
    for name in sorted(names):
        try:
            out.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            out.append(x509.DNSName(name))
    return out


def _server_cert_covers(path, host):
    if not path.exists():
        return False
    cert = x509.load_pem_x509_certificate(path.read_bytes())
    if cert.not_valid_after_utc < _now() + datetime.timedelta(days=1):
        return False
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    present = {str(v) for v in san.get_values_for_type(x509.IPAddress)}
    present |= set(san.get_values_for_type(x509.DNSName))
    wanted = set()
    for name in _alt_names(host):
        wanted.add(str(name.value))
    return wanted <= present


def _write_server_cert(paths, host):
    ca_key = serialization.load_pem_private_key(paths["ca_key"].read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate(paths["ca"].read_bytes())
    # An EC key keeps TLS handshakes cheap; the bulk of the work is symmetric either way.
    key = ec.generate_private_key(ec.SECP256R1())
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(host or "127.0.0.1"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=825))
        .add_extension(x509.SubjectAlternativeName(_alt_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_private(paths["server_key"], key)
    _write_cert(paths["server"], cert)


def _write_client_pair(key_path, cert_path):
    # The JWT bearer flow signs with RS256, so the connected app's key is RSA.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = _name("magsync sandbox connected app")
    now = _now()
    cert = _self_signed(name, key, now).sign(key, hashes.SHA256())
    _write_private(key_path, key)
    _write_cert(cert_path, cert)


def client_public_key(identity):
    """The connected app's public key, read from its certificate."""
    cert = x509.load_pem_x509_certificate(identity.client_cert_path.read_bytes())
    return cert.public_key()
