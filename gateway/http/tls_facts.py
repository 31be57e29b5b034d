"""What the HTTP proxy reads of a connection's TLS: its server name and its client's subject.

The proxy asks once per connection (and once per new Host, for the 421
check) through `ConnectionTls`, the part of a listener's TLS termination it
needs; `gateway.runtime.tls.ServerTls` is the implementation, which owns the
certificates, their reloads and their expiry. Keeping the contract here lets
the runtime depend on `http`, never the reverse. `peer_subject` and
`header_safe` are pure readers of one handshake's facts.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from cryptography import x509

from gateway.config.model import ListenerTls


class ConnectionTls(Protocol):
    """One HTTPS listener's TLS termination, as a connection on it sees it."""

    @property
    def tls(self) -> ListenerTls:
        """The listener's TLS settings (mTLS: `client_ca_file`, `client_subject_header`)."""
        ...

    def server_name(self, ssl_object: ssl.SSLObject | None) -> str:
        """The SNI the client sent on this connection ("" when none); asked once, at accept."""
        ...

    def covers(self, sni: str, host: str) -> bool:
        """Whether a request for `host` may travel on a connection opened for `sni`
        (the same certificate answers both names; RFC 9110 7.4: otherwise 421)."""
        ...


def peer_subject(ssl_object: ssl.SSLObject | None) -> str:
    """The verified client certificate's subject as RFC 4514 text, "" when none was sent."""
    if ssl_object is None:
        return ""
    der = ssl_object.getpeercert(binary_form=True)
    if not der:
        return ""
    return x509.load_der_x509_certificate(der).subject.rfc4514_string()


def header_safe(text: str) -> bytes:
    """`text` as a header value: UTF-8, control characters written as `\\xNN`."""
    return "".join(c if " " <= c != "\x7f" else f"\\x{ord(c):02x}" for c in text).encode("utf-8")
