"""Certificates for drills: a throwaway CA, and server certificates it signs.

A drill whose gateway config has an HTTPS listener with relative
certificate paths gets them made here, in its working directory: one CA per
drill (the drill's clients trust it and nothing else), and a leaf per
configured certificate for its hostnames and the listener's address. The
rotate-certificate fault issues a new leaf (new serial, new key) and
replaces the files atomically, as cert-manager or an ACME client would.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from portway.registry.record_files import write_atomic

VALID_FOR = datetime.timedelta(days=2)


@dataclass(frozen=True, slots=True)
class Issued:
    """A leaf certificate as PEM, with its serial number."""

    cert_pem: bytes
    key_pem: bytes
    serial: int


class DrillCa:
    """A CA made for one drill; `issue` signs server certificates."""

    def __init__(self, name: str = "portway drill CA") -> None:
        self._key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.datetime.now(datetime.UTC)
        self._name = subject
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self._key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .sign(self._key, hashes.SHA256())
        )

    @property
    def pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def client_context(self) -> ssl.SSLContext:
        """What the drill's clients use: verify against this CA only."""
        ctx = ssl.create_default_context(cadata=self.pem.decode())
        return ctx

    def issue(self, names: tuple[str, ...]) -> Issued:
        """A server certificate for DNS names and IP addresses in `names`."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        serial = x509.random_serial_number()
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
            .issuer_name(self._name)
            .public_key(key.public_key())
            .serial_number(serial)
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALID_FOR)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return Issued(cert.public_bytes(serialization.Encoding.PEM), key_pem, serial)


def install(issued: Issued, cert_file: Path, key_file: Path) -> None:
    """Replace the files atomically, key first (a reader pairing a new certificate with
    the old key would fail; the gateway reloads once both changed)."""
    cert_file.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(key_file, issued.key_pem)
    write_atomic(cert_file, issued.cert_pem)


def serial_of(der: bytes) -> int:
    return x509.load_der_x509_certificate(der).serial_number
