"""Ketama-style consistent hash ring.

Each endpoint is placed on a 64-bit ring at `ring_size / 8 × weight /
mean weight` points (at least one), at `stable_hash("<key>#<i>")`. As in
ketama, an endpoint's point count does not depend on how many others there
are, so a rebuild without one endpoint adds no points to the survivors and
moves only the keys the missing endpoint held. A request hash goes to
the first point clockwise. When an endpoint is unavailable the walk goes on
to the next point owned by another endpoint, so only the keys that belonged to
the missing endpoint move (≈ 1/N of them); the ring itself is only rebuilt
when the endpoint set changes, i.e. on a table compile.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Container, Sequence
from random import Random

from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.hashing import stable_hash

POINTS_DIVISOR = 8


class HashRing:
    """The ring over a fixed endpoint set; `lookup` skips endpoints not allowed."""

    __slots__ = ("_endpoints", "_owners", "_points")

    def __init__(self, endpoints: Sequence[Endpoint], ring_size: int = 1024) -> None:
        self._endpoints = tuple(endpoints)
        count = len(self._endpoints) or 1
        mean_weight = sum(e.weight for e in self._endpoints) / count or 1.0
        per_endpoint = max(16, ring_size // POINTS_DIVISOR)
        placed: list[tuple[int, int]] = []
        for idx, ep in enumerate(self._endpoints):
            replicas = max(1, round(per_endpoint * ep.weight / mean_weight))
            placed.extend((stable_hash(f"{ep.key}#{i}"), idx) for i in range(replicas))
        placed.sort()
        self._points = [p for p, _ in placed]
        self._owners = [self._endpoints[i] for _, i in placed]

    def __len__(self) -> int:
        return len(self._points)

    def lookup(self, hash_: int, allowed: Container[str] | None = None) -> Endpoint | None:
        """First endpoint clockwise from `hash_` whose key is in `allowed` (None: any)."""
        points = self._points
        n = len(points)
        if not n:
            return None
        start = bisect_left(points, hash_)
        owners = self._owners
        if allowed is None:
            return owners[start % n]
        for step in range(n):
            ep = owners[(start + step) % n]
            if ep.key in allowed:
                return ep
        return None


class RingHashPicker:
    """Picker over a shared ring, restricted to the currently allowed keys."""

    __slots__ = ("_allowed", "_ring")

    def __init__(self, ring: HashRing, allowed: Container[str] | None) -> None:
        self._ring = ring
        self._allowed = allowed

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        return self._ring.lookup(hash_, self._allowed)
