"""Request mirroring (Gateway API RequestMirror): fire-and-forget copies to other backends.

Theory of operation. After the request head is built (header modifiers and
URL rewrite applied, so the copy is what the upstream gets), each of the
rule's mirrors draws against its `percent` and, when it wins, sends a copy
to an endpoint of its backend on a fresh connection of its own, with
`Connection: close`, and reads the response only to discard it. Nothing of
the copy reaches the request being served: it is started as a Task and the
proxy goes on at once; its failures (connect refused, timeout, reset) are
counted (`MirrorCounts`, per route and mirror backend, exported as
`portway_mirror_requests_total{rule,backend,result}`) and never seen by
the client. A copy is bounded in
time by the rule's request timeout and in number by `MirrorLimit.limit`
copies in flight per process (more are dropped, not queued), so a mirror
backend that never answers cannot pile up connections.

What is not copied: a request whose body is still arriving when it is
forwarded (only the body bytes that came with the head are held, so such
copies would be truncated), and protocol upgrades. Both count as `skipped`.
A route's `allowedRegions` holds for copies too: an endpoint outside them is
never sent one.
"""

from __future__ import annotations

import asyncio
import random
from typing import TYPE_CHECKING, Final

import httptools

from gateway.http import head as hh
from gateway.http.filters.base import ExchangeView, FilterStage

if TYPE_CHECKING:
    from gateway.context import GatewayContext
    from gateway.routing.facts import RequestFacts

MAX_MIRRORS_IN_FLIGHT: Final = 128


class MirrorCounts:
    """What became of the copies one mirror (a rule's, to one backend) was asked for."""

    __slots__ = ("dropped", "failed", "sent", "skipped")

    def __init__(self) -> None:
        self.sent = 0
        """Copies answered by the mirror backend (the answer discarded)."""
        self.failed = 0
        """Copies that could not connect, timed out or were cut."""
        self.dropped = 0
        """Copies not made because `MirrorLimit.limit` copies were in flight."""
        self.skipped = 0
        """Requests not copyable (body still streaming, upgrade, no endpoint)."""


RESULTS: Final = ("sent", "failed", "dropped", "skipped")
"""The `result` label values of `portway_mirror_requests_total`."""


class MirrorLimit:
    """Copies in flight in this process, and what became of the others, per mirror.

    The counts of a (rule, mirror backend) pair live as long as the process,
    shared by the filters a reload rebuilds for it, so the metric is a counter.
    """

    __slots__ = ("by_mirror", "in_flight", "limit")

    def __init__(self, limit: int = MAX_MIRRORS_IN_FLIGHT) -> None:
        self.limit = limit
        self.in_flight = 0
        self.by_mirror: dict[tuple[str, str], MirrorCounts] = {}

    def counts_for(self, rule: str, backend: str) -> MirrorCounts:
        """The counts of `rule`'s mirror to `backend` (made on first use, at compile)."""
        found = self.by_mirror.get((rule, backend))
        if found is None:
            found = self.by_mirror[(rule, backend)] = MirrorCounts()
        return found

    def totals(self) -> dict[tuple[str, str, str], int]:
        """(rule, backend, result) → copies, for the metrics report (`RESULTS`)."""
        out: dict[tuple[str, str, str], int] = {}
        for (rule, backend), c in self.by_mirror.items():
            for result, n in zip(RESULTS, (c.sent, c.failed, c.dropped, c.skipped), strict=True):
                out[(rule, backend, result)] = n
        return out

    @property
    def sent(self) -> int:
        return sum(c.sent for c in self.by_mirror.values())

    @property
    def failed(self) -> int:
        return sum(c.failed for c in self.by_mirror.values())

    @property
    def dropped(self) -> int:
        return sum(c.dropped for c in self.by_mirror.values())

    @property
    def skipped(self) -> int:
        return sum(c.skipped for c in self.by_mirror.values())


MIRRORS: Final = MirrorLimit()
"""The process's bound on copies in flight (one event loop per process)."""


class _DiscardResponse(asyncio.Protocol):
    """Reads one response to its end and throws it away."""

    def __init__(self, done: asyncio.Future[bool]) -> None:
        self.done = done
        self.parser = httptools.HttpResponseParser(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._finish(False)

    def on_message_complete(self) -> None:
        self._finish(True)

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(False)

    def _finish(self, answered: bool) -> None:
        if not self.done.done():
            self.done.set_result(answered)


class MirrorFilter:
    """One mirror of a rule: its backend (by name), share and bounds.

    A mirror at 0 % is never built (`http.plan.build_plan` leaves it out); at
    100 % no random number is drawn.
    """

    __slots__ = ("backend", "counts", "limit", "percent", "regions", "rng", "share", "timeout_s")

    stage: Final = FilterStage.MIRROR

    def __init__(
        self,
        backend: str,
        percent: float,
        *,
        regions: tuple[str, ...] = (),
        timeout_s: float,
        rng: random.Random | None = None,
        limit: MirrorLimit = MIRRORS,
        rule: str = "",
    ) -> None:
        self.backend = backend
        self.percent = percent
        self.share = percent / 100.0 if percent < 100.0 else 2.0
        """The draw below which a request is copied; 2.0 (no draw) at 100 %."""
        self.regions = frozenset(regions)
        self.timeout_s = timeout_s
        self.rng = rng or random.Random()
        self.limit = limit
        self.counts = limit.counts_for(rule, backend)

    def on_forward(self, ex: ExchangeView, facts: RequestFacts, ctx: GatewayContext) -> None:
        if self.share <= 1.0 and self.rng.random() >= self.share:
            return
        limit = self.limit
        table = ex.table
        backend = table.backends.get(self.backend) if table is not None else None
        if not ex.body_done or ex.upgrade or backend is None:
            self.counts.skipped += 1
            return
        if limit.in_flight >= limit.limit:
            self.counts.dropped += 1
            return
        endpoint = backend.pick(facts, ctx.state, self.rng, ex.started)
        if endpoint is None or (self.regions and endpoint.region not in self.regions):
            self.counts.skipped += 1
            return
        host = ex.fixed_host or _authority(endpoint.address, endpoint.port)
        data = copy_of(ex, host)
        limit.in_flight += 1
        asyncio.get_running_loop().create_task(self._send(endpoint.address, endpoint.port, data))

    async def _send(self, address: str, port: int, data: bytes) -> None:
        limit = self.limit
        counts = self.counts
        transport: asyncio.BaseTransport | None = None
        answered = False
        try:
            async with asyncio.timeout(self.timeout_s):
                loop = asyncio.get_running_loop()
                done: asyncio.Future[bool] = loop.create_future()
                transport, _ = await loop.create_connection(
                    lambda: _DiscardResponse(done), address, port
                )
                transport.write(data)
                answered = await done
        except (OSError, TimeoutError):
            pass
        finally:
            limit.in_flight -= 1
            if answered:
                counts.sent += 1
            else:
                counts.failed += 1
            if transport is not None:
                transport.close()


def _authority(address: str, port: int) -> bytes:
    host = f"[{address}]" if ":" in address else address
    return f"{host}:{port}".encode("ascii")


def copy_of(ex: ExchangeView, host: bytes) -> bytes:
    """The bytes of a copy of `ex` as forwarded: its head with `Connection: close`, its body."""
    out = [ex.line, b"Host: ", host, b"\r\n", ex.head[:-2], b"Connection: close\r\n\r\n"]
    for piece in ex.body or ():
        if ex.chunked:
            out.extend(hh.chunk(piece))
        else:
            out.append(piece)
    if ex.chunked:
        out.append(hh.LAST_CHUNK)
    return b"".join(out)
