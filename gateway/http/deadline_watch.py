"""One coarse timer per event loop for every deadline of the HTTP proxy.

Compiled with the hot path (`gateway.compiled`): the proxy adds to
`DeadlineWatch.waiting` per request. Its periods are instance attributes: a compiled
class's attributes cannot be patched on the class by tests.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Final, Protocol

if TYPE_CHECKING:
    from gateway.http.exchange import Exchange


TICK_S: Final = 0.05
"""How often the watch looks while exchanges wait for a response head."""
IDLE_SWEEP_S: Final = 1.0
"""How often it sweeps idle connections for their idle timeout (tests shorten a
watch's `idle_sweep_s`)."""
SHED_S: Final = 0.1
"""How often it looks at the connections that went idle lately (`went_idle`): one
idle through a whole period sheds its parsing state, so 0.1 to 0.2 s after its
last response. The period bounds how many connections of a burst hold a parser at
once, and so the memory a burst leaves behind: 10,000 connections opened at once
and left idle cost 3.7 KiB each when shed by the one-second sweep, 2.5 KiB now
(`benchmarks/idle.py`). Only connections that went idle are looked at, each at
most twice: 10,000 idle connections cost the loop nothing between sweeps."""


class IdleConnection(Protocol):
    """A client connection the watch may close when it has been idle too long."""

    idle_at: float
    """Loop time after which it may be closed; 0.0 while a request is in progress."""
    swept_idle_at: float
    """`idle_at` as the watch last saw it in `went_idle` (the watch's mark): unchanged a
    period later, the connection was idle all along."""
    shed_listed: bool
    """Whether it is in the watch's `went_idle` (the connection appends itself when it
    goes idle and this is false; the watch clears it when it lets go)."""

    def close_idle(self) -> None: ...

    def shed(self) -> bool:
        """Drop the parsing state while idle (made again by the next read); True if dropped."""
        ...


class DeadlineWatch:
    """One coarse timer per event loop for every deadline of the HTTP proxy.

    A `call_at` per request costs more than the rest of the request's timing;
    instead exchanges waiting for a response head sit in `waiting`, which a
    single timer sweeps every `tick_s`; deadlines fire up to `tick_s` late,
    far below any configured timeout's precision. Expiry calls
    `ex.owner.timed_out(ex)`.

    Client connections sit in `connections` from accept to close, and every
    `idle_sweep_s` the same timer closes those whose `idle_at` has passed
    (keep-alive idle timeout): per request the proxy only stores a float. A
    connection that goes idle also lists itself in `went_idle` (once: its
    `shed_listed`); every `shed_s` the timer has those idle since the look
    before shed their parsing state (`shed`, as nginx frees a keep-alive
    connection's request buffers), and lets go of those busy again. A busy
    connection, between two requests at a look, keeps its parser. The timer
    runs every `tick_s` while exchanges wait, every `shed_s` while connections
    went idle lately, every `idle_sweep_s` while only connections are open, and
    not at all when nothing is tracked.
    """

    __slots__ = (
        "connections",
        "due",
        "handle",
        "idle_sweep_s",
        "loop",
        "next_shed",
        "next_sweep",
        "now",
        "shed_s",
        "tick_s",
        "ticking",
        "waiting",
        "went_idle",
    )

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.tick_s = TICK_S
        self.idle_sweep_s = IDLE_SWEEP_S
        self.shed_s = SHED_S
        self.now = time.monotonic
        """The clock of every deadline and duration of the loop's requests: monotonic,
        as the loop's, but finer: uvloop's `loop.time()` moves in whole milliseconds,
        which made every request's duration 0, 1 or 2 ms."""
        self.waiting: set[Exchange] = set()
        self.connections: set[IdleConnection] = set()
        self.went_idle: list[IdleConnection] = []
        """Connections that went idle since they were last let go (see the class docstring)."""
        self.handle: asyncio.TimerHandle | None = None
        self.due = 0.0
        self.next_sweep = 0.0
        self.next_shed = 0.0
        self.ticking = False
        """Whether the timer is armed at most `tick_s` ahead (the proxy checks it
        inline: when true, `add` is only `try_deadline` and a set add)."""

    def add(self, ex: Exchange, at: float) -> None:
        ex.try_deadline = at
        self.waiting.add(ex)
        if not self.ticking:
            self.arm(self.tick_s)

    def discard(self, ex: Exchange) -> None:
        self.waiting.discard(ex)

    def track(self, conn: IdleConnection) -> None:
        """Watch `conn`'s idle deadline until `untrack` (it is idle until its first request)."""
        self.connections.add(conn)
        if self.handle is None:
            self.next_sweep = self.now() + self.idle_sweep_s
            self.arm(self.idle_sweep_s)
        self.went_idle_now(conn)

    def went_idle_now(self, conn: IdleConnection) -> None:
        """`conn` went idle: it sheds its parsing state if still idle a period or two on."""
        conn.shed_listed = True
        self.went_idle.append(conn)
        if not self.next_shed:
            self.next_shed = self.now() + self.shed_s
            if self.handle is None or self.due > self.next_shed:
                self.arm(self.shed_s)

    def untrack(self, conn: IdleConnection) -> None:
        self.connections.discard(conn)

    def arm(self, delay: float) -> None:
        """(Re)start the timer `delay` seconds from now."""
        if self.handle is not None:
            self.handle.cancel()
        self.ticking = delay <= self.tick_s
        self.due = self.now() + delay
        self.handle = self.loop.call_later(delay, self._tick)

    def _tick(self) -> None:
        self.handle = None
        self.ticking = False
        now = self.now()
        if self.waiting:
            expired = [ex for ex in self.waiting if ex.try_deadline <= now]
            for ex in expired:
                self.waiting.discard(ex)
                owner = ex.owner
                if owner is not None:
                    owner.timed_out(ex)
        if self.next_shed and now >= self.next_shed - 1e-3:
            self._shed()
            self.next_shed = now + self.shed_s if self.went_idle else 0.0
        if self.connections and now >= self.next_sweep - 1e-3:
            self.next_sweep = now + self.idle_sweep_s
            for conn in [c for c in self.connections if 0.0 < c.idle_at <= now]:
                conn.close_idle()
        if self.waiting:
            self.arm(self.tick_s)
        elif self.next_shed:
            self.arm(max(min(self.next_shed, self.next_sweep) - now, 0.0))
        elif self.connections:
            self.arm(max(self.next_sweep - now, 0.0))

    def _shed(self) -> None:
        """Have the connections idle since the last look shed; mark the ones newly idle."""
        kept: list[IdleConnection] = []
        for conn in self.went_idle:
            idle_at = conn.idle_at
            if idle_at <= 0.0:
                conn.shed_listed = False  # busy: it lists itself again when idle
            elif conn.swept_idle_at == idle_at:
                conn.shed_listed = False
                conn.shed()
            else:
                conn.swept_idle_at = idle_at
                kept.append(conn)
        self.went_idle = kept


_WATCHES: dict[asyncio.AbstractEventLoop, DeadlineWatch] = {}


def deadline_watch(loop: asyncio.AbstractEventLoop) -> DeadlineWatch:
    """The loop's watch (one per worker event loop)."""
    watch = _WATCHES.get(loop)
    if watch is None:
        for old in [old for old in _WATCHES if old.is_closed()]:
            del _WATCHES[old]
        watch = _WATCHES[loop] = DeadlineWatch(loop)
    return watch
