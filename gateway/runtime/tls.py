"""Server-side TLS for HTTPS listeners: certificates chosen by SNI, reloaded in place.

Theory of operation. asyncio binds one `SSLContext` to a listening socket for
its whole life, so a rotated certificate cannot be installed by replacing
that context. `ServerTls` therefore hands asyncio a *front* context whose
`sni_callback` runs on every handshake (OpenSSL calls it with `None` when the
client sent no server name) and moves the handshake to the current context of
the certificate that answers the name: exact names first, then wildcards
(`*.example.com` covers exactly one label, as browsers read it), else the
first certificate. `reload()` builds a whole new set of contexts from the
files and swaps the list in one assignment: connections already established
keep their session untouched, the next handshake gets the new certificate; a
file that does not load leaves the previous set in place (and says why).

Every context is built the same way: TLS 1.2 or newer (`minVersion`),
Mozilla's "intermediate" cipher list for TLS 1.2 (TLS 1.3 suites are fixed by
OpenSSL and all acceptable), no compression, no renegotiation, ALPN, and for
mTLS listeners the client CA bundle with `optional` or `required` client
certificates.
"""

from __future__ import annotations

import logging
import ssl
import time
import weakref
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from gateway.config.model import ListenerTls

log = logging.getLogger("portway.gateway.runtime.tls")

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
_CLIENT_AUTH = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}

MOZILLA_INTERMEDIATE_CIPHERS = ":".join(
    (
        "ECDHE-ECDSA-AES128-GCM-SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305",
        "ECDHE-RSA-CHACHA20-POLY1305",
        "DHE-RSA-AES128-GCM-SHA256",
        "DHE-RSA-AES256-GCM-SHA384",
        "DHE-RSA-CHACHA20-POLY1305",
    )
)
"""TLS 1.2 ciphers of Mozilla's "intermediate" profile (ssl-config.mozilla.org, v5.7)."""


def certificate_for(
    server_name: str, exact: dict[str, int], wildcard: dict[str, int]
) -> int | None:
    """Index of the certificate for `server_name`, or None for the default (pure)."""
    name = server_name.lower().rstrip(".")
    found = exact.get(name)
    if found is not None:
        return found
    _, dot, parent = name.partition(".")
    if dot:
        return wildcard.get(parent)
    return None


def name_index(tls: ListenerTls) -> tuple[dict[str, int], dict[str, int]]:
    """The configured host names of each certificate: (exact, wildcard parent) → index."""
    exact: dict[str, int] = {}
    wildcard: dict[str, int] = {}
    for index, cert in enumerate(tls.certificates):
        for hostname in cert.hostnames:
            name = hostname.lower().rstrip(".")
            if name.startswith("*."):
                wildcard.setdefault(name[2:], index)
            else:
                exact.setdefault(name, index)
    return exact, wildcard


@dataclass(frozen=True, slots=True)
class CertificateStatus:
    """What the admin API and the expiry metric say about one served certificate."""

    listener: str
    cert_file: str
    hostnames: tuple[str, ...]
    subject: str
    not_after_s: float
    """Expiry as a Unix timestamp."""
    loaded_at_s: float

    def expires_in_s(self, now_s: float) -> float:
        return self.not_after_s - now_s

    def as_json(self, now_s: float) -> dict[str, object]:
        left = self.expires_in_s(now_s)
        return {
            "listener": self.listener,
            "cert_file": self.cert_file,
            "hostnames": list(self.hostnames),
            "subject": self.subject,
            "not_after": self.not_after_s,
            "expires_in_s": round(left, 3),
            "days_left": round(left / 86400, 2),
            "loaded_at": self.loaded_at_s,
        }


def read_certificate(cert_file: str) -> x509.Certificate:
    """The leaf (first) certificate of a PEM chain file."""
    with open(cert_file, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read())


