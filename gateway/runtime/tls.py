"""Server-side TLS for HTTPS listeners: one SSLContext, certificate chosen by SNI.

`server_context(ListenerTls)` loads every configured certificate into its own
context and returns the first one as the listener's context, with an
`sni_callback` that moves the handshake to the context whose host names match
the requested server name: exact names first, then wildcards (`*.example.com`
covers exactly one label, as browsers read it), else the first certificate.
Certificates with no `hostnames` answer for the names they were given and
act as the default.
"""

from __future__ import annotations

import ssl

from gateway.config.model import ListenerTls

_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


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


def server_context(tls: ListenerTls) -> ssl.SSLContext:
    """The listener's SSLContext; see module docstring for certificate selection."""
    contexts = [_context(tls, cert.cert_file, cert.key_file) for cert in tls.certificates]
    exact: dict[str, int] = {}
    wildcard: dict[str, int] = {}
    for index, cert in enumerate(tls.certificates):
        for hostname in cert.hostnames:
            name = hostname.lower().rstrip(".")
            if name.startswith("*."):
                wildcard.setdefault(name[2:], index)
            else:
                exact.setdefault(name, index)
    default = contexts[0]

    def choose(sock: ssl.SSLObject, server_name: str | None, _: ssl.SSLContext) -> None:
        if server_name:
            index = certificate_for(server_name, exact, wildcard)
            if index is not None and index != 0:
                sock.context = contexts[index]
        return None

    if len(contexts) > 1:
        default.sni_callback = choose  # type: ignore[assignment]
    return default


def _context(tls: ListenerTls, cert_file: str, key_file: str) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = _VERSIONS[tls.min_version]
    ctx.load_cert_chain(cert_file, key_file)
    if tls.alpn:
        ctx.set_alpn_protocols(list(tls.alpn))
    ctx.options |= ssl.OP_NO_COMPRESSION
    return ctx
