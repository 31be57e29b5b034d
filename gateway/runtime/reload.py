"""Hot reload: config file and registry snapshots → compile → atomic table swap.

Theory of operation (Traefik's provider rule: one place merges inputs and
swaps the active result). Two inputs mark work as pending: the config file
changed (watchfiles event, SIGHUP, or `request_reload()`), or the registry
feed delivered a new snapshot (`on_snapshot`). One pump task does the work,
serially: after a config mark it waits `debounce_s` so a burst of editor
writes costs one compile (registry snapshots come already debounced by the
feed, and removals must reach the table at once for failover; snapshots that
arrive while a compile runs are coalesced into the next one), then

* config pending: read and check the file; if it has errors, log them as one
  JSON line (each issue `file:line:col: path: message`), count a failure, and
  keep serving the last good config; if it is good (and its digest differs),
  compile it with the current records;
* records pending only: update the table in force (`update_table`): only the
  backends fed by the services whose records changed are recompiled, all
  else is shared, and routes are not recompiled at all.

The feed hands over per-key changes (`on_changes`); they accumulate until
the pump takes them, folded into the reloader's records and its index by
service (one pointer per record, no copy of the records). A compile or
update that is small runs inline on the event loop; a big one (more than
`executor_endpoints` endpoints involved) runs in a thread so accepted
connections keep being served while it runs. Measured (2 shared cores):
compile costs ~3 µs per endpoint, so 2,000 endpoints stall the loop ~6 ms
inline; 20,000 endpoints stall it ~38 ms inline but at most ~8 ms from a
thread (the GIL switch interval), for ~20% more wall time. The result is handed to
`on_swap(table, active)`, which assigns `ctx.table` (one attribute store:
requests already routing hold their own reference to the old table).

A third input is the progressive rollouts' stored statuses (`on_rollouts`,
from `gateway.rollout.runner`). A full compile takes the file's config with
each rollout rule's canary at its rollout's weight
(`gateway.rollout.targets.with_weights`), so a table is a pure function of
config, records and rollout statuses; statuses that change a weight mark a
full compile (routes hold the split), others change nothing.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.loader import ConfigReport, check_config_file
from gateway.config.model import GatewayConfig, LbPolicy
from gateway.ops.metrics import ReloadStats
from gateway.rollout.machine import RolloutStatus
from gateway.rollout.targets import RolloutTarget, rollout_targets, weights_for, with_weights
from gateway.routing.compiler import RecordIndex, compile_indexed, index_records
from gateway.routing.update import apply_record_changes, update_table
from portway.model import ServiceKey, ServiceRecord

log = logging.getLogger("portway.gateway.runtime.reload")

CompileFn = Callable[..., Any]
SwapFn = Callable[[Any, "ActiveConfig"], None]


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """The config currently serving: its digest (version), file and load time."""

    config: GatewayConfig
    version: str
    source: str
    loaded_at: float
    table_version: int


@dataclass(frozen=True, slots=True)
class ReloadFailure:
    """Why the last reload was rejected (cleared by the next successful one)."""

    at: float
    issues: tuple[str, ...]


def _has_hashed(config: GatewayConfig) -> bool:
    """Whether warming builds ring/Maglev tables (tens of ms: keep them off the loop)."""
    hashed = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)
    return any(b.load_balancer.policy in hashed for b in config.backends)


def count_endpoints(records: Iterable[Any]) -> int:
    """Endpoints in a snapshot (nodes × ports), the measure of compile cost."""
    total = 0
    for record in records:
        total += len(getattr(record, "nodes", ())) * max(1, len(getattr(record, "ports", ())))
    return total


class Reloader:
    """Owns the config → table pipeline of one process; see the module docstring."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        on_swap: SwapFn,
        *,
        compile_fn: CompileFn | None = None,
        debounce_s: float = 0.05,
        executor_endpoints: int = 2_000,
        seed: int = 0,
        clock: Callable[[], float] = time.time,
        plan_rule: Callable[..., Any] | None = None,
        announce: bool = True,
    ) -> None:
        """`plan_rule` is handed to the full compile (`compile_indexed`): what the
        protocol layer builds once per rule; incremental updates keep the rules,
        and so the plans, of the table in force. `announce` False keeps a rejected
        config at debug level: a supervisor's workers read the same file as the
        supervisor, which says it once for the whole gateway."""
        self.path = Path(path)
        self._announce = announce
        self._plan_rule = plan_rule
        self._on_swap = on_swap
        self._compile = compile_fn
        self.debounce_s = debounce_s
        self.executor_endpoints = executor_endpoints
        self._seed = seed
        self._clock = clock
        self.active: ActiveConfig | None = None
        self.table: Any = None
        self._records: dict[ServiceKey, ServiceRecord] = {}
        self._index: RecordIndex = {}
        self._changes: dict[ServiceKey, ServiceRecord | None] = {}
        self._changes_seen = False
        self._index_suspect = False
        self.last_swap_full = False
        self._hashed: tuple[GatewayConfig | None, bool] = (None, False)
        """Whether the table last swapped was built whole (a full compile, or an
        update of more than `executor_endpoints` endpoints): a sign for the worker to
        move the new long-lived objects out of the cyclic collector's sight."""
        self.registry_synced = False
        """True once a table built from the registry's first sync is serving (/readyz)."""
        self.last_failure: ReloadFailure | None = None
        self.stats = ReloadStats()
        self.last_compile_s = 0.0
        self._table_version = 0
        self._config_pending = False
        self._records_pending = False
        self._rollouts: Mapping[str, RolloutStatus] = {}
        self._targets_of: tuple[GatewayConfig | None, tuple[RolloutTarget, ...]] = (None, ())
        self._rollout_weights: dict[str, float] = {}
        self._rollouts_pending = False
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()

    # ---- inputs ------------------------------------------------------------

    def request_reload(self) -> None:
        """Mark the config file as changed (watcher, SIGHUP, admin)."""
        self._config_pending = True
        self._idle.clear()
        self._wake.set()

    @property
    def records(self) -> Mapping[ServiceKey, ServiceRecord]:
        """The records the table in force was built from."""
        return self._records

    def on_changes(
        self, changes: Mapping[ServiceKey, ServiceRecord | None], status: Any = None
    ) -> None:
        """The registry feed's callback: what changed since its last call (None: gone)."""
        self._changes.update(changes)
        self._changes_seen = True
        self._records_pending = True
        self._idle.clear()
        self._wake.set()

    def on_snapshot(self, records: Mapping[ServiceKey, ServiceRecord], status: Any = None) -> None:
        """Replace all records (tests, tools); the feed calls `on_changes` instead."""
        current = {**self._records, **self._changes}
        changes: dict[ServiceKey, ServiceRecord | None] = dict.fromkeys(
            current.keys() - records.keys()
        )
        changes.update((k, r) for k, r in records.items() if current.get(k) is not r)
        self.on_changes(changes, status)

    def on_rollouts(self, states: Mapping[str, RolloutStatus]) -> None:
        """The rollout runner's callback: every stored rollout status, by rollout name."""
        self._rollouts = dict(states)
        if self.active is None:
            return
        weights = weights_for(self._targets(self.active.config), self._rollouts)
        if weights != self._rollout_weights:
            self._rollouts_pending = True
            self._idle.clear()
            self._wake.set()

    def _targets(self, config: GatewayConfig) -> tuple[RolloutTarget, ...]:
        """`config`'s rollouts, found once per config (every rollout poll asks)."""
        cached, targets = self._targets_of
        if cached is not config:
            targets = rollout_targets(config)
            self._targets_of = (config, targets)
        return targets

    @property
    def rollout_weights(self) -> Mapping[str, float]:
        """Each rollout's canary weight in the table in force, by rollout name."""
        return self._rollout_weights

    # ---- work ----------------------------------------------------------------

    async def load_initial(self) -> ActiveConfig:
        """First load at startup: raises `ConfigError` when the file is not usable."""
        report = await asyncio.to_thread(check_config_file, self.path)
        if report.config is None:
            self._reject(report)
            raise ConfigError(report.issues)
        try:
            await self._install(report.config, report.digest)
        except Exception as exc:
            issue = ConfigIssue(str(self.path), 1, 1, "", f"cannot compile: {exc}")
            self._reject_issues((str(issue),))
            raise ConfigError([issue]) from exc
        assert self.active is not None
        return self.active

    async def run(self) -> None:
        """The pump: serially apply pending work until cancelled."""
        while True:
            await self._wake.wait()
            # editors write files in bursts; registry snapshots arrive already
            # debounced by the feed (and removals must not wait: failover)
            await asyncio.sleep(self.debounce_s if self._config_pending else 0)
            self._wake.clear()
            try:
                await self._step()
            except Exception:
                log.exception("reload step failed; keeping the active table")
            if not self._wake.is_set():
                self._idle.set()

    async def settled(self) -> None:
        """Wait until no work is pending (tests, admin)."""
        await self._idle.wait()

    async def apply_pending(self) -> None:
        """Do the pending work now; for startup, before `run` pumps."""
        self._wake.clear()
        await self._step()
        self._idle.set()

    async def _step(self) -> None:
        config_pending, self._config_pending = self._config_pending, False
        records_pending, self._records_pending = self._records_pending, False
        rollouts_pending, self._rollouts_pending = self._rollouts_pending, False
        if config_pending:
            report = await asyncio.to_thread(check_config_file, self.path)
            if report.config is None:
                self._reject(report)
            elif self.active is not None and report.digest == self.active.version:
                self.last_failure = None
                if rollouts_pending:
                    await self._install(self.active.config, self.active.version)
                elif records_pending:
                    await self._update()
            else:
                try:
                    await self._install(report.config, report.digest)
                except Exception as exc:
                    self._reject_issues((f"{self.path}:1:1: cannot compile: {exc}",))
                    return
                log.info(
                    "config reloaded",
                    extra={"version": report.digest, "source": str(self.path)},
                )
        elif rollouts_pending and self.active is not None:
            await self._install(self.active.config, self.active.version)
        elif records_pending and self.active is not None:
            await self._update()

    def _take_changes(self) -> tuple[dict[ServiceKey, ServiceRecord | None], bool]:
        """Fold the pending changes into the records; (changes, whether they include a sync)."""
        changes, self._changes = self._changes, {}
        synced, self._changes_seen = self._changes_seen, False
        for key, record in changes.items():
            if record is None:
                self._records.pop(key, None)
            else:
                self._records[key] = record
        return changes, synced

    async def _update(self) -> None:
        """Records changed, config did not: update the table in force (module docstring)."""
        assert self.active is not None
        if self._compile is not None or self.table is None or self._index_suspect:
            self._index_suspect = False
            await self._install(self.active.config, self.active.version)
            return
        changes, synced = self._take_changes()
        self._table_version += 1
        tag = f"{self.active.version}.{self._table_version}"
        table = self.table
        started = time.perf_counter()

        def build() -> Any:
            self._index_suspect = True  # until the update is done: a failure rebuilds it whole
            touched = apply_record_changes(self._index, changes)
            updated = update_table(table, self._index, touched, version=tag)
            self._index_suspect = False
            return updated

        involved = count_endpoints(r for r in changes.values() if r is not None)
        config = self.active.config
        if self._hashed[0] is not config:
            self._hashed = (config, _has_hashed(config))  # a walk of every backend: once
        if involved > self.executor_endpoints or self._hashed[1]:
            new = await asyncio.to_thread(build)
        else:
            new = build()
        self.last_compile_s = time.perf_counter() - started
        self.active = ActiveConfig(
            self.active.config,
            self.active.version,
            self.active.source,
            self.active.loaded_at,
            self._table_version,
        )
        self.table = new
        self.last_swap_full = involved > self.executor_endpoints
        self._on_swap(new, self.active)
        self.registry_synced = self.registry_synced or synced

    async def _install(self, config: GatewayConfig, digest: str) -> None:
        self._table_version += 1
        version = self._table_version
        _changes, synced = self._take_changes()
        tag = f"{digest}.{version}"
        started = time.perf_counter()
        compile_fn = self._compile
        targets = self._targets(config)
        weights = weights_for(targets, self._rollouts)
        weighted = with_weights(config, weights, targets)

        def build() -> Any:
            if compile_fn is not None:
                table = compile_fn(
                    weighted, list(self._records.values()), version=tag, seed=self._seed
                )
            else:
                self._index = index_records(self._records.values())
                planner = {} if self._plan_rule is None else {"plan_rule": self._plan_rule}
                table = compile_indexed(
                    weighted, self._index, version=tag, seed=self._seed, **planner
                )
            warm = getattr(table, "warm", None)
            if warm is not None:
                warm()  # hash tables are built here, never on a request
            return table

        if count_endpoints(self._records.values()) > self.executor_endpoints or _has_hashed(config):
            table = await asyncio.to_thread(build)
        else:
            table = build()
        self.last_compile_s = time.perf_counter() - started
        now = self._clock()
        previous = self.active
        same_file = previous is not None and previous.version == digest
        loaded_at = previous.loaded_at if same_file and previous else now
        self.active = ActiveConfig(config, digest, str(self.path), loaded_at, version)
        self.table = table
        self._rollout_weights = weights
        self.last_swap_full = True
        if not same_file:
            self.stats.success += 1
            self.stats.last_success_s = now
            self.last_failure = None
        self._on_swap(table, self.active)
        self.registry_synced = self.registry_synced or synced

    def _reject(self, report: ConfigReport) -> None:
        self._reject_issues(
            tuple(str(issue) for issue in report.errors)
            or tuple(str(issue) for issue in report.issues)
        )

    def _reject_issues(self, issues: tuple[str, ...]) -> None:
        self.stats.failure += 1
        self.last_failure = ReloadFailure(self._clock(), issues)
        log.log(
            logging.ERROR if self._announce else logging.DEBUG,
            "config rejected; keeping the last good config"
            if self.active is not None
            else "config rejected",
            extra={
                "source": str(self.path),
                "issues": list(issues),
                "active_version": self.active.version if self.active else None,
            },
        )

    async def watch_file(self, stop: asyncio.Event | None = None) -> None:
        """Watch the config file's directory (editors replace files by rename)."""
        import watchfiles

        target = self.path.resolve()

        def relevant(_change: watchfiles.Change, changed: str) -> bool:
            return Path(changed).resolve() == target

        async for _changes in watchfiles.awatch(
            target.parent,
            watch_filter=relevant,
            debounce=50,
            step=20,
            stop_event=stop,
            recursive=False,
        ):
            self.request_reload()
