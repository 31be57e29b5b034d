"""Maglev consistent hashing (Eisenbud et al., NSDI 2016).

Each endpoint has a permutation of the table slots given by an offset and a
skip derived from two independent hashes of its key; the table (a prime size
M) is filled by letting endpoints claim, in turn, their next preferred free
slot. Weighted: in round t an endpoint claims a slot only while it has
claimed fewer than t × weight / max_weight. Lookup is `table[hash % M]`, and
when that endpoint is unavailable the walk goes on through the following
slots to the next allowed endpoint, so only the missing endpoint's keys move.
Building is O(M log M) in pure Python (tens of ms for M = 65537), so tables
are built lazily on first use per backend level.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from random import Random

from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.hashing import stable_hash


def is_prime(n: int) -> bool:
    if n < 2:
        return False
    if n % 2 == 0:
        return n == 2
    f = 3
    while f * f <= n:
        if n % f == 0:
            return False
        f += 2
    return True


def next_prime(n: int) -> int:
    """The smallest prime ≥ n."""
    while not is_prime(n):
        n += 1
    return n


class MaglevTable:
    """The lookup table over a fixed endpoint set."""

    __slots__ = ("_slots", "size")

    def __init__(self, endpoints: Sequence[Endpoint], table_size: int = 65537) -> None:
        eps = tuple(endpoints)
        m = next_prime(table_size)
        self.size = m
        self._slots: list[Endpoint] = []
        if not eps:
            return
        offsets = [stable_hash("offset:" + e.key) % m for e in eps]
        skips = [stable_hash("skip:" + e.key) % (m - 1) + 1 for e in eps]
        max_weight = max(e.weight for e in eps)
        shares = [e.weight / max_weight for e in eps]
        nexts = [0] * len(eps)
        claimed = [0] * len(eps)
        entry: list[int] = [-1] * m
        filled = 0
        rounds = 0
        while filled < m:
            rounds += 1
            for i in range(len(eps)):
                if claimed[i] >= rounds * shares[i]:
                    continue
                off, skip, j = offsets[i], skips[i], nexts[i]
                slot = (off + j * skip) % m
                while entry[slot] >= 0:
                    j += 1
                    slot = (off + j * skip) % m
                entry[slot] = i
                nexts[i] = j + 1
                claimed[i] += 1
                filled += 1
                if filled == m:
                    break
        self._slots = [eps[i] for i in entry]

    def lookup(self, hash_: int, allowed: Container[str] | None = None) -> Endpoint | None:
        """The endpoint of slot `hash_ % size`, walking on past endpoints not allowed."""
        slots = self._slots
        if not slots:
            return None
        m = self.size
        start = hash_ % m
        if allowed is None:
            return slots[start]
        for step in range(m):
            ep = slots[(start + step) % m]
            if ep.key in allowed:
                return ep
        return None


class MaglevPicker:
    """Picker over a shared Maglev table, restricted to the currently allowed keys."""

    __slots__ = ("_allowed", "_table")

    def __init__(self, table: MaglevTable, allowed: Container[str] | None) -> None:
        self._table = table
        self._allowed = allowed

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        return self._table.lookup(hash_, self._allowed)
