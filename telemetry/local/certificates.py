"""The local stack's certificate authority: one X.509 certificate per thing.

What IoT Core's `CreateKeysAndCertificate` and `AttachThingPrincipal` do for a
device, done locally: a key pair and a certificate whose subject CN is the
thing's name, signed by a CA this stack creates (and only it trusts). The
broker's device listener requires such a certificate and takes the thing it is
attached to from its CN; the client id must then be that thing's name.

The broker gets a server certificate for `localhost` and 127.0.0.1 from the same
CA, so a device's TLS client verifies the endpoint as it verifies IoT Core's
(only the CA file differs). The service side (the rules engine's subscriber)
has a certificate from a second CA, trusted only by the broker's service
listener, which a device certificate cannot open.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import ipaddress
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

VALIDITY: Final = dt.timedelta(days=30)


class CertificateError(RuntimeError):
    """A certificate cannot be issued (the `cryptography` package is missing)."""


@dataclass(frozen=True, slots=True)
class ThingCertificate:
    """A thing's credentials, as files, and the certificate's id (IoT Core's
    certificateId: the SHA-256 of the certificate's DER, hex)."""

    thing_name: str
    certificate_id: str
    certificate_path: Path
    private_key_path: Path


def _x509() -> Any:
    try:
        from cryptography import x509  # noqa: PLC0415 - the local extra
    except ImportError:
        raise CertificateError("the local stack's certificates need the local extra") from None
    return x509


class LocalCertificateAuthority:
    """A CA in `directory` (created on the first use), issuing PEM files there."""

    def __init__(self, directory: Path, name: str = "Local IoT Core CA") -> None:
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        x509 = _x509()
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.name = name
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, name)])
        self._subject = subject
        now = dt.datetime.now(dt.UTC)
        self._certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .sign(self._key, _sha256())
        )
        self.ca_path = directory / f"{_slug(name)}.pem"
        self.ca_path.write_bytes(_pem(self._certificate))
        self.issued: dict[str, ThingCertificate] = {}

    def issue(self, common_name: str, *, server: bool = False) -> ThingCertificate:
        """A key and a certificate with subject CN `common_name` (a thing's name),
        for a TLS client, or for the broker's TLS server when `server`."""
        from cryptography.hazmat.primitives import serialization  # noqa: PLC0415
        from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

        x509 = _x509()
        key = ec.generate_private_key(ec.SECP256R1())
        now = dt.datetime.now(dt.UTC)
        usage = x509.oid.ExtendedKeyUsageOID.SERVER_AUTH if server else None
        builder = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, common_name)])
            )
            .issuer_name(self._subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(
                    [usage or x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH],
                ),
                critical=False,
            )
        )
        if server:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [
                        x509.DNSName("localhost"),
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    ]
                ),
                critical=False,
            )
        certificate = builder.sign(self._key, _sha256())
        der = certificate.public_bytes(serialization.Encoding.DER)
        stem = self.directory / _slug(common_name)
        certificate_path = stem.with_suffix(".cert.pem")
        key_path = stem.with_suffix(".private.key")
        certificate_path.write_bytes(_pem(certificate))
        key_path.touch(mode=0o600)
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        issued = ThingCertificate(
            common_name, hashlib.sha256(der).hexdigest(), certificate_path, key_path
        )
        if not server:
            self.issued[common_name] = issued
        return issued


def _sha256() -> Any:
    from cryptography.hazmat.primitives import hashes  # noqa: PLC0415

    return hashes.SHA256()


def _pem(certificate: Any) -> bytes:
    from cryptography.hazmat.primitives import serialization  # noqa: PLC0415

    return bytes(certificate.public_bytes(serialization.Encoding.PEM))


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
