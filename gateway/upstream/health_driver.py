"""The asyncio driver of endpoint judgement: active probes and the outlier sweep.

`HealthDriver` runs one task per worker. Every `TICK_S` it (1) asks the
`HealthChecker` for the probes now due and starts each as a task (a TCP
connect, or one HTTP/1.1 GET read to its end, all bounded by the check's
timeout: `probe.run_probe`), (2) runs the `OutlierDetector`'s sweep, and (3) applies what
changed to the worker's `EndpointState`:

- a health transition sets or clears `unhealthy`;
- a passing probe of a healthy endpoint lets it back from an outlier
  ejection (Envoy's `successful_active_health_check_uneject_host`: the
  probe is fresher evidence than the ejection timer);
- an ejection that ran out is let back only once a probe passes
  (`OutlierDetector.readmit`): the backend's health check when it has one,
  else, for a plain-HTTP backend, one GET that any HTTP answer passes, else
  one TCP connect; so users' requests never serve as the probe of a node
  that went dark;
- an ejected endpoint whose record turns from NotReady to Ready is let
  back at once: its cluster's controller saw it recover;
- an endpoint back in rotation (recovered, let back from ejection, or new
  in a table after the first, as when a cluster's record reappears) starts
  its slow-start ramp (`EndpointState.start_ramp`); each tick moves the
  ramp clock.

Every change is counted in `ResilienceStats` and logged once, as JSON, with
its reason; a probe is never logged. When the routing table changes,
`sync_table` re-derives the probe targets from the `healthCheck` blocks of
the backends that changed; endpoints that left the table forget their
state. Which backends changed and which keys left is the `EndpointRoster`'s
work, done in slices of `SYNC_SLICE_ENDPOINTS` with the loop free between
them (a first table of 500,000 endpoints is not one stall).

Under a supervisor (`--workers N`) the active checks run once, not once
per worker (`shared_verdicts`): worker 0's driver probes and publishes each
verdict change, the others' drivers probe nothing and apply the verdicts
that changed (in and out of rotation, a ramp on recovery; worker 0 alone
counts and logs them). Outlier detection and readmission probes stay per
worker. Should the shared table overflow, every worker probes again.

All decisions are in the two state machines (`health`, `outlier`); this
module only moves bytes and time.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from random import Random
from typing import Any, Final, Protocol

from gateway.config.model import ListenerProtocol
from gateway.routing.endpoints import EndpointState
from gateway.routing.table import RoutingTable
from gateway.upstream.health import Health, HealthChecker, ProbeKind, ProbeSpec, Target
from gateway.upstream.health import probe_spec as make_spec
from gateway.upstream.outlier import OutlierDetector
from gateway.upstream.probe import run_probe
from gateway.upstream.roster import EndpointRoster
from gateway.upstream.shared_verdicts import SharedVerdicts, VerdictFollower

log = logging.getLogger("portway.gateway.upstream.health")

TICK_S: Final = 0.05
READMISSION_TIMEOUT_S: Final = 1.0
"""How long a readmission probe may take (a connect, or a GET for any answer)."""
SYNC_SLICE_ENDPOINTS: Final = 10_000
"""Endpoints a table sync handles per turn of the loop (~3 ms interpreted)."""


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


def http_backends(table: Any) -> frozenset[str]:
    """Names of the backends some route on an HTTP or HTTPS listener sends to."""
    http = {ListenerProtocol.HTTP, ListenerProtocol.HTTPS}
    protocols = {lst.name: lst.protocol for lst in table.listeners}
    out: set[str] = set()
    for route in table.routes:
        attached = route.listeners or tuple(protocols)
        if not any(protocols.get(name) in http for name in attached):
            continue
        for rule in route.rules:
            split = rule.split
            for slot in (*split.slots, split.canary):
                if slot >= 0:
                    out.add(table.slots[slot].name)
    return frozenset(out)


class JudgedWorker(Protocol):
    """What the driver reads and moves of its worker: the worker's `GatewayContext`
    (`gateway.context`, which holds the upstream pools and so sits above this package)."""

    @property
    def table(self) -> RoutingTable | None:
        """The routing table in force, swapped by the runtime."""
        ...

    @property
    def state(self) -> EndpointState:
        """The endpoints' health, ejection and ramp state the routing core reads."""
        ...

    @property
    def outliers(self) -> OutlierDetector:
        """The worker's passive outlier detection, fed by every try."""
        ...


