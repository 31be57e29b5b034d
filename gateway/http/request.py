"""The request half of the HTTP proxy: client bytes → validated `Exchange`s.

`RequestReader` is mixed into `http.proxy.HttpProxy` and holds the httptools
callbacks of its request parser. It enforces the strict rules of `http.head`
while the head streams in (refusals are `HeadError`s raised from the
callbacks, answered by the protocol before anything is forwarded), sorts the
headers that are the proxy's business (hop-by-hop, forwarding, Host, framing)
from the ones it forwards, and turns a complete head into an `Exchange`:
started at once when the connection is free, else queued behind the active
one (pipelining, reading paused). Body bytes go straight to the bound
upstream connection, re-chunked when needed, or are buffered until one is
bound.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

import httptools

from gateway.context import GatewayContext
from gateway.http import head as hh
from gateway.http.deadline_watch import deadline_watch
from gateway.http.exchange import (
    BODY_BUFFER_LIMIT,
    BUFFER,
    DONE,
    PIPELINE,
    Exchange,
)
from gateway.transport import UNCONNECTED, Transport, unconnected

if TYPE_CHECKING:
    from gateway.ops.observer import GatewayObserver
    from gateway.upstream.connection import UpstreamConnection
    from gateway.upstream.pool import PoolSet

_HOST: Final = 0
_CL: Final = 1
_TE: Final = 2
_CONN: Final = 3
_UPGRADE: Final = 4
_HOP: Final = 5
_FWD: Final = 6
_EXPECT: Final = 7
_REQID: Final = 8
_XFF: Final = 9
_TRACE: Final = 10
_PLAIN: Final = 11
_ORIGIN: Final = 12
_SPECIAL: Final[dict[bytes, int]] = {
    b"host": _HOST,
    b"content-length": _CL,
    b"transfer-encoding": _TE,
    b"connection": _CONN,
    b"upgrade": _UPGRADE,
    b"keep-alive": _HOP,
    b"te": _HOP,
    b"trailer": _HOP,
    b"x-forwarded-for": _XFF,
    b"x-forwarded-proto": _FWD,
    b"x-forwarded-host": _FWD,
    b"forwarded": _FWD,
    b"expect": _EXPECT,
    b"x-request-id": _REQID,
    b"traceparent": _TRACE,
    b"origin": _ORIGIN,
}

_EXACT: Final[dict[bytes, int]] = {
    b"Host": _HOST,
    b"Content-Length": _CL,
    b"User-Agent": _PLAIN,
    b"Accept": _PLAIN,
    b"Accept-Encoding": _PLAIN,
    b"Accept-Language": _PLAIN,
    b"Content-Type": _PLAIN,
    b"Cookie": _PLAIN,
    b"Referer": _PLAIN,
    b"Authorization": _PLAIN,
    b"Cache-Control": _PLAIN,
    b"Origin": _ORIGIN,
    b"If-None-Match": _PLAIN,
    b"If-Modified-Since": _PLAIN,
}
"""Common header names as clients spell them, sorted without lowercasing first."""


class RequestReader:
    """The base of `HttpProxy`: the connection's state, flow control and request callbacks.

    `HttpProxy` is a single-inheritance chain, `RequestReader` → `TryRunner` →
    `ResponseRelay` → `HttpProxy`, one concern a layer, so that mypyc can
    compile it into one native class (`setup.py`). State that more than one
    layer reads is declared here; `_start` and `_error` are `HttpProxy`'s.
    """

    __slots__ = (
        "active",
        "body_limit",
        "clen",
        "client_ip",
        "closing",
        "conn_tokens",
        "counter",
        "ctx",
        "expect",
        "feed",
        "first_request_idle_s",
        "fwd",
        "hbytes",
        "headers",
        "host",
        "host_count",
        "idle_at",
        "listener",
        "loop",
        "nheaders",
        "now",
        "observe",
        "origin",
        "parser",
        "parsing",
        "paused",
        "pools",
        "queue",
        "rare",
        "ready",
        "refusal",
        "request_id",
        "send",
        "te",
        "traced",
        "transport",
        "trusted",
        "tunnel",
        "upgrade",
        "url",
        "valid_host",
        "watch",
        "write_paused",
    )

    first_request_idle_s: float
    """How long a connection may stay open without sending a first request; after
    a request the matched rule's `timeouts.idle` applies (`gateway.firstRequestTimeout`)."""

    def __init__(self, ctx: GatewayContext, listener: str) -> None:
        self.ctx = ctx
        pools = ctx.pools
        assert pools is not None, "upstream pools are made before listeners start"
        self.pools: PoolSet = pools
        self.listener = listener
        self.loop = asyncio.get_running_loop()
        self.watch = deadline_watch(self.loop)
        self.first_request_idle_s = ctx.settings.first_request_timeout_s
        self.observe = False
        """Whether requests are reported to an observer at all: with `counter`
        set, only counted (`open_request`/`close_request`, unless the request
        carries a traceparent), else `begin`/`end` with a `RequestLog`."""
        self.counter: GatewayObserver | None = None
        """The observer when it only counts (metrics, no access log): called natively."""
        self.transport: Transport = UNCONNECTED
        self.parser = httptools.HttpRequestParser(self)
        self.feed: Callable[[bytes], None] = self.parser.feed_data
        """Bound methods called per request are looked up once, here and in
        `connection_made` (`send`, `now`): a call by name costs a method lookup."""
        self.now: Callable[[], float] = self.watch.now
        self.send: Callable[[bytes], object] = unconnected
        self.client_ip = ""
        self.trusted = False
        self.active: Exchange | None = None
        self.parsing: Exchange | None = None
        self.queue: deque[Exchange] | None = None
        self.ready: Exchange | None = None
        self.paused = 0
        self.write_paused = False
        self.closing = False
        self.tunnel: UpstreamConnection | None = None
        self.idle_at = 0.0
        self.refusal: hh.HeadError | None = None
        self.rare = True
        """Whether a header other than Host and plain ones set head state (`on_message_begin`)."""
        self.body_limit = -1
        """The listener's request body limit (`maxRequestBodyBytes`), -1 when none."""
        self.valid_host = b""
        """The last Host value checked on this connection (clients repeat theirs)."""
        self.on_message_begin()

    def _start(self, ex: Exchange) -> None:
        raise NotImplementedError  # HttpProxy's

    def _error(self, ex: Exchange, cause: str) -> None:
        raise NotImplementedError  # HttpProxy's

    def _pause(self, reason: int) -> None:
        """Stop reading from the client for `reason` (a bit of `http.exchange`'s masks)."""
        if not self.paused:
            self.transport.pause_reading()
        self.paused |= reason

    def _resume(self, reason: int) -> None:
        """Drop `reason`; reading resumes once no reason is left."""
        if self.paused & reason:
            self.paused &= ~reason
            if not self.paused:
                self.transport.resume_reading()

    # --- httptools callbacks -------------------------------------------------
    def on_message_begin(self) -> None:
        """Reset the head state (also run once by `__init__`)."""
        self.url = b""
        self.headers: hh.Headers = []
        self.nheaders = 0
        self.hbytes = 0
        self.host: bytes | None = None
        self.host_count = 0
        if not self.rare:
            return  # no header but Host and plain ones came: the rest is still reset
        self.rare = False
        self.te: bytes | None = None
        self.conn_tokens: list[bytes] | None = None
        self.upgrade = b""
        self.fwd: dict[bytes, bytes] | None = None
        self.expect = False
        self.request_id = b""
        self.traced = False
        self.clen: bytes | None = None
        self.origin = b""

    def on_url(self, url: bytes) -> None:
        self.url += url
        if len(self.url) > self.ctx.settings.max_request_line_bytes:
            raise hh.HeadError(414, "request_line_too_long")

    def on_header(self, name: bytes, value: bytes) -> None:
        self.nheaders += 1
        self.hbytes += len(name) + len(value) + 4
        settings = self.ctx.settings
        if self.nheaders > settings.max_headers or self.hbytes > settings.max_header_bytes:
            raise hh.HeadError(431, "request_headers_too_large")
        kind = _EXACT.get(name)
        if kind is None:
            lname = name.lower()
            kind = _SPECIAL.get(lname)
            if kind is None:
                if not lname.startswith(b"proxy-"):
                    self.headers.append((name, value))
                return
        if kind == _PLAIN:
            self.headers.append((name, value))
            return
        if kind == _HOST:
            self.host_count += 1
            self.host = value
            return
        self.rare = True
        if kind == _CL:
            self.clen = value
            self.headers.append((name, value))
        elif kind == _TE:
            self.te = value
            hh.check_transfer_encoding(value)
        elif kind == _CONN:
            self.conn_tokens = (self.conn_tokens or []) + hh.connection_tokens(value)
        elif kind == _UPGRADE:
            self.upgrade = value
        elif kind in (_FWD, _XFF):
            if self.trusted:
                lname = name.lower()
                fwd = self.fwd if self.fwd is not None else {}
                old = fwd.get(lname)
                fwd[lname] = old + b", " + value if old else value
                self.fwd = fwd
        elif kind == _EXPECT:
            if value.strip().lower() != b"100-continue":
                raise hh.HeadError(417, "expectation_failed")  # RFC 9110 10.1.1 MAY
            self.expect = True
        elif kind == _REQID:
            self.request_id = value
            self.headers.append((name, value))
        elif kind == _TRACE:
            self.traced = True
            self.headers.append((name, value))
        elif kind == _ORIGIN:
            self.origin = value  # CORS reads it (`Exchange.origin`): no header scan
            self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        parser = self.parser
        keep_alive: bool = parser.should_keep_alive()
        if keep_alive and self.conn_tokens is None:
            # llhttp accepts only versions 0.9, 1.0, 1.1 and 2.0, and keeps a
            # connection alive by default only for 1.1 (the others need
            # `Connection: keep-alive`): so this is 1.1, and the parser's
            # get_http_version (~0.3 µs: it formats a string) is not needed
            version = "1.1"
        else:
            version = parser.get_http_version()
            if version != "1.1":
                hh.check_version(version)
                if self.te is not None:  # RFC 9112 6.1: faulty framing in HTTP/1.0
                    raise hh.HeadError(400, "transfer_encoding_in_http_1_0")
        method: bytes = parser.get_method()
        if method == b"CONNECT":
            raise hh.HeadError(501, "connect_not_supported")
        url = self.url
        if b"#" in url:  # a fragment is not part of any request-target form
            raise hh.HeadError(400, "bad_request_target")
        if url[:1] == b"/":  # origin-form, nearly every request
            authority = b""
            path, _, query = url.partition(b"?")
        else:
            if url == b"*" and method != b"OPTIONS":  # asterisk-form is OPTIONS only
                raise hh.HeadError(400, "bad_request_target")
            authority, path, query = hh.split_target(url)
        if authority:
            host = authority
        elif self.host_count == 1 and self.host:
            host = self.host
        elif self.host_count > 1 or version == "1.1":
            raise hh.HeadError(400, "missing_or_repeated_host")
        else:
            host = b""
        if host != self.valid_host:
            hh.check_host(host)
            self.valid_host = host
        headers = self.headers
        if self.conn_tokens:
            # a Connection header cannot make the framing disappear upstream
            gone = frozenset(self.conn_tokens) - {b"content-length"}
            headers = [(n, v) for n, v in headers if n.lower() not in gone]
        upgrade = self.upgrade if self.upgrade and parser.should_upgrade() else b""
        chunked = self.te is not None
        has_body = chunked or (self.clen is not None and self.clen != b"0")
        ex = Exchange(method, path, query, version, host, headers, self.request_id, self.fwd)
        if self.clen is not None:
            ex.content_length = int(self.clen)  # llhttp accepted it: digits only
        limit = self.body_limit
        if limit >= 0:
            if ex.content_length > limit:
                raise hh.HeadError(413, "request_body_too_large")
            ex.body_limit = limit
        ex.traced = self.traced
        if self.origin:
            ex.origin = self.origin
        ex.keep_alive = keep_alive and not self.closing
        ex.chunked = chunked
        ex.body_done = not has_body
        ex.upgrade = upgrade
        ex.expect = self.expect and has_body and version == "1.1"  # 1.0: MUST ignore
        if not ex.keep_alive:
            self.closing = True
        self.parsing = ex
        if self.active is None:
            # started once this read is parsed whole: a request whose body turns out
            # malformed in the same read is refused before anything is forwarded
            self.active = ex
            self.ready = ex
        else:
            if self.queue is None:
                self.queue = deque()
            self.queue.append(ex)
            self._pause(PIPELINE)

    def on_body(self, body: bytes) -> None:
        ex = self.parsing
        if ex is None or ex.done:
            return
        ex.bytes_in += len(body)
        if ex.bytes_in > ex.body_limit >= 0:
            raise hh.HeadError(413, "request_body_too_large")
        conn = ex.conn
        if conn is not None and ex is self.active and conn.transport is not None:
            ex.replay = None
            ex.body_sent = True
            if ex.chunked:
                conn.transport.writelines(hh.chunk(body))
            else:
                conn.transport.write(body)
        elif ex.buffer(body) > BODY_BUFFER_LIMIT:
            self._pause(BUFFER)

    def on_message_complete(self) -> None:
        ex = self.parsing
        self.parsing = None
        if ex is None:
            return
        if ex.upgrade:
            return  # data_received sees the upgrade and buffers what follows
        ex.body_done = True
        conn = ex.conn
        if ex.chunked and conn is not None and ex is self.active and conn.transport is not None:
            conn.transport.write(hh.LAST_CHUNK)
        if self.closing:
            self._pause(DONE)
