"""Connections to endpoints: the HTTP/1.1 response side, pooled per endpoint.

`UpstreamConnection` is an asyncio Protocol that parses responses with
httptools and hands every event to its current *sink* (the client-side
exchange that holds it): `on_response_head`, `on_response_body`,
`on_response_complete`, `upstream_failed`, `tunnel_data`, and the two flow
control calls `upstream_pause_writing`/`upstream_resume_writing` (which pause
and resume reading from the client: backpressure from upstream to client).

`EndpointPool` keeps idle keep-alive connections per endpoint (LIFO, so the
warmest socket is reused and the cold ones age out), bounds the total by the
backend's circuit breaker `max_connections` (callers beyond it wait, up to
`max_pending_requests`, else `CircuitOpen`), and never takes back a connection
whose response was not read to the end. `PoolSet` is `ctx.pools`: one pool per
endpoint key plus one periodic timer that closes connections idle longer than
`idle_timeout_s` and forgets empty pools of endpoints that left the table.

Failures are types so the retry logic can tell them apart: `ConnectFailure`
(nothing was sent: always safe to retry), `UpstreamReset` (closed before or
during the response), `UpstreamTimeout`, `UpstreamProtocolError`, `CircuitOpen`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import Any, Protocol

import httptools

from gateway.http_head import HOP_BY_HOP, connection_tokens
from gateway.routing.endpoints import Endpoint


class UpstreamFailure(Exception):
    """Base of upstream failures; `cause` is the `portway-error` token."""

    cause = "upstream_failure"


class ConnectFailure(UpstreamFailure):
    cause = "upstream_connect_failure"


class UpstreamReset(UpstreamFailure):
    cause = "upstream_reset"


class UpstreamTimeout(UpstreamFailure):
    cause = "upstream_timeout"


class UpstreamProtocolError(UpstreamFailure):
    cause = "upstream_protocol_error"


class CircuitOpen(UpstreamFailure):
    cause = "circuit_open"


class ResponseSink(Protocol):
    """What an upstream connection reports to while it serves one request."""

    def on_response_head(self, conn: UpstreamConnection, status: int) -> None: ...
    def on_response_body(self, data: bytes) -> None: ...
    def on_response_complete(self) -> None: ...
    def upstream_failed(self, failure: UpstreamFailure) -> None: ...
    def tunnel_data(self, data: bytes) -> None: ...
    def flush_head(self) -> None: ...
    def upstream_pause_writing(self) -> None: ...
    def upstream_resume_writing(self) -> None: ...


_PLAIN_CONNECTION = frozenset({b"keep-alive", b"close", b"upgrade"})
"""Connection values naming only hop-by-hop headers, which are dropped anyway."""


class UpstreamConnection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection to an endpoint."""

    __slots__ = (
        "chunked",
        "closed",
        "content_length",
        "dropped",
        "got_head",
        "head_only",
        "idle_since",
        "keep_alive",
        "lines",
        "names",
        "parser",
        "pool",
        "sink",
        "status",
        "transport",
        "tunnel",
        "upgrade",
        "upgraded",
    )

    def __init__(self, pool: EndpointPool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: ResponseSink | None = None
        self.lines: list[bytes] = []
        self.names: list[bytes] = []
        self.dropped: frozenset[bytes] | None = None
        self.upgrade = b""
        self.status = 0
        self.chunked = False
        self.content_length = -1
        self.keep_alive = True
        self.got_head = False
        self.head_only = False
        self.upgraded = False
        self.tunnel = False
        self.closed = False
        self.idle_since = 0.0

    # --- asyncio.Protocol -------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if self.tunnel:
            if self.sink is not None:
                self.sink.tunnel_data(data)
            return
        try:
            self.parser.feed_data(data)
            if self.sink is not None:
                self.sink.flush_head()
        except httptools.HttpParserUpgrade as upgrade:
            self.tunnel = True
            rest = data[upgrade.args[0] :]
            if rest and self.sink is not None:
                self.sink.tunnel_data(rest)
        except httptools.HttpParserError:
            self.fail(UpstreamProtocolError("unparsable response"))

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool.forget(self)
        sink = self.sink
        if sink is None:
            return
        self.sink = None
        if self.tunnel or (self.got_head and not self.chunked and self.content_length < 0):
            sink.on_response_complete()  # close-delimited body (or tunnel) ends here
        else:
            sink.upstream_failed(UpstreamReset("closed before the response ended"))

    def pause_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_pause_writing()

    def resume_writing(self) -> None:
        if self.sink is not None:
            self.sink.upstream_resume_writing()

    # --- httptools callbacks ----------------------------------------------
    def on_message_begin(self) -> None:
        self.lines = []
        self.names = []
        if self.dropped is not None:
            self.dropped = None
        if self.upgrade:
            self.upgrade = b""
        self.chunked = False
        self.content_length = -1
        self.got_head = False

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname in HOP_BY_HOP:
            if lname == b"transfer-encoding":
                self.chunked = value.strip().lower().endswith(b"chunked")
            elif lname == b"connection":
                if value.lower() not in _PLAIN_CONNECTION:
                    tokens = frozenset(connection_tokens(value)) - HOP_BY_HOP
                    self.dropped = (self.dropped or frozenset()) | tokens
            elif lname == b"upgrade":
                self.upgrade = value
            return
        if lname == b"content-length":
            self.content_length = int(value)
        self.lines.append(name + b": " + value + b"\r\n")
        self.names.append(lname)

    def head_lines(self, drop: frozenset[bytes]) -> list[bytes]:
        """The response's end-to-end header lines, minus `drop` and what Connection named."""
        if self.dropped:
            drop = drop | (self.dropped - {b"content-length"})
        if not drop:
            return self.lines
        return [line for name, line in zip(self.names, self.lines, strict=True) if name not in drop]

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            return  # interim response: the proxy answers 100-continue itself
        self.status = status
        self.got_head = True
        self.keep_alive = self.parser.should_keep_alive()
        self.upgraded = status == 101
        if self.sink is not None:
            self.sink.on_response_head(self, status)
        if self.head_only and self.sink is not None and not self.upgraded:
            self._complete()

    def on_body(self, body: bytes) -> None:
        if self.sink is not None:
            self.sink.on_response_body(body)

    def on_message_complete(self) -> None:
        if not self.got_head or self.upgraded:
            return
        if self.head_only:
            # The response to HEAD ended at its head; httptools would read a body
            # for its Content-Length, so this connection cannot be parsed further.
            self.keep_alive = False
            return
        self._complete()

    # --- used by the proxy ------------------------------------------------
    def _complete(self) -> None:
        sink = self.sink
        self.sink = None
        self.got_head = False
        if self.head_only:
            self.close()
        elif self.keep_alive and not self.closed:
            self.pool.release(self)
        else:
            self.close()
        if sink is not None:
            sink.on_response_complete()

    def fail(self, failure: UpstreamFailure) -> None:
        sink = self.sink
        self.sink = None
        self.close()
        if sink is not None:
            sink.upstream_failed(failure)

    def close(self) -> None:
        """Close without reporting to the sink; the pool forgets it on connection_lost."""
        if not self.closed:
            self.closed = True
            self.sink = None
            if self.transport is not None:
                self.transport.abort()

    def bind(self, sink: ResponseSink, *, head_only: bool) -> None:
        self.sink = sink
        self.head_only = head_only
        self.got_head = False


class EndpointPool:
    """Connections to one endpoint; see module docstring for the limits."""

    __slots__ = (
        "endpoint",
        "host_header",
        "idle",
        "loop",
        "max_connections",
        "max_idle",
        "max_pending",
        "server_hostname",
        "ssl",
        "total",
        "waiters",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        endpoint: Endpoint,
        *,
        max_idle: int,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.loop = loop
        self.endpoint = endpoint
        self.idle: list[UpstreamConnection] = []
        self.total = 0
        self.max_connections = 1024
        self.max_pending = 1024
        self.max_idle = max_idle
        self.waiters: deque[asyncio.Future[None]] = deque()
        self.ssl = ssl_context
        self.server_hostname = endpoint.address if ssl_context is not None else None
        address = endpoint.address
        host = f"[{address}]" if ":" in address else address
        self.host_header = f"{host}:{endpoint.port}".encode("ascii")
        """The upstream Host value when the client's is not preserved."""

    def take_idle(self) -> UpstreamConnection | None:
        """A live idle connection, synchronously, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    async def connect(self, timeout_s: float) -> UpstreamConnection:
        """A new connection, waiting for a slot when at `max_connections`."""
        while self.total >= self.max_connections:
            conn = self.take_idle()
            if conn is not None:
                return conn
            if len(self.waiters) >= self.max_pending:
                raise CircuitOpen(f"{self.endpoint.key}: {self.total} connections, queue full")
            waiter: asyncio.Future[None] = self.loop.create_future()
            self.waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, timeout_s)
            except TimeoutError:
                raise CircuitOpen(f"{self.endpoint.key}: no connection slot") from None
            finally:
                if waiter in self.waiters:
                    self.waiters.remove(waiter)
        self.total += 1
        try:
            _, conn = await asyncio.wait_for(
                self.loop.create_connection(
                    lambda: UpstreamConnection(self),
                    self.endpoint.address,
                    self.endpoint.port,
                    ssl=self.ssl,
                    server_hostname=self.server_hostname,
                ),
                timeout_s,
            )
        except TimeoutError:
            self._slot_freed()
            raise ConnectFailure(f"{self.endpoint.key}: connect timed out") from None
        except (OSError, ssl.SSLError) as exc:
            self._slot_freed()
            raise ConnectFailure(f"{self.endpoint.key}: {exc}") from None
        except BaseException:
            self._slot_freed()
            raise
        assert isinstance(conn, UpstreamConnection)
        return conn

    def release(self, conn: UpstreamConnection) -> None:
        """Take back a connection whose response was read to the end."""
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.idle.append(conn)
                conn.idle_since = self.loop.time()
                waiter.set_result(None)
                return
        if len(self.idle) >= self.max_idle:
            conn.close()
            return
        conn.idle_since = self.loop.time()
        self.idle.append(conn)

    def forget(self, conn: UpstreamConnection) -> None:
        """A connection closed: drop it from idle and free its slot."""
        if conn.pool is not self:
            return
        conn.pool = _DETACHED
        if conn in self.idle:
            self.idle.remove(conn)
        self._slot_freed()

    def _slot_freed(self) -> None:
        self.total -= 1
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    def evict_idle(self, older_than: float) -> None:
        keep = []
        for conn in self.idle:
            if conn.idle_since < older_than:
                conn.close()
            else:
                keep.append(conn)
        self.idle[:] = keep

    def close(self) -> None:
        for conn in list(self.idle):
            conn.close()
        self.idle.clear()


class _DetachedPool:
    """Where a forgotten connection points, so late callbacks do nothing."""

    def release(self, conn: UpstreamConnection) -> None:
        conn.close()

    def forget(self, conn: UpstreamConnection) -> None:
        return None

    host_header = b""


_DETACHED: Any = _DetachedPool()


class PoolSet:
    """`ctx.pools`: pools by endpoint key, idle eviction, and the retry budget counters."""

    __slots__ = (
        "active_requests",
        "active_retries",
        "client_ssl",
        "idle_timeout_s",
        "loop",
        "max_idle",
        "pools",
        "timer",
    )

    def __init__(
        self, loop: asyncio.AbstractEventLoop, *, idle_timeout_s: float = 60.0, max_idle: int = 128
    ) -> None:
        self.loop = loop
        self.pools: dict[str, EndpointPool] = {}
        self.idle_timeout_s = idle_timeout_s
        self.max_idle = max_idle
        self.active_requests = 0
        self.active_retries = 0
        self.client_ssl: ssl.SSLContext | None = None
        self.timer: asyncio.TimerHandle | None = loop.call_later(
            min(idle_timeout_s, 5.0), self._sweep
        )

    def pool(self, endpoint: Endpoint, backend: Any) -> EndpointPool:
        """The pool of `endpoint`, limits refreshed from the backend's circuit breaker."""
        pool = self.pools.get(endpoint.key)
        if pool is None:
            tls = bool(getattr(backend, "tls", False))
            pool = EndpointPool(
                self.loop,
                endpoint,
                max_idle=self.max_idle,
                ssl_context=self._client_ssl() if tls else None,
            )
            self.pools[endpoint.key] = pool
        breaker = getattr(backend, "circuit_breaker", None)
        if breaker is not None:
            pool.max_connections = breaker.max_connections
            pool.max_pending = breaker.max_pending_requests
        return pool

    def _client_ssl(self) -> ssl.SSLContext:
        if self.client_ssl is None:
            ctx = ssl.create_default_context()
            # NodePort TLS is usually served with cluster-internal certificates:
            # encrypted but not verified until a CA setting exists in the config.
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            self.client_ssl = ctx
        return self.client_ssl

    def _sweep(self) -> None:
        older_than = self.loop.time() - self.idle_timeout_s
        for key, pool in list(self.pools.items()):
            pool.evict_idle(older_than)
            if pool.total <= 0 and not pool.waiters:
                del self.pools[key]
        self.timer = self.loop.call_later(min(self.idle_timeout_s, 5.0), self._sweep)

    def close(self) -> None:
        if self.timer is not None:
            self.timer.cancel()
            self.timer = None
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
