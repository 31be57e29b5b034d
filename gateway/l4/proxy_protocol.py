"""The PROXY protocol (HAProxy, versions 1 and 2): who the client is behind an L4 balancer.

Pure: bytes in, a `ProxyHeader` and the number of bytes it took out. A
listener with `proxyProtocol: true` requires the header first on every
connection (a connection without one is closed: accepting both would let any
client claim any address) and then treats the carried source address as the
client's, for access rules, rate limits, X-Forwarded-For and the access log.
`LOCAL` (v2) and `UNKNOWN` (v1) headers, sent by balancers for their own
health checks, keep the socket's address.

Spec: https://www.haproxy.org/download/2.9/doc/proxy-protocol.txt
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass
from typing import Final

V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
V1_MAX: Final = 107
"""The longest v1 line, CRLF included."""


class ProxyProtocolError(ValueError):
    """The connection does not start with a valid PROXY protocol header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the balancer said: the client's address and port ("" / 0 for LOCAL/UNKNOWN)."""

    source: str
    source_port: int
    destination: str = ""
    destination_port: int = 0


LOCAL: Final = ProxyHeader("", 0)


def parse_proxy_header(data: bytes) -> tuple[ProxyHeader, int] | None:
    """(header, bytes used) from the start of `data`; None when more bytes are needed.

    Raises `ProxyProtocolError` as soon as the bytes cannot become a header.
    """
    if data[:1] == b"P":
        return _v1(data)
    if data[:1] == b"\r":
        return _v2(data)
    if data:
        raise ProxyProtocolError("no PROXY protocol header")
    return None


def _v1(data: bytes) -> tuple[ProxyHeader, int] | None:
    if not b"PROXY "[: len(data)] == data[:6]:
        raise ProxyProtocolError("not a PROXY v1 line")
    end = data.find(b"\r\n", 0, V1_MAX)
    if end < 0:
        if len(data) >= V1_MAX:
            raise ProxyProtocolError("PROXY v1 line too long")
        return None
    words = data[:end].split(b" ")
    if len(words) >= 2 and words[1] == b"UNKNOWN":
        return LOCAL, end + 2
    if len(words) != 6 or words[1] not in (b"TCP4", b"TCP6"):
        raise ProxyProtocolError("malformed PROXY v1 line")
    version = 4 if words[1] == b"TCP4" else 6
    source = _address(words[2], version)
    destination = _address(words[3], version)
    return ProxyHeader(source, _port(words[4]), destination, _port(words[5])), end + 2


def _address(word: bytes, version: int) -> str:
    try:
        addr = ipaddress.ip_address(word.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        raise ProxyProtocolError("bad address in PROXY header") from None
    if addr.version != version:
        raise ProxyProtocolError("address family does not match the PROXY header")
    return str(addr)


def _port(word: bytes) -> int:
    if not word.isdigit() or (len(word) > 1 and word[:1] == b"0") or int(word) > 65535:
        raise ProxyProtocolError("bad port in PROXY header")
    return int(word)


def _v2(data: bytes) -> tuple[ProxyHeader, int] | None:
    if not V2_SIGNATURE.startswith(data[:12]):
        raise ProxyProtocolError("not a PROXY v2 signature")
    if len(data) < 16:
        return None
    ver_cmd, family, length = data[12], data[13], struct.unpack("!H", data[14:16])[0]
    if ver_cmd >> 4 != 2 or ver_cmd & 0x0F > 1:
        raise ProxyProtocolError("bad PROXY v2 version or command")
    total = 16 + length
    if len(data) < total:
        return None
    if ver_cmd & 0x0F == 0:  # LOCAL: the balancer's own connection
        return LOCAL, total
    body = data[16:total]
    if family == 0x11 and length >= 12:  # TCP over IPv4
        src, dst, sport, dport = struct.unpack("!4s4sHH", body[:12])
        return ProxyHeader(
            str(ipaddress.IPv4Address(src)), sport, str(ipaddress.IPv4Address(dst)), dport
        ), total
    if family == 0x21 and length >= 36:  # TCP over IPv6
        src, dst, sport, dport = struct.unpack("!16s16sHH", body[:36])
        return ProxyHeader(
            str(ipaddress.IPv6Address(src)), sport, str(ipaddress.IPv6Address(dst)), dport
        ), total
    if family == 0x00:  # UNSPEC
        return LOCAL, total
    raise ProxyProtocolError("unsupported PROXY v2 address family")