class HealthDriver:
    """Runs probes and the outlier sweep for one worker's context (module docstring)."""

    def __init__(
        self,
        ctx: JudgedWorker,
        *,
        rng: Random | None = None,
        readmission_timeout_s: float = READMISSION_TIMEOUT_S,
        verdicts: SharedVerdicts | None = None,
    ) -> None:
        self.ctx = ctx
        self.readmission_timeout_s = readmission_timeout_s
        ctx.outliers.probe_readmission = True
        self.checker = HealthChecker(rng or Random())
        self.stats = ResilienceStats()
        self.reasons: dict[str, str] = {}
        """Endpoint key → why it is out of rotation (admin API)."""
        self._task: asyncio.Task[None] | None = None
        self._probes: set[asyncio.Task[None]] = set()
        self._table: Any = None
        self.roster = EndpointRoster()
        self._routes: Any = None
        self._http_backends: frozenset[str] = frozenset()
        """Backends routed to from HTTP(S) listeners: readmission may ask them over HTTP."""
        self._slow_start_s = 0.0
        self.verdicts = verdicts
        """The workers' shared verdicts: published here (`writer`: worker 0), or followed."""
        self.follower = None if verdicts is None or verdicts.writer else VerdictFollower(verdicts)
        """Set while this worker applies worker 0's verdicts instead of probing."""

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

    def sync_table(self, now: float, budget: int | None = None) -> bool:
        """Follow the table in force: probe targets, ramps and forgetting, per changed backend.

        Incremental tables share every backend a change did not touch, so
        only backends that are new objects are walked (a registry change of
        one service among 10,000 costs that service's endpoints). A changed
        backend that had endpoints before ramps its new ones in (a cluster
        coming back); a backend's first endpoints are not ramped (at startup
        there is nothing else to send their traffic to). At most about
        `budget` endpoints are handled per call (None: all); returns whether
        the table is followed completely.
        """
        table = self.ctx.table
        roster = self.roster
        if table is not self._table:
            self._table = table
            backends = getattr(table, "backends", {}) if table is not None else {}
            if table is not None and table.routes is not self._routes:
                self._routes = table.routes
                self._http_backends = http_backends(table)
                self.ctx.outliers.follow(backends.values())
            roster.follow(backends)
        state = self.ctx.state
        step = roster.advance(budget)
        added: list[tuple[str, str, ProbeSpec, Any]] = []
        for name, backend in step.added:
            self._slow_start_s = max(self._slow_start_s, backend.locality.slow_start_s)
            check = backend.health_check
            if check is not None:
                added += [(e.key, name, make_spec(e, check), check) for e in backend.endpoints]
        for key in step.ramp:
            state.start_ramp(key, now)
        for key in step.ready_again:
            if key in state.ejected:
                self.ctx.outliers.clear(key, state, "published ready again")
        gone = step.gone
        if added or gone:
            self.checker.update(added, gone, now)
        for key in gone:
            state.set_unhealthy(key, False)
            self.reasons.pop(key, None)
        self.ctx.outliers.forget_keys(gone)
        if self.follower is not None:
            self.follower.track(key for key, _, _, _ in added)
            self.follower.drop(gone)
        elif self.verdicts is not None:
            for key in gone:
                self.verdicts.forget(key)
        return not roster.pending

    def step(self, now: float) -> None:
        """One tick: start due probes, sweep outliers, apply and report changes."""
        ctx = self.ctx
        if ctx.table is not self._table or self.roster.pending:
            self.sync_table(now, SYNC_SLICE_ENDPOINTS)
        follower = self.follower
        if follower is not None and follower.table.overflowed:
            log.warning("shared health verdicts are full: this worker probes for itself")
            self.follower = follower = None
            self.checker.respread(now)
        if follower is not None:
            for key, old, new in follower.changed(SYNC_SLICE_ENDPOINTS):
                self._apply_health(key, old, new, "worker 0's probe", now)
        for target in self.checker.due(now) if follower is None else ():
            task = asyncio.get_running_loop().create_task(self._probe(target))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
        ctx.outliers.tick(ctx.state, now)
        for key in ctx.outliers.take_checks():
            task = asyncio.get_running_loop().create_task(self._readmission_probe(key))
            self._probes.add(task)
            task.add_done_callback(self._probes.discard)
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
                log.info(
                    "endpoint back from ejection",
                    extra={"endpoint": change.key, "reason": change.reason},
                )
        ctx.state.advance(now, now - self._slow_start_s)

    async def _readmission_probe(self, key: str) -> None:
        """One connect to an endpoint whose ejection ran out, before users' requests go."""
        name, _ = self.ctx.outliers.ejected_by.get(key, ("", None))
        held = self.roster.backends.get(name)
        endpoint = held.endpoint(key) if held is not None else None
        passed = True
        target = self.checker.targets.get(key)
        if target is not None:  # the backend's own check: an HTTP black hole fails it too
            passed, _ = await run_probe(target.spec, target.settings.timeout_s)
        elif endpoint is not None:
            kind = ProbeKind.TCP
            if name in self._http_backends and held is not None and not held.tls:
                kind = ProbeKind.HTTP_ALIVE  # a node that accepts but never answers fails it
            spec = ProbeSpec(kind, endpoint.address, endpoint.port, path="/")
            passed, _ = await run_probe(spec, self.readmission_timeout_s)
        self.ctx.outliers.readmit(key, passed, self.ctx.state, asyncio.get_running_loop().time())

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
        shared = self.verdicts
        if shared is not None and shared.writer:
            was_full = shared.overflowed
            if not shared.publish(change.key, change.new) and not was_full:
                log.warning("shared health verdicts are full: every worker probes for itself")
        self._apply_health(change.key, change.old, change.new, detail, now)
        unhealthy = change.new is Health.UNHEALTHY
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

    def _apply_health(self, key: str, old: Health, new: Health, detail: str, now: float) -> None:
        """An endpoint's verdict changed: out of rotation, or back in (ramping up when it
        was unhealthy; a passing check also ends an outlier ejection)."""
        state = self.ctx.state
        unhealthy = new is Health.UNHEALTHY
        state.set_unhealthy(key, unhealthy)
        if unhealthy:
            self.reasons[key] = f"health check failed: {detail}"
        else:
            self.reasons.pop(key, None)
            state.uneject(key)
            if old is Health.UNHEALTHY:
                state.start_ramp(key, now)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                self.step(loop.time())
            except Exception:  # the judge must outlive a bad tick; say so once per tick
                log.exception("health driver tick failed")
            # a table sync in progress takes its next slice on the next turn of the loop
            await asyncio.sleep(0 if self.roster.pending else TICK_S)
