"""A local certificate authority and certificates for the services (TLS and mTLS), written as PEM
files: ``synesthesia certs DIR`` makes ``ca.pem``, one ``<name>.pem`` + ``<name>-key.pem`` per
server name (valid for that name, ``localhost`` and 127.0.0.1; usable as a client certificate
too) and a ``client.pem`` +
``client-key.pem`` for mTLS. For development and private networks; a real deployment uses its
organisation's CA (cert-manager in Kubernetes)."""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID


@dataclass(frozen=True)
class Issued:
    cert: Path
    key: Path


def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


def _name(common: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "synesthesia local"),
            x509.NameAttribute(NameOID.COMMON_NAME, common),
        ]
    )


def _san(names: Sequence[str]) -> x509.SubjectAlternativeName:
    entries: list[x509.GeneralName] = []
    for n in names:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(n)))
        except ValueError:
            entries.append(x509.DNSName(n))
    return x509.SubjectAlternativeName(entries)


def make_certs(
    out: Path,
    servers: Sequence[str] = ("text", "image", "audio", "search"),
    client: str = "client",
    days: int = 365,
) -> dict[str, Issued]:
    """Writes the CA and the certificates into ``out``; returns name -> files (``ca`` too)."""
    out.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = _key()
    ca_name = _name("synesthesia local CA")
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    issued = {"ca": Issued(out / "ca.pem", out / "ca-key.pem")}
    issued["ca"].cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(ca_key, issued["ca"].key)

    def leaf(common: str, names: Sequence[str], usage: list[x509.ObjectIdentifier]) -> Issued:
        key = _key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(_name(common))
            .issuer_name(ca_name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=days))
            .add_extension(_san(names), critical=False)
            .add_extension(x509.ExtendedKeyUsage(usage), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        files = Issued(out / f"{common}.pem", out / f"{common}-key.pem")
        files.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, files.key)
        return files

    # A server's certificate also serves as its client certificate (the search service calling
    # the encoders over mTLS).
    both = [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
    for name in servers:
        issued[name] = leaf(name, [name, "localhost", "127.0.0.1"], both)
    issued[client] = leaf(client, [client], [ExtendedKeyUsageOID.CLIENT_AUTH])
    return issued
