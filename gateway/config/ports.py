"""Listeners sharing one address:port, told apart by hostname (Gateway API).

Several HTTP listeners, or several HTTPS listeners, may name the same
address and port: the gateway opens one socket for them and each request
goes to the listener whose hostname matches its Host most specifically
(`gateway.routing.hosts.ListenerHosts`); routes attach to a listener by its
name, as Gateway API's `parentRefs[].sectionName` does. For HTTPS the SNI
picks the certificate among all the listeners' certificates.

One socket serves them all, so what acts on a connection before its first
request is known must be the same on each: the protocol, the PROXY
protocol, the access rules, the body limit, and the TLS settings other than
the certificates (`sharing_problem` says which differs). And their
hostnames must not overlap: two listeners taking the same hostname, or
both taking every hostname, could not be told apart.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Sequence

from gateway.config.listeners import Listener, ListenerTls
from gateway.config.values import ListenerProtocol

_SHAREABLE = (ListenerProtocol.HTTP, ListenerProtocol.HTTPS)


def socket_key(listener: Listener) -> str:
    """`address:port` of a listener's socket (IPv6 in brackets)."""
    address = str(ipaddress.ip_address(listener.address))
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{listener.port}"


def socket_groups(listeners: Sequence[Listener]) -> dict[str, tuple[Listener, ...]]:
    """The sockets to open: listener name → (listener,) for a listener alone on its
    address:port, `address:port` → its listeners (config order) for a shared one."""
    by_socket: dict[str, list[Listener]] = {}
    for listener in listeners:
        by_socket.setdefault(socket_key(listener), []).append(listener)
    out: dict[str, tuple[Listener, ...]] = {}
    for key, group in by_socket.items():
        if len(group) == 1:
            out[group[0].name] = (group[0],)
        else:
            out[key] = tuple(group)
    return out


def shared_tls(listeners: Sequence[Listener]) -> ListenerTls | None:
    """The TLS settings of a shared HTTPS socket: the first listener's, with every
    listener's certificates (in config order: the first is the default)."""
    first = listeners[0].tls
    if first is None:
        return None
    certificates = tuple(
        c for lst in listeners if lst.tls is not None for c in lst.tls.certificates
    )
    return dataclasses.replace(first, certificates=certificates)


def sharing_problem(first: Listener, second: Listener) -> str | None:
    """Why two listeners on the same address:port cannot share it; None when they can."""
    if first.protocol is not second.protocol or first.protocol not in _SHAREABLE:
        return (
            "only HTTP listeners, or HTTPS listeners, share an address:port (told apart by "
            "hostname); a TCP or TLS passthrough listener needs a port of its own"
        )
    if not first.hostnames and not second.hostnames:
        return "both take every hostname: give them `hostnames` to tell them apart"
    same = sorted({h.lower() for h in first.hostnames} & {h.lower() for h in second.hostnames})
    if same:
        return f"both take hostname {same[0]!r}"
    for field, a, b in _socket_settings(first, second):
        if a != b:
            return (
                f"listeners sharing an address:port must agree on `{field}` (one socket "
                "serves them; a different one per listener is not supported yet)"
            )
    return None


def _socket_settings(first: Listener, second: Listener) -> list[tuple[str, object, object]]:
    pairs: list[tuple[str, object, object]] = [
        ("proxyProtocol", first.proxy_protocol, second.proxy_protocol),
        ("access", first.access, second.access),
        ("maxRequestBodyBytes", first.max_request_body_bytes, second.max_request_body_bytes),
    ]
    a, b = first.tls, second.tls
    if a is not None and b is not None:
        pairs += [
            ("tls.minVersion", a.min_version, b.min_version),
            ("tls.alpn", a.alpn, b.alpn),
            ("tls.clientAuth", a.client_auth, b.client_auth),
            ("tls.clientCaFile", a.client_ca_file, b.client_ca_file),
            ("tls.clientSubjectHeader", a.client_subject_header, b.client_subject_header),
        ]
    return pairs
