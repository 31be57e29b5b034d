"""One request/response exchange of the HTTP proxy, and request ids.

An `Exchange` is the only object made per request (besides the routing facts
and decision): it holds the parsed head, the body bytes that arrived before an
upstream connection was bound, the routing decision and the try state. Plain
attributes with `__slots__`, no behaviour beyond buffering: the protocol in
`http_proxy` drives it.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import random
from typing import Any, Protocol

BODY_BUFFER_LIMIT = 64 * 1024
"""Request body bytes held before an upstream is bound (and kept for a replay)."""

PIPELINE, UPSTREAM, BUFFER, TUNNEL_WAIT, DONE = 1, 2, 4, 8, 16
"""Why client reading is paused (a bitmask in `HttpProxy.paused`): a pipelined
request waits, the upstream's write buffer is full, the early body buffer is
full, an upgrade waits for the 101, the connection is finished."""

REQUEST_ID_PREFIX = f"{os.getpid():x}-{random.getrandbits(24):06x}-".encode("ascii")
REQUEST_IDS = itertools.count(1)
"""`next_request_id` is `REQUEST_ID_PREFIX` + the next of these (the proxy inlines it)."""


def next_request_id() -> bytes:
    """A cheap unique X-Request-Id: process prefix + counter (no uuid4 on the hot path)."""
    return REQUEST_ID_PREFIX + str(next(REQUEST_IDS)).encode("ascii")


class Exchange:
    """The state of one request; attributes are documented by their use in `http_proxy`."""

    __slots__ = (
        "attempts",
        "body",
        "body_done",
        "body_sent",
        "bytes_in",
        "bytes_out",
        "chunked",
        "chunked_out",
        "close_after",
        "conn",
        "connecting",
        "counted",
        "counted_only",
        "deadline",
        "decision",
        "done",
        "endpoint",
        "expect",
        "fixed_host",
        "flags",
        "fwd",
        "head",
        "headers",
        "host",
        "keep_alive",
        "line",
        "log",
        "method",
        "out",
        "owner",
        "path",
        "plan",
        "query",
        "replay",
        "request_id",
        "responded",
        "retries",
        "retrying",
        "reused",
        "rule",
        "stale_retried",
        "started",
        "status",
        "table",
        "timer",
        "token",
        "traced",
        "tried",
        "try_deadline",
        "upgrade",
        "version",
        "via",
    )

    def __init__(
        self,
        method: bytes,
        path: bytes,
        query: bytes,
        version: str,
        host: bytes,
        headers: list[tuple[bytes, bytes]],
        request_id: bytes,
        fwd: dict[bytes, bytes] | None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.version = version
        self.host = host
        self.headers = headers
        self.request_id = request_id
        self.fwd = fwd
        self.keep_alive = True
        self.chunked = False
        self.body_done = True
        self.upgrade = b""
        self.expect = False
        self.body: list[bytes] | None = None
        self.replay: list[bytes] | None = None
        self.body_sent = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.chunked_out = False
        self.close_after = False
        self.conn: Any = None
        self.connecting: Any = None
        self.counted = False
        self.counted_only = False
        self.traced = False
        self.line = b""
        self.via = b""
        self.plan: Any = None
        self.deadline = 0.0
        self.started = 0.0
        self.decision: Any = None
        self.rule: Any = None
        self.table: Any = None
        self.endpoint: Any = None
        self.done = False
        self.responded = False
        self.status = 0
        self.fixed_host = b""
        self.flags = ""
        self.head = b""
        self.log: Any = None
        self.token: Any = None
        self.timer: Any = None
        self.try_deadline = 0.0
        self.out = b""
        self.owner: Any = None
        self.tried: set[str] | None = None
        self.attempts = 0
        self.retries = 0
        self.retrying = False
        self.reused = False
        self.stale_retried = False

    def buffer(self, data: bytes) -> int:
        """Hold body bytes until an upstream is bound; returns the bytes held."""
        if self.body is None:
            self.body = [data]
        else:
            self.body.append(data)
        return sum(len(piece) for piece in self.body)


class IdleConnection(Protocol):
    """A client connection the watch may close when it has been idle too long."""

    idle_at: float
    """Loop time after which it may be closed; 0.0 while a request is in progress."""

    def close_idle(self) -> None: ...


class DeadlineWatch:
    """One coarse timer per event loop for every deadline of the HTTP proxy.

    A `call_at` per request costs more than the rest of the request's timing;
    instead exchanges waiting for a response head sit in `waiting`, which a
    single timer sweeps every `TICK_S`; deadlines fire up to `TICK_S` late,
    far below any configured timeout's precision. Expiry calls
    `ex.owner._timed_out(ex)`.

    Client connections sit in `connections` from accept to close, and every
    `IDLE_SWEEP_S` the same timer closes those whose `idle_at` has passed
    (keep-alive idle timeout): per request the proxy only stores a float. The
    timer runs every `TICK_S` while exchanges wait, every `IDLE_SWEEP_S` while
    only connections are open, and not at all when nothing is tracked.
    """

    TICK_S = 0.05
    IDLE_SWEEP_S = 1.0
    __slots__ = ("connections", "due", "handle", "loop", "next_sweep", "ticking", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.waiting: set[Exchange] = set()
        self.connections: set[IdleConnection] = set()
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0
        self.next_sweep = 0.0
        self.ticking = False
        """Whether the timer is armed at most `TICK_S` ahead (the proxy checks it
        inline: when true, `add` is only `try_deadline` and a set add)."""

    def add(self, ex: Exchange, at: float) -> None:
        ex.try_deadline = at
        self.waiting.add(ex)
        if not self.ticking:
            self.arm(self.TICK_S)

    def discard(self, ex: Exchange) -> None:
        self.waiting.discard(ex)

    def track(self, conn: IdleConnection) -> None:
        """Watch `conn`'s idle deadline until `untrack`."""
        self.connections.add(conn)
        if self.handle is None:
            self.next_sweep = self.loop.time() + self.IDLE_SWEEP_S
            self.arm(self.IDLE_SWEEP_S)

    def untrack(self, conn: IdleConnection) -> None:
        self.connections.discard(conn)

    def arm(self, delay: float) -> None:
        """(Re)start the timer `delay` seconds from now."""
        if self.handle is not None:
            self.handle.cancel()
        self.ticking = delay <= self.TICK_S
        self.due = self.loop.time() + delay
        self.handle = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self.handle = None
        self.ticking = False
        now = self.loop.time()
        if self.waiting:
            expired = [ex for ex in self.waiting if ex.try_deadline <= now]
            for ex in expired:
                self.waiting.discard(ex)
                ex.owner._timed_out(ex)
        if self.connections and now >= self.next_sweep - 1e-3:
            self.next_sweep = now + self.IDLE_SWEEP_S
            for conn in [c for c in self.connections if 0.0 < c.idle_at <= now]:
                conn.close_idle()
        if self.waiting:
            self.arm(self.TICK_S)
        elif self.connections:
            self.arm(max(self.next_sweep - now, 0.0))


_WATCHES: dict[asyncio.AbstractEventLoop, DeadlineWatch] = {}


def deadline_watch(loop: asyncio.AbstractEventLoop) -> DeadlineWatch:
    """The loop's watch (one per worker event loop)."""
    watch = _WATCHES.get(loop)
    if watch is None:
        for old in [old for old in _WATCHES if old.is_closed()]:
            del _WATCHES[old]
        watch = _WATCHES[loop] = DeadlineWatch(loop)
    return watch
