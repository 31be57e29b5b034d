"""What the contract suite needs of a backend under test (see conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from relay import Relay

from portway.registry.base import Registry


@dataclass
class Partition:
    """A reader session whose path to the store can be cut and healed.

    Writers' sessions keep their path (memory, which has no path, makes the
    whole store unavailable: its held leases never lapse, so writers lose
    nothing by it).
    """

    reader: Registry
    cut: Callable[[], Awaitable[None]]
    heal: Callable[[], Awaitable[None]]


@dataclass
class Harness:
    name: str
    make: Callable[[str], Registry]
    """A new session; its argument is the publisher identity (`owner=`, "" for none)."""
    put_raw: Callable[[str, bytes], Awaitable[None]]
    exact_history: bool
    partition: Callable[[], Awaitable[Partition]]
    ttl_floor_s: float = 0.0
    sessions: list[Registry] = field(default_factory=list)
    relays: list[Relay] = field(default_factory=list)

    def session(self, owner: str = "") -> Registry:
        reg = self.make(owner)
        self.sessions.append(reg)
        return reg

    async def partitioned_reader(self) -> Partition:
        """A reader session that `cut()` cuts off from the store (closed with the rest)."""
        partition = await self.partition()
        self.sessions.append(partition.reader)
        return partition
