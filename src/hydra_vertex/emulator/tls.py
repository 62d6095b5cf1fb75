"""The emulator's TLS certificates (gRPC is served over TLS only, as Google serves it).

``STATE_DIR/tls/``:

- ``ca.pem`` / ``ca-key.pem``: the emulator's own certificate authority, made once per state
  directory (ten years) and kept, so that a client set up to trust it keeps working across
  restarts;
- ``server.pem`` / ``server-key.pem``: the server certificate, signed by that CA and made again
  at every start, for ``localhost``, ``127.0.0.1``, ``::1`` and the address the emulator binds;
- ``roots.pem``: certifi's public roots followed by the CA, a bundle for
  ``GRPC_DEFAULT_SSL_ROOTS_FILE_PATH`` (gRPC's default trust store) that keeps Google's own
  endpoints verifiable in the same process.

Keys are written 0600 in a 0700 directory.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path

from hydra_vertex.files import atomic_write_text

CA_DAYS = 3650
SERVER_DAYS = 397
_NAME = "hydra-vertex emulator"


@dataclass(frozen=True)
class TlsFiles:
    ca: Path
    cert: Path
    key: Path
    roots: Path


def ensure(state_dir: Path, host: str) -> TlsFiles:
    """The CA (made if missing, expired or unreadable), a new server certificate for ``host``
    and the roots bundle, under ``state_dir/tls``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    tls = state_dir / "tls"
    tls.mkdir(mode=0o700, exist_ok=True)
    os.chmod(tls, 0o700)
    files = TlsFiles(tls / "ca.pem", tls / "server.pem", tls / "server-key.pem", tls / "roots.pem")
    ca_key_path = tls / "ca-key.pem"
    now = datetime.datetime.now(datetime.UTC)

    def pem_key(key: ec.EllipticCurvePrivateKey) -> str:
        return key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    ca_cert: x509.Certificate | None = None
    ca_key: ec.EllipticCurvePrivateKey | None = None
    try:
        ca_cert = x509.load_pem_x509_certificate(files.ca.read_bytes())
        loaded = serialization.load_pem_private_key(ca_key_path.read_bytes(), password=None)
        if isinstance(loaded, ec.EllipticCurvePrivateKey) and (
            ca_cert.not_valid_after_utc > now + datetime.timedelta(days=SERVER_DAYS)
        ):
            ca_key = loaded
    except (OSError, ValueError):
        ca_cert = None
    if ca_cert is None or ca_key is None:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"{_NAME} CA")])
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
            .sign(ca_key, hashes.SHA256())
        )
        atomic_write_text(ca_key_path, pem_key(ca_key), mode=0o600)
        atomic_write_text(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM).decode())

    names: list[x509.GeneralName] = [
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
        x509.IPAddress(ipaddress.ip_address("::1")),
    ]
    try:
        bound = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        if host and host != "localhost":
            names.append(x509.DNSName(host))
    else:
        if not bound.is_unspecified and x509.IPAddress(bound) not in names:
            names.append(x509.IPAddress(bound))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, _NAME)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=SERVER_DAYS))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    atomic_write_text(files.key, pem_key(key), mode=0o600)
    atomic_write_text(files.cert, cert.public_bytes(serialization.Encoding.PEM).decode())
    atomic_write_text(files.roots, _public_roots() + files.ca.read_text())
    return files


def _public_roots() -> str:
    """certifi's bundle (the public roots requests uses), ending with a newline."""
    try:
        import certifi

        text = Path(certifi.where()).read_text()
    except (ImportError, OSError):
        return ""
    return text if text.endswith("\n") else text + "\n"
