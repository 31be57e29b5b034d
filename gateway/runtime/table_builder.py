"""Routing tables for the reloader: a whole compile, or an update of the table in force.

Theory of operation. `compile` builds a table from a config and every
record, indexing the records by service on the way (`expansion.index_records`:
one pointer per record, no copy); `update` folds per-key record changes into
that index and rebuilds only the backends fed by the services they touch
(`routing.update.update_table`: routes, rules and untouched backends are the
table in force's own objects). An update that fails half way leaves the
index suspect, and the next table is compiled whole (`can_update`).

Where the work runs: a compile or update that is small runs inline on the
event loop; a big one (more than `executor_endpoints` endpoints involved), or
any compile of a config with ring-hash or Maglev backends (their lookup
tables take tens of ms to build), runs in a thread so accepted connections
keep being served meanwhile. Measured (2 shared cores): compile costs ~3 µs
per endpoint, so 2,000 endpoints stall the loop ~6 ms inline; 20,000
endpoints stall it ~38 ms inline but at most ~8 ms from a thread (the GIL
switch interval), for ~20% more wall time. A compiled table is warmed
(`RoutingTable.warm`) where it is built, never on a request.

A whole compile is given the last table built (`compile_indexed`'s
`previous`): the backends it would build again unchanged are that table's
own, so a config reload or a rollout step holds one copy of the fleet's
endpoints, not two.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gateway.config.model import GatewayConfig, LbPolicy
from gateway.routing.compiler import compile_indexed
from gateway.routing.expansion import RecordIndex, index_records
from gateway.routing.update import apply_record_changes, update_table
from portway.model import ServiceKey, ServiceRecord

CompileFn = Callable[..., Any]


def has_hashed(config: GatewayConfig) -> bool:
    """Whether warming builds ring/Maglev tables (tens of ms: keep them off the loop)."""
    hashed = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)
    return any(b.load_balancer.policy in hashed for b in config.backends)


def count_endpoints(records: Iterable[Any]) -> int:
    """Endpoints in a snapshot (nodes × ports), the measure of compile cost."""
    total = 0
    for record in records:
        total += len(getattr(record, "nodes", ())) * max(1, len(getattr(record, "ports", ())))
    return total


class TableBuilder:
    """Builds the tables of one reloader; see the module docstring."""

    def __init__(
        self,
        *,
        compile_fn: CompileFn | None = None,
        plan_rule: Callable[..., Any] | None = None,
        seed: int = 0,
        executor_endpoints: int = 2_000,
    ) -> None:
        """`compile_fn` replaces the compiler (tests of the pipeline alone): it is given
        the config and a list of the records, and every table is then compiled whole.
        `plan_rule` is what the protocol layer builds once per rule (`compile_indexed`);
        updates keep the rules, and so the plans, of the table in force."""
        self._compile = compile_fn
        self._plan_rule = plan_rule
        self._seed = seed
        self.executor_endpoints = executor_endpoints
        self._index: RecordIndex = {}
        self._index_suspect = False
        self._last: Any = None
        """The last table built: a whole compile keeps what it would build again."""
        self._hashed: tuple[GatewayConfig | None, bool] = (None, False)

    @property
    def can_update(self) -> bool:
        """Whether `update` may build on the table in force (else compile it whole)."""
        return self._compile is None and not self._index_suspect

    def _off_loop(self, config: GatewayConfig, involved: int) -> bool:
        """Whether a build of `involved` endpoints under `config` runs in a thread:
        past `executor_endpoints`, or when warming builds hash tables."""
        if involved > self.executor_endpoints:
            return True
        if self._hashed[0] is not config:
            self._hashed = (config, has_hashed(config))  # a walk of every backend: once
        return self._hashed[1]

    async def compile(
        self, config: GatewayConfig, records: Mapping[ServiceKey, ServiceRecord], *, tag: str
    ) -> Any:
        """A whole table of `config` (rollout weights applied) and every record."""
        compile_fn = self._compile

        def build() -> Any:
            if compile_fn is not None:
                table = compile_fn(config, list(records.values()), version=tag, seed=self._seed)
            else:
                self._index = index_records(records.values())
                self._index_suspect = False
                planner = {} if self._plan_rule is None else {"plan_rule": self._plan_rule}
                table = compile_indexed(
                    config,
                    self._index,
                    version=tag,
                    seed=self._seed,
                    previous=self._last,
                    **planner,
                )
                self._last = table
            warm = getattr(table, "warm", None)
            if warm is not None:
                warm()  # hash tables are built here, never on a request
            return table

        if self._off_loop(config, count_endpoints(records.values())):
            return await asyncio.to_thread(build)
        return build()

    async def update(
        self,
        table: Any,
        config: GatewayConfig,
        changes: Mapping[ServiceKey, ServiceRecord | None],
        *,
        tag: str,
    ) -> tuple[Any, bool]:
        """(`table` with `changes` applied, whether that was big enough to count as a
        table built whole); only when `can_update`."""

        def build() -> Any:
            self._index_suspect = True  # until the update is done: a failure rebuilds it whole
            touched = apply_record_changes(self._index, changes)
            updated = update_table(table, self._index, touched, version=tag)
            self._index_suspect = False
            self._last = updated
            return updated

        involved = count_endpoints(r for r in changes.values() if r is not None)
        if self._off_loop(config, involved):
            new = await asyncio.to_thread(build)
        else:
            new = build()
        return new, involved > self.executor_endpoints
