"""HTTP/1.1 head rules for the proxy: what is hop-by-hop, what is refused, how heads are built.

Pure functions and constants, no sockets: `http.proxy` and the connection cores call
them on the request path, tests call them with plain bytes. Headers travel as lists
of `(name, value)` byte pairs in arrival order; names keep their original case
(only compared lowercased) so upstreams see what clients sent.

Strictness (RFC 9112): llhttp, under httptools, already refuses Content-Length
with Transfer-Encoding, duplicate or comma-joined Content-Length, bad chunk
sizes, obs-fold, bare CR, invalid name tokens and control characters in
values. What it lets through and we refuse here: a Transfer-Encoding other than
exactly `chunked` (501), versions other than 1.0/1.1 (505), a missing or
repeated Host on 1.1 (400), CONNECT (501), oversized request lines (414) and
heads (431). `HeadError` carries the status and the `portway-error` cause.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import ItemsView, Iterator, KeysView, Sequence
from typing import Final

Headers = list[tuple[bytes, bytes]]

FORWARDING: Final = frozenset(
    {b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host", b"forwarded"}
)

REASONS: Final[dict[int, bytes]] = {
    100: b"Continue",
    101: b"Switching Protocols",
    102: b"Processing",
    103: b"Early Hints",
    200: b"OK",
    201: b"Created",
    202: b"Accepted",
    204: b"No Content",
    206: b"Partial Content",
    301: b"Moved Permanently",
    302: b"Found",
    303: b"See Other",
    304: b"Not Modified",
    307: b"Temporary Redirect",
    308: b"Permanent Redirect",
    400: b"Bad Request",
    401: b"Unauthorized",
    403: b"Forbidden",
    404: b"Not Found",
    405: b"Method Not Allowed",
    408: b"Request Timeout",
    413: b"Content Too Large",
    414: b"URI Too Long",
    417: b"Expectation Failed",
    421: b"Misdirected Request",
    426: b"Upgrade Required",
    429: b"Too Many Requests",
    431: b"Request Header Fields Too Large",
    500: b"Internal Server Error",
    501: b"Not Implemented",
    502: b"Bad Gateway",
    503: b"Service Unavailable",
    504: b"Gateway Timeout",
    505: b"HTTP Version Not Supported",
}
_STATUS_LINES: Final[dict[int, bytes]] = {}

ERROR_STATUS: Final[dict[str, int]] = {
    "no_route": 404,
    "expectation_failed": 417,
    "request_body_timeout": 408,
    "request_body_too_large": 413,
    "misdirected_request": 421,
    "no_healthy_upstream": 503,
    "overflow": 503,
    "upstream_connect_failure": 503,
    "upstream_reset": 502,
    "upstream_protocol_error": 502,
    "upstream_timeout": 504,
    "request_timeout": 504,
    "gateway_status": 502,
    "server_status": 502,
}


class HeadError(Exception):
    """A request the proxy refuses to forward; answered with `status` and the connection closed."""

    def __init__(self, status: int, cause: str) -> None:
        super().__init__(f"{status} {cause}")
        self.status = status
        self.cause = cause


def status_line(status: int) -> bytes:
    """`HTTP/1.1 200 OK\\r\\n`, memoized: one dict lookup on the hot path."""
    line = _STATUS_LINES.get(status)
    if line is None:
        reason = REASONS.get(status, b"Status")
        line = b"HTTP/1.1 %d %s\r\n" % (status, reason)
        _STATUS_LINES[status] = line
    return line


def parser_error_status(message: str, transfer_encoding: bytes | None, version: str) -> HeadError:
    """Map an llhttp error to the status RFC 9112 asks for."""
    if transfer_encoding is not None and transfer_encoding.strip().lower() != b"chunked":
        return HeadError(501, "unsupported_transfer_encoding")
    if "invalid http version" in message.lower():
        return HeadError(505, "unsupported_http_version")
    return HeadError(400, "bad_request")


_HOST: Final = re.compile(rb"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~!$&'()*+,;=%]*)(?::[0-9]*)?")
"""RFC 9110 7.2 / RFC 3986 3.2.2: `uri-host [ ":" port ]`, no userinfo."""


def check_host(value: bytes) -> None:
    """A Host (or absolute-form authority) that is not `host[:port]` is a 400 (RFC 9112 3.2)."""
    if _HOST.fullmatch(value) is None:
        raise HeadError(400, "invalid_host")


def check_version(version: str) -> None:
    if version not in ("1.1", "1.0"):
        raise HeadError(505, "unsupported_http_version")


def check_transfer_encoding(value: bytes) -> None:
    """Only `chunked`, alone: any other coding would have to be decoded to re-frame."""
    if value.strip().lower() != b"chunked":
        raise HeadError(501, "unsupported_transfer_encoding")


def split_target(target: bytes) -> tuple[bytes, bytes, bytes]:
    """Request target → (authority or b"", path, query); absolute-form's authority is returned.

    origin-form `/p?q` and absolute-form `http://h/p?q` are accepted; `*` is
    kept as a path (OPTIONS *); authority-form (CONNECT) never reaches here.
    """
    authority = b""
    if not target.startswith(b"/") and target != b"*":
        scheme, sep, rest = target.partition(b"://")
        if not sep or scheme.lower() not in (b"http", b"https"):
            raise HeadError(400, "bad_request_target")
        authority, slash, rest = rest.partition(b"/")
        target = slash + rest if slash else b"/"
        if not authority:
            raise HeadError(400, "bad_request_target")
    path, _, query = target.partition(b"?")
    return authority, path, query


def host_name(authority: bytes) -> str:
    """Host header → routing host: lowercased, port removed, IPv6 brackets kept off."""
    host = authority.decode("latin-1").strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    name, _, _ = host.partition(":")
    return name


def error_response(
    status: int,
    cause: str,
    *,
    close: bool,
    request_id: bytes = b"",
    extra: Headers | None = None,
    head_only: bool = False,
) -> bytes:
    """A short text answer with `portway-error: cause`, complete with framing."""
    reason = cause.encode("ascii", "replace")
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"portway-error", reason),
        *(extra or ()),
    ]
    body = b"portway: " + reason + b"\n"
    return local_response(
        status, headers, body, close=close, request_id=request_id, head_only=head_only
    )


NO_BODY_STATUSES: Final = frozenset({204, 304})
"""Statuses whose responses never carry a body (with every 1xx), RFC 9110 6.4.1."""


def local_response(
    status: int,
    headers: Sequence[tuple[bytes, bytes]],
    body: bytes,
    *,
    close: bool,
    request_id: bytes = b"",
    extra: bytes = b"",
    head_only: bool = False,
) -> bytes:
    """A response the gateway makes itself, framed exactly (RFC 9110 6.4.1, 8.6).

    A 1xx, 204 or 304 has no body, and 1xx and 204 no Content-Length either;
    an answer to HEAD (`head_only`) keeps the Content-Length the body would
    have had and drops the body. `extra` are header lines already joined.
    """
    lines = [status_line(status)]
    for name, value in headers:
        lines.append(name + b": " + value + b"\r\n")
    if extra:
        lines.append(extra)
    if request_id:
        lines.append(b"x-request-id: " + request_id + b"\r\n")
    bodiless = status < 200 or status in NO_BODY_STATUSES
    if not bodiless:
        lines.append(b"content-length: %d\r\n" % len(body))
    if close:
        lines.append(b"connection: close\r\n")
    lines.append(b"\r\n")
    if body and not bodiless and not head_only:
        lines.append(body)
    return b"".join(lines)


def chunk(data: bytes) -> list[bytes]:
    """One chunk of a chunked body, as pieces for writelines (no copy of `data`)."""
    return [b"%x\r\n" % len(data), data, b"\r\n"]


LAST_CHUNK: Final = b"0\r\n\r\n"


def is_trusted(
    client_ip: str, networks: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network]
) -> bool:
    """Whether forwarding headers from this peer may be believed (settings.trusted_proxies)."""
    if not networks or not client_ip:
        return False
    try:
        addr = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    return any(addr.version == net.version and addr in net for net in networks)


def forwarded_for_node(client_ip: str) -> bytes:
    """RFC 7239 node: IPv6 addresses are quoted and bracketed."""
    if ":" in client_ip:
        return b'"[' + client_ip.encode("ascii") + b']"'
    return client_ip.encode("ascii")


def forwarding_headers(
    incoming: dict[bytes, bytes], *, trusted: bool, client_ip: bytes, proto: bytes, host: bytes
) -> Headers:
    """X-Forwarded-For/-Proto/-Host and Forwarded for the upstream request.

    From a trusted peer the incoming values are kept and this hop appended;
    from anyone else they were dropped on arrival and are replaced here.
    """
    xff = incoming.get(b"x-forwarded-for") if trusted else None
    xfp = incoming.get(b"x-forwarded-proto") if trusted else None
    xfh = incoming.get(b"x-forwarded-host") if trusted else None
    fwd = incoming.get(b"forwarded") if trusted else None
    node = forwarded_for_node(client_ip.decode("ascii"))
    element = b"for=" + node + b";proto=" + proto
    if host:
        element += b';host="' + host.replace(b'"', b"") + b'"'
    return [
        (b"X-Forwarded-For", xff + b", " + client_ip if xff else client_ip),
        (b"X-Forwarded-Proto", xfp or proto),
        (b"X-Forwarded-Host", xfh or host),
        (b"Forwarded", fwd + b", " + element if fwd else element),
    ]


class HeaderView:
    """Lowercased `str` view of raw request headers for routing, decoded on first use.

    Most requests are routed on host and path alone; building a dict of every
    header for them would be wasted work on the hot path. The proxy keeps one
    view per connection and refills it per request: `raw` set to the new
    headers and `decoded` to None.
    """

    __slots__ = ("decoded", "raw")

    def __init__(self, raw: Headers) -> None:
        self.raw = raw
        self.decoded: dict[str, str] | None = None

    def as_dict(self) -> dict[str, str]:
        if self.decoded is None:
            out: dict[str, str] = {}
            for name, value in self.raw:
                key = name.decode("latin-1").lower()
                text = value.decode("latin-1")
                out[key] = out[key] + ", " + text if key in out else text
            self.decoded = out
        return self.decoded

    def get(self, key: str, default: str | None = None) -> str | None:
        return self.as_dict().get(key, default)

    def __getitem__(self, key: str) -> str:
        return self.as_dict()[key]

    def __contains__(self, key: object) -> bool:
        return key in self.as_dict()

    def __iter__(self) -> Iterator[str]:
        return iter(self.as_dict())

    def __len__(self) -> int:
        return len(self.as_dict())

    def keys(self) -> KeysView[str]:
        return self.as_dict().keys()

    def items(self) -> ItemsView[str, str]:
        return self.as_dict().items()
