"""Client traffic for demos and drills, and what users saw of it.

`TrafficGenerator` keeps `concurrency` keep-alive clients sending requests in
a loop and records one `Sample` per request: when, status, which
`cluster/node` answered (the simulated nodes say so in `x-served-by`), and
latency. Each client draws its requests' method and path from the given mix
(seeded, so a drill is repeatable); with `rate_per_s` the clients together
send at most that many requests per second (each paces itself, and does not
burst to catch up after a slow answer); a `sticky_share` of the clients keep
the cookies the gateway sets (the canary's sticky cookie), the others drop
them. `summarize` is pure: samples in, the figures a drill report shows
out (failures, per-cluster share, latency percentiles).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import random
import ssl
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import aiohttp

from portway.simcluster import SERVED_BY


@dataclass(frozen=True, slots=True)
class Sample:
    """One request as the client saw it; `status` 0 means no HTTP answer."""

    t: float
    status: int
    served_by: str
    latency_s: float
    error: str = ""
    client: int = 0

    @property
    def failed(self) -> bool:
        return self.status == 0 or self.status >= 500

    @property
    def cluster(self) -> str:
        return self.served_by.partition("/")[0]


@dataclass(frozen=True, slots=True)
class Summary:
    """Figures of a stretch of samples."""

    requests: int
    failed: int
    share: Mapping[str, float]
    p50_ms: float
    p99_ms: float
    errors: Mapping[str, int] = field(default_factory=dict)


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile of already sorted values (0 for none)."""
    if not sorted_values:
        return 0.0
    rank = max(0, min(len(sorted_values) - 1, math.ceil(q / 100 * len(sorted_values)) - 1))
    return sorted_values[rank]


def summarize(samples: Sequence[Sample]) -> Summary:
    """Requests, failures, share of answered requests per `served_by` prefix, latency."""
    answered = Counter(
        s.served_by.rpartition("/")[0] or s.served_by for s in samples if s.served_by
    )
    total = sum(answered.values())
    latencies = sorted(s.latency_s * 1000 for s in samples)
    errors = Counter(s.error or str(s.status) for s in samples if s.failed)
    return Summary(
        requests=len(samples),
        failed=sum(1 for s in samples if s.failed),
        share={k: v / total for k, v in sorted(answered.items())} if total else {},
        p50_ms=percentile(latencies, 50),
        p99_ms=percentile(latencies, 99),
        errors=dict(errors),
    )


class TrafficGenerator:
    """`concurrency` clients, each sending its next request on an answer (see module docstring)."""

    def __init__(
        self,
        url: str,
        *,
        concurrency: int = 4,
        headers: Mapping[str, str] | None = None,
        timeout_s: float = 5.0,
        pause_s: float = 0.002,
        methods: Sequence[str] = ("GET",),
        paths: Sequence[str] = ("",),
        rate_per_s: float | None = None,
        sticky_share: float = 0.0,
        ssl_context: ssl.SSLContext | None = None,
        seed: int = 0,
    ) -> None:
        self.url = url.rstrip("/") if paths != ("",) else url
        self.concurrency = concurrency
        self.headers = dict(headers or {})
        self.timeout_s = timeout_s
        self.pause_s = pause_s
        self.methods = tuple(methods)
        self.paths = tuple(paths)
        self.interval_s = concurrency / rate_per_s if rate_per_s else 0.0
        self.sticky_clients = round(concurrency * sticky_share)
        self.ssl_context = ssl_context
        self.seed = seed
        self.samples: list[Sample] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._sessions: list[aiohttp.ClientSession] = []

    async def start(self) -> None:
        connector_ssl: ssl.SSLContext | bool = self.ssl_context or True
        for client in range(self.concurrency):
            jar: aiohttp.abc.AbstractCookieJar = (
                aiohttp.CookieJar(unsafe=True)
                if client < self.sticky_clients
                else aiohttp.DummyCookieJar()
            )
            self._sessions.append(
                aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                    cookie_jar=jar,
                    connector=aiohttp.TCPConnector(ssl=connector_ssl, limit=1),
                )
            )
        self._tasks = [
            asyncio.create_task(self._client(client, session))
            for client, session in enumerate(self._sessions)
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        for session in self._sessions:
            await session.close()
        self._sessions = []

    def since(self, t: float) -> list[Sample]:
        return [s for s in self.samples if s.t >= t]

    def between(self, t0: float, t1: float) -> list[Sample]:
        return [s for s in self.samples if t0 <= s.t < t1]

    async def _client(self, client: int, session: aiohttp.ClientSession) -> None:
        rng = random.Random(self.seed * 1_000_003 + client)
        next_t = time.monotonic() + rng.random() * self.interval_s
        while True:
            if self.interval_s:
                await asyncio.sleep(max(0.0, next_t - time.monotonic()))
                next_t = max(next_t + self.interval_s, time.monotonic())
            method = rng.choice(self.methods)
            url = self.url + rng.choice(self.paths)
            body = b"portway drill" if method in ("POST", "PUT", "PATCH") else None
            t0 = time.monotonic()
            try:
                async with session.request(method, url, headers=self.headers, data=body) as resp:
                    await resp.read()
                    sample = Sample(
                        t0,
                        resp.status,
                        resp.headers.get(SERVED_BY, ""),
                        time.monotonic() - t0,
                        resp.headers.get("portway-error", ""),
                        client,
                    )
            except (aiohttp.ClientError, TimeoutError) as exc:
                sample = Sample(t0, 0, "", time.monotonic() - t0, type(exc).__name__, client)
            self.samples.append(sample)
            if not self.interval_s:
                await asyncio.sleep(self.pause_s)
