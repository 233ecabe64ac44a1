"""Throw-away PKI for TLS tests: a CA, a loopback server certificate, client certs.

Generated per run rather than checked in, so nothing expires in the repository
and no private key is ever committed. EC P-256 keys keep generation to
milliseconds (RSA-2048 would cost ~100 ms per key). The extensions (SKI/AKI,
key usage, SAN for both ``127.0.0.1`` and ``localhost``) are the ones strict
verifiers such as Python 3.13's default ``VERIFY_X509_STRICT`` insist on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
import os
import re
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = dt.timedelta(days=30)
_CLOCK_SKEW = dt.timedelta(hours=1)
_UNSAFE_FILENAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]")


@dataclass(frozen=True)
class TlsMaterial:
    """Paths of the PEM files for one broker; can issue more client certs later."""

    directory: Path
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path

    def client_cert(self, name: str) -> tuple[Path, Path]:
        """Issue (or reuse) a client cert whose CN is ``name``: ``(cert_path, key_path)``.

        The CN matters: with ``use_identity_as_username`` Mosquitto takes it as
        the MQTT username, which is what ``%u`` ACL patterns match against.
        """
        return issue_client_cert(self, name)


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Create with 0600 from the start: a brief world-readable window is still a leak.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)


def _write_cert(path: Path, cert: x509.Certificate) -> None:
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Flightdeck test PKI"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )


def _leaf_key_usage() -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=True,
        key_cert_sign=False,
        crl_sign=False,
        encipher_only=False,
        decipher_only=False,
    )


def _load_ca(material: TlsMaterial) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert = x509.load_pem_x509_certificate(material.ca_cert.read_bytes())
    ca_key = serialization.load_pem_private_key(material.ca_key.read_bytes(), password=None)
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise TypeError(f"{material.ca_key} is not an EC private key")
    return ca_cert, ca_key


def _sign_leaf(
    material: TlsMaterial,
    common_name: str,
    usage: x509.ObjectIdentifier,
    san: x509.SubjectAlternativeName | None,
) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    ca_cert, ca_key = _load_ca(material)
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        _builder(_name(common_name), ca_cert.subject, key.public_key())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_leaf_key_usage(), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if san is not None:
        builder = builder.add_extension(san, critical=False)
    return builder.sign(ca_key, hashes.SHA256()), key


def generate_tls_material(
    directory: Path,
    *,
    hosts: tuple[str, ...] = ("127.0.0.1", "localhost"),
) -> TlsMaterial:
    """Create a CA and a server cert valid for ``hosts`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    material = TlsMaterial(
        directory=directory,
        ca_cert=directory / "ca.crt",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
    )

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = _name("Flightdeck test CA")
    ca_cert = (
        _builder(ca_name, ca_name, ca_key.public_key())
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
        .sign(ca_key, hashes.SHA256())
    )
    _write_key(material.ca_key, ca_key)
    _write_cert(material.ca_cert, ca_cert)

    alt_names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            alt_names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            alt_names.append(x509.DNSName(host))
    server_cert, server_key = _sign_leaf(
        material,
        hosts[0],
        ExtendedKeyUsageOID.SERVER_AUTH,
        x509.SubjectAlternativeName(alt_names),
    )
    _write_key(material.server_key, server_key)
    _write_cert(material.server_cert, server_cert)
    return material


def issue_client_cert(material: TlsMaterial, name: str) -> tuple[Path, Path]:
    """Sign a client cert with CN ``name``; reuses the files if already issued."""
    if not name:
        raise ValueError("client certificate name must not be empty")
    safe = _UNSAFE_FILENAME_CHARS.sub("_", name)
    if safe != name:
        # Two names that sanitise alike ("a/b", "a_b") must not share files.
        safe += "-" + hashlib.sha256(name.encode()).hexdigest()[:8]
    cert_path = material.directory / f"client-{safe}.crt"
    key_path = material.directory / f"client-{safe}.key"
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    cert, key = _sign_leaf(material, name, ExtendedKeyUsageOID.CLIENT_AUTH, None)
    _write_key(key_path, key)
    _write_cert(cert_path, cert)
    return cert_path, key_path
