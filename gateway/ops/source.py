"""What the admin API and the dashboard read of the gateway process.

Its own module so that the admin API (`gateway.ops.admin`) and the dashboard
(`gateway.ops.dashboard`), which the admin API mounts, both depend on this
promise rather than on each other.
"""

from __future__ import annotations

from typing import Any, Protocol

from gateway.rollout.runner import RolloutRunner
from gateway.runtime.reload import Reloader


class AdminSource(Protocol):
    """What the admin API reads; implemented by the worker runtime and the supervisor."""

    reloader: Reloader
    rollouts: RolloutRunner
    needs_registry: bool
    expected_workers: int

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