class ServerTls:
    """One HTTPS listener's TLS: the front context asyncio holds and the current set.

    Contract: construction raises (`OSError`, `ssl.SSLError`, `ValueError`)
    when a file does not load, so a listener never starts half-configured;
    `reload()` never raises, it returns False and keeps the current set.
    """

    def __init__(
        self, listener: str, tls: ListenerTls, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.listener = listener
        self.tls = tls
        self._clock = clock
        self.exact, self.wildcard = name_index(tls)
        self.contexts, self.status = self._build()
        self.front = _context(tls, tls.certificates[0].cert_file, tls.certificates[0].key_file)
        self.front.sni_callback = self._choose
        self.reloads = 0
        self.reload_failures = 0
        self._names: weakref.WeakKeyDictionary[ssl.SSLObject, str] = weakref.WeakKeyDictionary()
        """SNI per handshake, from the callback until the connection is accepted
        (weak: a handshake that fails after the callback leaves nothing behind)."""

    @property
    def files(self) -> tuple[str, ...]:
        """Every file the contexts were built from (what a watcher follows)."""
        names = [f for cert in self.tls.certificates for f in (cert.cert_file, cert.key_file)]
        if self.tls.client_ca_file:
            names.append(self.tls.client_ca_file)
        return tuple(names)

    def _build(self) -> tuple[list[ssl.SSLContext], tuple[CertificateStatus, ...]]:
        now = self._clock()
        contexts = []
        status = []
        for cert in self.tls.certificates:
            contexts.append(_context(self.tls, cert.cert_file, cert.key_file))
            leaf = read_certificate(cert.cert_file)
            status.append(
                CertificateStatus(
                    self.listener,
                    cert.cert_file,
                    tuple(cert.hostnames),
                    leaf.subject.rfc4514_string(),
                    leaf.not_valid_after_utc.timestamp(),
                    now,
                )
            )
        return contexts, tuple(status)

    def reload(self) -> bool:
        """Rebuild every context from the files; on failure keep serving the current ones."""
        try:
            contexts, status = self._build()
        except (OSError, ssl.SSLError, ValueError) as exc:
            self.reload_failures += 1
            log.error(
                "TLS reload failed; keeping the current certificates",
                extra={"listener": self.listener, "error": str(exc)},
            )
            return False
        self.contexts, self.status = contexts, status
        self.reloads += 1
        log.info(
            "TLS certificates reloaded",
            extra={"listener": self.listener, "files": list(self.files)},
        )
        return True

    def covers(self, sni: str, host: str) -> bool:
        """Whether a request for `host` may travel on a connection opened for `sni`.

        The same certificate must answer both names (RFC 9110 7.4: otherwise 421).
        """
        if host == sni:
            return True
        return certificate_for(host, self.exact, self.wildcard) == certificate_for(
            sni, self.exact, self.wildcard
        ) and (certificate_for(sni, self.exact, self.wildcard) is not None)

    def server_name(self, ssl_object: ssl.SSLObject | None) -> str:
        """The SNI the client sent on this connection ("" when none); asked once, at accept."""
        if ssl_object is None:
            return ""
        return self._names.pop(ssl_object, "")

    def _choose(self, sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        index = None
        if server_name:
            self._names[sock] = server_name.lower().rstrip(".")
            index = certificate_for(server_name, self.exact, self.wildcard)
        sock.context = self.contexts[index or 0]
        return None


def _context(tls: ListenerTls, cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.set_ciphers(MOZILLA_INTERMEDIATE_CIPHERS)
    ctx.load_cert_chain(cert_file, key_file)
    if tls.alpn:
        ctx.set_alpn_protocols(list(tls.alpn))
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION | ssl.OP_CIPHER_SERVER_PREFERENCE
    if tls.client_ca_file:
        ctx.load_verify_locations(cafile=tls.client_ca_file)
        ctx.verify_mode = _CLIENT_AUTH[tls.client_auth]
    return ctx


def server_context(tls: ListenerTls, listener: str = "") -> ssl.SSLContext:
    """The front context of a fresh `ServerTls` (callers that never reload)."""
    return ServerTls(listener, tls).front
