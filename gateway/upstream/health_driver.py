"""The asyncio driver of endpoint judgement: active probes and the outlier sweep.

`HealthDriver` runs one task per worker. Every `TICK_S` it (1) asks the
`HealthChecker` for the probes now due and starts each as a task (a TCP
connect, or one HTTP/1.1 GET read to its end, all bounded by the check's
timeout), (2) runs the `OutlierDetector`'s sweep, and (3) applies what
changed to the worker's `EndpointState`: a health transition sets or clears
`unhealthy` (a recovered endpoint is also let back from an outlier
ejection, as Envoy's `successful_active_health_check_uneject_host`), and
every change is counted in `ResilienceStats` and logged once, as JSON,
with its reason. A probe is never logged. When the routing table changes,
`sync_table` re-derives the probe targets from the backends' `healthCheck`
blocks; endpoints that left the table forget their state. An endpoint back
in rotation (recovered, let back from ejection, or new in a table after the
first, as when a cluster's record reappears) starts its slow-start ramp
(`EndpointState.start_ramp`); each tick moves the ramp clock.

All decisions are in the two state machines (`health`, `outlier`); this
module only moves bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from random import Random
from typing import Any, Final

from gateway.context import GatewayContext
from gateway.upstream.health import Health, HealthChecker, ProbeKind, ProbeSpec, Target, judge_http
from gateway.upstream.health import probe_spec as make_spec

log = logging.getLogger("portway.gateway.upstream.health")

TICK_S: Final = 0.05
MAX_PROBE_BODY: Final = 65536


class ResilienceStats:
    """Counters of state changes and overflows for `/metrics` (plain dicts, one loop)."""

    __slots__ = ("ejections", "health_changes", "overflows")

    def __init__(self) -> None:
        self.ejections: Counter[tuple[str, str]] = Counter()
        """(backend, reason) → ejections."""
        self.health_changes: Counter[tuple[str, str]] = Counter()
        """(backend, new status) → transitions."""
        self.overflows: Counter[tuple[str, str]] = Counter()
        """(backend, limit) → requests answered 503 overflow."""


async def run_probe(spec: ProbeSpec, timeout_s: float) -> tuple[bool, str]:
    """One probe over the network: (passed, reason).

    HTTP probes read the head and then exactly the body its framing says
    (Content-Length, chunked, or up to the close), at most `MAX_PROBE_BODY`
    bytes: a server that keeps the connection open despite `Connection:
    close` must not turn a healthy answer into a timeout.
    """
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(timeout_s):
            reader, writer = await asyncio.open_connection(spec.address, spec.port)
            if spec.kind is ProbeKind.TCP:
                return True, "connected"
            writer.write(
                f"GET {spec.path} HTTP/1.1\r\nHost: {spec.host or spec.address}\r\n"
                "User-Agent: portway-health\r\nConnection: close\r\n\r\n".encode("latin-1")
            )
            head = await reader.readuntil(b"\r\n\r\n")
            status, body = _status(head), b""
            if status is None:
                return False, "not an HTTP answer"
            fields = head.lower()
            length = _content_length(fields)
            if length is not None:
                body = await reader.readexactly(min(length, MAX_PROBE_BODY))
            elif b"transfer-encoding: chunked" in fields:
                body = _dechunk(await _read_chunked(reader))
            else:
                body = await reader.read(MAX_PROBE_BODY)
    except TimeoutError:
        return False, f"timeout after {timeout_s:g}s"
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
        return False, "answer cut short"
    except OSError as exc:
        return False, exc.strerror or type(exc).__name__
    finally:
        if writer is not None:
            writer.close()
    return judge_http(spec, status, body)


def _status(head: bytes) -> int | None:
    parts = head.split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
        return None
    return int(parts[1])


def _content_length(fields: bytes) -> int | None:
    for line in fields.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip() == b"content-length" and value.strip().isdigit():
            return int(value.strip())
    return None


def _dechunk(body: bytes) -> bytes:
    out = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        try:
            size = int(size_line.split(b";")[0], 16)
        except ValueError:
            return out
        if size == 0:
            break
        out += rest[:size]
        body = rest[size + 2 :]
    return out


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    data = b""
    while b"\r\n0\r\n" not in b"\r\n" + data and len(data) < MAX_PROBE_BODY:
        more = await reader.read(MAX_PROBE_BODY - len(data))
        if not more:
            break
        data += more
    return data


class HealthDriver:
    """Runs probes and the outlier sweep for one worker's context (module docstring)."""

    def __init__(self, ctx: GatewayContext, *, rng: Random | None = None) -> None:
        self.ctx = ctx
        self.checker = HealthChecker(rng or Random())
        self.stats = ResilienceStats()
        self.reasons: dict[str, str] = {}
        """Endpoint key → why it is out of rotation (admin API)."""
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._table: Any = None
        self._keys: set[str] | None = None
        self._slow_start_s = 0.0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="health")

    async def stop(self) -> None:
        for task in (self._task, *self._probes):
            if task is not None:
                task.cancel()
        for task in (self._task, *self._probes):
            if task is not None:
                with contextlib.suppress(BaseException):
                    await task

    def sync_table(self, now: float) -> None:
        """Probe targets from the current table's backends' `healthCheck` blocks."""
        table = self.ctx.table
        self._table = table
        backends = list(getattr(table, "backends", {}).values()) if table is not None else []
        wanted = []
        keys: set[str] = set()
        for backend in backends:
            keys.update(e.key for e in backend.endpoints)
            check = backend.health_check
            if check is None:
                continue
            for e in backend.endpoints:
                wanted.append((e.key, backend.name, make_spec(e, check), check))
        self.checker.sync(wanted, now)
        state = self.ctx.state
        if self._keys is not None:  # endpoints new since the last table: a cluster came back
            for key in keys - self._keys:
                state.start_ramp(key, now)
        self._keys = keys
        self._slow_start_s = max((b.locality.slow_start_s for b in backends), default=0.0)
        for key in list(state.unhealthy):
            if key not in self.checker.targets:
                state.set_unhealthy(key, False)
                self.reasons.pop(key, None)
        self.ctx.outliers.forget(keys)

    def step(self, now: float) -> None:
        """One tick: start due probes, sweep outliers, apply and report changes."""
        ctx = self.ctx
        if ctx.table is not self._table:
            self.sync_table(now)
        for target in self.checker.due(now):
            task = asyncio.get_running_loop().create_task(self._probe(target))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        backends = getattr(ctx.table, "backends", {}).values() if ctx.table is not None else ()
        ctx.outliers.tick(backends, ctx.state, now)
        for change in ctx.outliers.drain_changes():
            if change.ejected:
                self.stats.ejections[(change.backend, change.reason)] += 1
                self.reasons[change.key] = f"ejected: {change.reason}"
                log.warning(
                    "endpoint ejected",
                    extra={
                        "endpoint": change.key,
                        "backend": change.backend,
                        "reason": change.reason,
                        "for_s": round(change.until - now, 3),
                    },
                )
            else:
                if self.reasons.get(change.key, "").startswith("ejected"):
                    self.reasons.pop(change.key, None)
                ctx.state.start_ramp(change.key, now)
                log.info("endpoint back from ejection", extra={"endpoint": change.key})
        ctx.state.advance(now, now - self._slow_start_s)

    async def _probe(self, target: Target) -> None:
        loop = asyncio.get_running_loop()
        passed, detail = await run_probe(target.spec, target.settings.timeout_s)
        now = loop.time()
        change = self.checker.result(target.key, passed, detail, now)
        state = self.ctx.state
        if change is None:
            if passed and target.key in state.ejected:  # Envoy: a passing check unejects
                state.uneject(target.key)
                state.start_ramp(target.key, now)
                self.reasons.pop(target.key, None)
                log.info(
                    "endpoint back from ejection",
                    extra={"endpoint": target.key, "reason": "health check passed"},
                )
            return
        unhealthy = change.new is Health.UNHEALTHY
        state.set_unhealthy(change.key, unhealthy)
        if unhealthy:
            self.reasons[change.key] = f"health check failed: {detail}"
        else:
            self.reasons.pop(change.key, None)
            state.uneject(change.key)
            if change.old is Health.UNHEALTHY:
                state.start_ramp(change.key, now)
        if change.old is Health.UNKNOWN and not unhealthy:
            return  # a new endpoint confirmed healthy: not news
        self.stats.health_changes[(change.backend, change.new.value)] += 1
        log.warning(
            "endpoint health changed",
            extra={
                "endpoint": change.key,
                "backend": change.backend,
                "from": change.old.value,
                "to": change.new.value,
                "reason": detail,
            },
        )

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.step(loop.time())
            except Exception:  # the judge must outlive a bad tick; say so once per tick
                log.exception("health driver tick failed")
            await asyncio.sleep(TICK_S)
