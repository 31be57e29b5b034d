"""What the contract suite needs of a backend under test (see conftest.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from portway.registry.base import Registry


@dataclass
class Harness:
    name: str
    make: Callable[[str], Registry]
    """A new session; its argument is the publisher identity (`owner=`, "" for none)."""
    put_raw: Callable[[str, bytes], Awaitable[None]]
    exact_history: bool
    ttl_floor_s: float = 0.0
    sessions: list[Registry] = field(default_factory=list)

    def session(self, owner: str = "") -> Registry:
        reg = self.make(owner)
        self.sessions.append(reg)
        return reg
