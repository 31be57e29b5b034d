"""What the admin API and the dashboard read of the gateway process.

Its own module so that the admin API (`gateway.ops.admin`) and the dashboard
(`gateway.ops.dashboard`), which the admin API mounts, both depend on this
promise rather than on each other. The process that implements it (a worker,
or the supervisor: `gateway.runtime`) sits above ops, so the promise is stated
here as protocols and ops imports nothing of the runtime.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from gateway.config.active import ActiveConfig, ReloadFailure
from gateway.ops.metrics import ReloadStats
from gateway.routing.table import RoutingTable


class ReloadSource(Protocol):
    """What the admin API and the dashboard read of the process's reloader
    (`gateway.runtime.reload.Reloader`, which sits above them): the config and
    table in force, the last refusal, and the reload counters. Read only."""

    @property
    def path(self) -> Path:
        """The config file followed."""
        ...

    @property
    def active(self) -> ActiveConfig | None:
        """None until the first config loaded."""
        ...

    @property
    def table(self) -> RoutingTable | None: ...

    @property
    def last_failure(self) -> ReloadFailure | None: ...

    @property
    def last_compile_s(self) -> float: ...

    @property
    def stats(self) -> ReloadStats: ...

    @property
    def registry_synced(self) -> bool:
        """A table built from the first registry sync serves (`/readyz`)."""
        ...


class AdminSource(Protocol):
    """What the admin API reads; implemented by the worker runtime and the supervisor."""

    needs_registry: bool
    expected_workers: int

    @property
    def reloader(self) -> ReloadSource: ...

    @property
    def draining(self) -> bool:
        """True from the moment the gateway was asked to stop (it drains, then exits)."""
        ...

    async def reports(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> list[dict[str, Any]]:
        """One report per worker: `{"pid", "metrics", "endpoints": {...}}`.

        `per_endpoint` asks for one health value per endpoint in the metrics;
        `availability=False` for no per-(backend, cluster) counts (not needed
        by a caller that reads only the endpoint state); `rendered` lets a
        single process answer those counts as exposition text
        (`MetricsSnapshot.backend_endpoints_text`), all `/metrics` needs.
        """
        ...

    async def set_endpoint_draining(self, key: str, draining: bool) -> None: ...
