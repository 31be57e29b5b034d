"""Address sets and the client address: pure, built once per rule, asked per request.

`NetworkSet` holds CIDRs (IPv4 and IPv6) as sorted, merged integer ranges per
IP version, so membership is one `bisect` whatever the number of networks.
IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket
reports for an IPv4 peer) are matched as the IPv4 address they carry.

`client_address` says who the client is: the socket peer (or the address a
PROXY protocol header gave, which the listener put in its place), unless the
peer is a trusted proxy that sent X-Forwarded-For: then the rightmost entry,
the address that proxy itself saw connect. Entries further left are the
client's own claims and are never believed (nginx `real_ip_recursive off`).
The proxy keeps forwarding headers only from trusted peers (`ex.fwd` is None
otherwise), so a spoofed X-Forwarded-For from anyone else changes nothing.
"""

from __future__ import annotations

import ipaddress
from bisect import bisect_right
from collections.abc import Iterable

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_address(text: str) -> Address | None:
    """`text` as an address (IPv4-mapped IPv6 unwrapped, brackets and zone dropped), or None."""
    text = text.strip()
    if text.startswith("["):
        text = text[1 : text.find("]")]
    try:
        addr = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class NetworkSet:
    """CIDRs as merged integer ranges; `address in set` is one bisect (see module docstring)."""

    __slots__ = ("_ends", "_starts")

    def __init__(self, cidrs: Iterable[str]) -> None:
        ranges: dict[int, list[tuple[int, int]]] = {4: [], 6: []}
        for cidr in cidrs:
            net = ipaddress.ip_network(cidr, strict=False)
            if isinstance(net, ipaddress.IPv6Network) and net.network_address.ipv4_mapped:
                net = ipaddress.ip_network(
                    f"{net.network_address.ipv4_mapped}/{max(0, net.prefixlen - 96)}"
                )
            ranges[net.version].append((int(net.network_address), int(net.broadcast_address)))
        self._starts: dict[int, list[int]] = {}
        self._ends: dict[int, list[int]] = {}
        for version, spans in ranges.items():
            starts: list[int] = []
            ends: list[int] = []
            for start, end in sorted(spans):
                if ends and start <= ends[-1] + 1:
                    ends[-1] = max(ends[-1], end)
                else:
                    starts.append(start)
                    ends.append(end)
            self._starts[version] = starts
            self._ends[version] = ends

    def __contains__(self, addr: object) -> bool:
        if not isinstance(addr, ipaddress.IPv4Address | ipaddress.IPv6Address):
            return False
        starts = self._starts[addr.version]
        index = bisect_right(starts, int(addr)) - 1
        return index >= 0 and int(addr) <= self._ends[addr.version][index]

    def __bool__(self) -> bool:
        return bool(self._starts[4] or self._starts[6])


def client_address(peer: str, forwarded_for: bytes | None) -> str:
    """Who the client is: the peer, or the last X-Forwarded-For hop of a trusted peer.

    `forwarded_for` is the X-Forwarded-For value kept for a trusted peer (None
    otherwise); an entry that is not an address leaves the peer in place.
    """
    if not forwarded_for:
        return peer
    last = forwarded_for.rpartition(b",")[2].strip().decode("latin-1")
    addr = parse_address(last)
    return str(addr) if addr is not None else peer
