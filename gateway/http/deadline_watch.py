"""One coarse timer per event loop for every deadline of the HTTP proxy.

Kept out of the compiled hot path (`gateway.compiled`): the proxy only adds to
`DeadlineWatch.waiting` per request, and tests tune the class's periods.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway.http.exchange import Exchange


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
    `ex.owner.timed_out(ex)`.

    Client connections sit in `connections` from accept to close, and every
    `IDLE_SWEEP_S` the same timer closes those whose `idle_at` has passed
    (keep-alive idle timeout): per request the proxy only stores a float. The
    timer runs every `TICK_S` while exchanges wait, every `IDLE_SWEEP_S` while
    only connections are open, and not at all when nothing is tracked.
    """

    TICK_S = 0.05
    IDLE_SWEEP_S = 1.0
    __slots__ = ("connections", "due", "handle", "loop", "next_sweep", "now", "ticking", "waiting")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.now = loop.time
        """The loop's clock, bound once for every connection of the loop."""
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
                owner = ex.owner
                if owner is not None:
                    owner.timed_out(ex)
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
