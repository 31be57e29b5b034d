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
the pump takes them, folded into the reloader's records. Tables are built
by its `TableBuilder` (`gateway.runtime.table_builder`: the index of records
by service, and whether a build runs inline or in a thread). The result is
handed to `on_swap(table, active)`, which assigns `ctx.table` (one attribute
store: requests already routing hold their own reference to the old table).

A third input is the progressive rollouts' stored statuses (`on_rollouts`,
from `gateway.rollout.runner`, held as `rollout.targets.RolloutWeights`). A
full compile takes the file's config with each rollout rule's canary at its
rollout's weight, so a table is a pure function of config, records and
rollout statuses; statuses that change a weight mark a full compile (routes
hold the split), others change nothing.

The config file is followed by `gateway.runtime.file_watch.watch_config_file`
(with `request_reload` as its callback), started by the process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from gateway.config.active import ActiveConfig, ReloadFailure
from gateway.config.errors import ConfigError, ConfigIssue
from gateway.config.loader import ConfigReport, check_config_file
from gateway.config.model import GatewayConfig
from gateway.ops.metrics import ReloadStats
from gateway.rollout.machine import RolloutStatus
from gateway.rollout.targets import RolloutWeights
from gateway.runtime.table_builder import CompileFn, TableBuilder
from portway.model import ServiceKey, ServiceRecord

log = logging.getLogger("portway.gateway.runtime.reload")

SwapFn = Callable[[Any, ActiveConfig], None]


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
        self._on_swap = on_swap
        self._builder = TableBuilder(
            compile_fn=compile_fn,
            plan_rule=plan_rule,
            seed=seed,
            executor_endpoints=executor_endpoints,
        )
        self.debounce_s = debounce_s
        self._clock = clock
        self.active: ActiveConfig | None = None
        self.table: Any = None
        self._records: dict[ServiceKey, ServiceRecord] = {}
        self._changes: dict[ServiceKey, ServiceRecord | None] = {}
        self._changes_seen = False
        self.last_swap_full = False
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
        self._rollouts = RolloutWeights()
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
        self._rollouts.heard(states)
        if self.active is not None and self._rollouts.changed(self.active.config):
            self._rollouts_pending = True
            self._idle.clear()
            self._wake.set()

    @property
    def rollout_weights(self) -> Mapping[str, float]:
        """Each rollout's canary weight in the table in force, by rollout name."""
        return self._rollouts.in_force

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
        if self.table is None or not self._builder.can_update:
            await self._install(self.active.config, self.active.version)
            return
        changes, synced = self._take_changes()
        self._table_version += 1
        tag = f"{self.active.version}.{self._table_version}"
        started = time.perf_counter()
        new, whole = await self._builder.update(self.table, self.active.config, changes, tag=tag)
        self.last_compile_s = time.perf_counter() - started
        self.active = ActiveConfig(
            self.active.config,
            self.active.version,
            self.active.source,
            self.active.loaded_at,
            self._table_version,
        )
        self.table = new
        self.last_swap_full = whole
        self._on_swap(new, self.active)
        self.registry_synced = self.registry_synced or synced

    async def _install(self, config: GatewayConfig, digest: str) -> None:
        self._table_version += 1
        version = self._table_version
        _changes, synced = self._take_changes()
        tag = f"{digest}.{version}"
        started = time.perf_counter()
        weighted, weights = self._rollouts.weighted(config)
        table = await self._builder.compile(weighted, self._records, tag=tag)
        self.last_compile_s = time.perf_counter() - started
        now = self._clock()
        previous = self.active
        same_file = previous is not None and previous.version == digest
        loaded_at = previous.loaded_at if same_file and previous else now
        self.active = ActiveConfig(config, digest, str(self.path), loaded_at, version)
        self.table = table
        self._rollouts.in_force = weights
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
