"""Endpoint pickers for one priority level: round robin, least request, random.

A picker is built over the endpoints that may take the request (the level's
available ones, or all of them in panic), so it never returns an
unavailable endpoint. It is rebuilt whenever availability changes (the
locality plan is keyed on `EndpointState.generation`), which keeps each pick
O(1) or O(choices). Randomness comes from the `rng` passed in; the picker
keeps only its own position.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from itertools import accumulate
from random import Random
from typing import Final, Protocol

from gateway.routing.endpoints import Endpoint, EndpointState

MAX_SCHEDULE_WORK: Final = 65536


class Picker(Protocol):
    """Chooses one endpoint; `hash_` is the request's hash for hash-based pickers."""

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None: ...


def smooth_wrr_schedule(weights: Sequence[int]) -> list[int]:
    """nginx's smooth weighted round robin, one full cycle of `sum(weights)` indices.

    Each step every entry gains its weight, the largest current value wins
    (first on ties) and pays back the total: weights 5,1,1 give
    a a b a c a a, never a burst of the heavy entry.
    """
    total = sum(weights)
    current = [0] * len(weights)
    out: list[int] = []
    for _ in range(total):
        best = 0
        for i, w in enumerate(weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= total
        out.append(best)
    return out


class RoundRobinPicker:
    """Smooth weighted round robin; equal weights reduce to plain rotation.

    The cycle is precomputed when it is small (sum of weights × endpoints ≤
    MAX_SCHEDULE_WORK); otherwise each pick runs one nginx step, O(n).
    """

    __slots__ = ("_current", "_eps", "_i", "_seq", "_total", "_weights")

    def __init__(self, endpoints: Sequence[Endpoint], start: int = 0) -> None:
        self._eps = tuple(endpoints)
        weights = [e.weight for e in self._eps]
        self._weights = weights
        self._total = sum(weights)
        self._current = [0] * len(weights)
        self._seq: tuple[Endpoint, ...] = ()
        if len(set(weights)) <= 1:
            self._seq = self._eps
        elif self._total * len(weights) <= MAX_SCHEDULE_WORK:
            self._seq = tuple(self._eps[i] for i in smooth_wrr_schedule(weights))
        self._i = start % len(self._seq) if self._seq else 0

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        seq = self._seq
        if seq:
            i = self._i
            self._i = i + 1 if i + 1 < len(seq) else 0
            return seq[i]
        if not self._eps:
            return None
        current = self._current
        best = 0
        for i, w in enumerate(self._weights):
            current[i] += w
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self._eps[best]


class RandomPicker:
    """Weighted random: uniform index for equal weights, else bisect on cumulative weights."""

    __slots__ = ("_cum", "_eps", "_total")

    def __init__(self, endpoints: Sequence[Endpoint]) -> None:
        self._eps = tuple(endpoints)
        weights = [e.weight for e in self._eps]
        self._cum: tuple[int, ...] = () if len(set(weights)) <= 1 else tuple(accumulate(weights))
        self._total = sum(weights)

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        eps = self._eps
        if not eps:
            return None
        if not self._cum:
            return eps[int(rng.random() * len(eps))]
        return eps[bisect_right(self._cum, rng.random() * self._total)]


class LeastRequestPicker:
    """Power of `choices` random choices: the one with fewest in-flight requests per weight."""

    __slots__ = ("_choices", "_eps")

    def __init__(self, endpoints: Sequence[Endpoint], choices: int = 2) -> None:
        self._eps = tuple(endpoints)
        self._choices = choices

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        eps = self._eps
        n = len(eps)
        if n <= 1:
            return eps[0] if eps else None
        in_flight = state.in_flight
        best: Endpoint | None = None
        best_load = 0.0
        for _ in range(self._choices):
            ep = eps[int(rng.random() * n)]
            load = (in_flight.get(ep.key, 0) + 1) / ep.weight
            if best is None or load < best_load:
                best, best_load = ep, load
        return best


class RampPicker:
    """Slow start inside a level: an endpoint still ramping (`EndpointState.ramp`) keeps a
    pick with probability `ramp`, else one more draw is taken (Envoy's slow start
    scales weights the same way). Only plans built while something ramps use it."""

    __slots__ = ("inner", "ramps")

    def __init__(self, inner: Picker, ramps: dict[str, float]) -> None:
        self.inner = inner
        self.ramps = ramps

    def pick(self, state: EndpointState, rng: Random, hash_: int) -> Endpoint | None:
        ep = self.inner.pick(state, rng, hash_)
        if ep is not None:
            ramp = self.ramps.get(ep.key)
            if ramp is not None and rng.random() >= ramp:
                again = self.inner.pick(state, rng, hash_)
                if again is not None:
                    return again
        return ep
