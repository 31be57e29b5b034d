"""A compiled backend: its endpoints by locality level, and how one is picked.

`CompiledBackend` is a frozen value of the routing table. What depends on
live state is computed on demand and cached in its private `_cache`: the
`LocalityPlan` (level shares and one picker per level) is rebuilt only when
`EndpointState.generation` changes or another state object is passed, and
hash rings / Maglev tables are built on first use, once per level. A pick is
then: plan check → level by share → picker.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Container, Iterable
from dataclasses import dataclass, field
from itertools import accumulate
from random import Random
from typing import Final

from gateway.config.model import (
    Backend,
    CircuitBreaker,
    HashSource,
    HealthCheck,
    LbPolicy,
    LoadBalancer,
    Locality,
    OutlierDetection,
)
from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.facts import RequestFacts
from gateway.routing.hashing import HASH_SPACE, stable_hash
from gateway.routing.locality import PriorityLoad, priority_load
from gateway.routing.maglev import MaglevPicker, MaglevTable
from gateway.routing.picker import (
    LeastRequestPicker,
    Picker,
    RampPicker,
    RandomPicker,
    RoundRobinPicker,
)
from gateway.routing.ring_hash import HashRing, RingHashPicker
from portway.model import ServiceRecord

_HASHED: Final = (LbPolicy.RING_HASH, LbPolicy.MAGLEV)


class LocalityPlan:
    """Level shares and pickers for one availability generation of one state."""

    __slots__ = ("cum", "generation", "levels", "load", "pickers", "single", "state", "usable")

    def __init__(
        self,
        state: EndpointState,
        load: PriorityLoad,
        levels: tuple[tuple[Endpoint, ...], ...],
        pickers: tuple[Picker, ...],
        usable: tuple[Endpoint, ...] = (),
    ) -> None:
        self.state = state
        self.usable = usable
        """Endpoints that may take traffic now (ready, healthy, not ejected, not drained)."""
        self.generation = state.generation
        self.load = load
        self.levels = levels
        self.pickers = pickers
        positive = [i for i, s in enumerate(load.shares) if s > 0]
        self.single: Picker | None = pickers[positive[0]] if len(positive) == 1 else None
        total = sum(load.shares)
        cum = [c / total for c in accumulate(load.shares)] if total > 0 else []
        if cum:
            cum[-1] = 1.0  # a draw in [0, 1) always lands on a level, whatever the rounding
        # empty when no level has a share: every pick then answers None
        self.cum: tuple[float, ...] = tuple(cum)


@dataclass(slots=True)
class _BackendCache:
    plan: LocalityPlan | None = None
    by_key: dict[str, Endpoint] | None = None
    cluster_counts: dict[str, tuple[int, int]] | None = None
    hash_tables: dict[int, HashRing | MaglevTable] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, eq=False)
class CompiledBackend:
    """A backend's endpoints (after region filtering) grouped into priority levels."""

    name: str
    endpoints: tuple[Endpoint, ...]
    levels: tuple[tuple[Endpoint, ...], ...]
    level_names: tuple[str, ...]
    load_balancer: LoadBalancer
    locality: Locality
    allowed_regions: tuple[str, ...] = ()
    affinity_timeout_s: float = 0.0
    circuit_breaker: CircuitBreaker = field(default_factory=CircuitBreaker)
    outlier_detection: OutlierDetection | None = None
    health_check: HealthCheck | None = None
    tls: bool = False
    config: Backend | None = field(default=None, repr=False)
    records: tuple[ServiceRecord, ...] = field(default=(), repr=False)
    """The registry records it was expanded from (as the compiler's record index held
    them), so a later whole compile of an equal config keeps this backend when they are
    the same objects (`compiler._compile`)."""
    _cache: _BackendCache = field(default_factory=_BackendCache, repr=False)

    @property
    def policy(self) -> LbPolicy:
        return self.load_balancer.policy

    def endpoint(self, key: str) -> Endpoint | None:
        """The endpoint with this key, if the backend has it."""
        by_key = self._cache.by_key
        if by_key is None:
            by_key = self._cache.by_key = {e.key: e for e in self.endpoints}
        return by_key.get(key)

    def cluster_counts(self) -> dict[str, tuple[int, int]]:
        """(ready, total) endpoints per cluster, counted once per compiled backend (metrics)."""
        counts = self._cache.cluster_counts
        if counts is None:
            tally: dict[str, list[int]] = {}
            for e in self.endpoints:
                pair = tally.get(e.cluster)
                if pair is None:
                    pair = tally[e.cluster] = [0, 0]
                pair[0] += e.ready
                pair[1] += 1
            counts = self._cache.cluster_counts = {c: (r, t) for c, (r, t) in tally.items()}
        return counts

    def hash_of(self, facts: RequestFacts) -> int:
        """The request's hash per `hash_on`; the client IP when the header/cookie is absent."""
        hash_on = self.load_balancer.hash_on
        text: str | None = None
        if hash_on is not None and hash_on.name:
            if hash_on.source is HashSource.HEADER:
                text = facts.headers.get(hash_on.name.lower())
            elif hash_on.source is HashSource.COOKIE:
                text = facts.cookie(hash_on.name)
        return stable_hash(text if text is not None else facts.client_ip)

    def plan(self, state: EndpointState, rng: Random) -> LocalityPlan:
        """The cached plan for `state`'s current generation (built when stale)."""
        plan = self._cache.plan
        if plan is None or plan.generation != state.generation or plan.state is not state:
            plan = self._cache.plan = self._build_plan(state, rng)
        return plan

    def pick(
        self,
        facts: RequestFacts,
        state: EndpointState,
        rng: Random,
        now: float = 0.0,
        fail_closed: bool = False,
    ) -> Endpoint | None:
        """One endpoint for this request, or None when no endpoint may take it.

        In panic the plan spreads over every endpoint (fail open); with
        `fail_closed` a panicking backend keeps to `usable` endpoints instead.
        """
        plan = self._cache.plan
        if plan is None or plan.generation != state.generation or plan.state is not state:
            plan = self._cache.plan = self._build_plan(state, rng)
        if fail_closed and plan.load.panic:
            usable = plan.usable
            return _weighted_choice(list(usable), rng) if usable else None
        if self.affinity_timeout_s > 0:
            return self._pick_affine(facts, state, rng, now, plan)
        if self.load_balancer.policy in _HASHED:
            h = self.hash_of(facts)
            picker = plan.single
            if picker is None:
                if not plan.cum:
                    return None
                picker = plan.pickers[bisect_right(plan.cum, h / HASH_SPACE)]
            return picker.pick(state, rng, h)
        picker = plan.single
        if picker is None:
            if not plan.cum:
                return None
            picker = plan.pickers[bisect_right(plan.cum, rng.random())]
        return picker.pick(state, rng, 0)

    def _pick_affine(
        self, facts: RequestFacts, state: EndpointState, rng: Random, now: float, plan: LocalityPlan
    ) -> Endpoint | None:
        affinity = state.affinity
        client = facts.client_ip
        key = affinity.lookup(self.name, client, now)
        if key is not None:
            ep = self.endpoint(key)
            if ep is not None and (plan.load.panic or (ep.ready and state.available(key))):
                affinity.remember(self.name, client, key, now + self.affinity_timeout_s)
                return ep
        if not plan.cum:
            return None
        picker = plan.single or plan.pickers[bisect_right(plan.cum, rng.random())]
        h = self.hash_of(facts) if self.load_balancer.policy in _HASHED else 0
        ep = picker.pick(state, rng, h)
        if ep is not None:
            affinity.remember(self.name, client, ep.key, now + self.affinity_timeout_s)
        return ep

    def usable_count(self, state: EndpointState, rng: Random) -> int:
        """How many endpoints may take traffic now (0: the backend is empty for failover)."""
        return len(self.plan(state, rng).usable)

    def _build_plan(self, state: EndpointState, rng: Random) -> LocalityPlan:
        available = state.available
        usable = tuple(
            tuple(e for e in level if e.ready and available(e.key)) for level in self.levels
        )
        counts: list[float]
        if state.returning:  # slow start: a returning endpoint counts for its ramp
            slow, ramp = self.locality.slow_start_s, state.ramp
            counts = [sum(ramp(e.key, slow) for e in u) for u in usable]
        else:
            counts = [float(len(u)) for u in usable]
        load = priority_load(
            counts,
            [len(level) for level in self.levels],
            self.locality.overprovisioning_factor,
            self.locality.panic_threshold,
        )
        chosen = self.levels if load.panic else usable
        pickers = tuple(
            self._picker(i, level, None if load.panic else {e.key for e in level}, rng)
            for i, level in enumerate(chosen)
        )
        if state.returning:
            pickers = self._ramped(pickers, chosen, state)
        return LocalityPlan(state, load, chosen, pickers, tuple(e for u in usable for e in u))

    def _ramped(
        self,
        pickers: tuple[Picker, ...],
        levels: tuple[tuple[Endpoint, ...], ...],
        state: EndpointState,
    ) -> tuple[Picker, ...]:
        """Pickers of levels holding a ramping endpoint, wrapped in a `RampPicker`."""
        slow = self.locality.slow_start_s
        out: list[Picker] = []
        for picker, level in zip(pickers, levels, strict=True):
            ramps = {e.key: state.ramp(e.key, slow) for e in level if e.key in state.returning}
            ramps = {k: r for k, r in ramps.items() if r < 1.0}
            out.append(RampPicker(picker, ramps) if ramps and len(level) > 1 else picker)
        return tuple(out)

    def _picker(
        self, index: int, level: tuple[Endpoint, ...], allowed: Container[str] | None, rng: Random
    ) -> Picker:
        lb = self.load_balancer
        policy = lb.policy
        if policy is LbPolicy.ROUND_ROBIN:
            return RoundRobinPicker(level, start=int(rng.random() * max(1, len(level))))
        if policy is LbPolicy.RANDOM:
            return RandomPicker(level)
        if policy is LbPolicy.LEAST_REQUEST:
            return LeastRequestPicker(level, lb.choice_count)
        table = self._hash_table(index)
        if isinstance(table, HashRing):
            return RingHashPicker(table, allowed)
        return MaglevPicker(table, allowed)

    def _hash_table(self, index: int) -> HashRing | MaglevTable:
        """The ring or Maglev table of level `index`, built once per compiled backend."""
        lb = self.load_balancer
        table = self._cache.hash_tables.get(index)
        if lb.policy is LbPolicy.RING_HASH:
            if not isinstance(table, HashRing):
                table = self._cache.hash_tables[index] = HashRing(self.levels[index], lb.ring_size)
            return table
        if not isinstance(table, MaglevTable):
            table = MaglevTable(self.levels[index], lb.maglev_table_size)
            self._cache.hash_tables[index] = table
        return table

    def warm(self) -> None:
        """Build the hash tables of every level now, so no request pays for it.

        A Maglev table of the default size takes tens of milliseconds to fill
        in Python (55 ms for 50 endpoints here); built lazily, the first
        request to each level would wait that long. The runtime calls this
        after a compile, before the table is swapped in (in the compile's
        thread when it is big). The per-cluster tally the metrics read is made
        here too, so the first scrape after a 500,000-endpoint compile does not
        walk every endpoint.
        """
        self.cluster_counts()
        if self.load_balancer.policy in _HASHED:
            for index in range(len(self.levels)):
                self._hash_table(index)

    def retry_pick(
        self, tried: Iterable[str], state: EndpointState, rng: Random
    ) -> Endpoint | None:
        """Another endpoint for a retry: untried first, levels not yet tried first.

        Like Envoy's previous-priorities retry predicate, levels that already
        saw a try are taken out of the share computation, so a retry after a
        failure in the local level goes to the next level; when every level
        was tried, all levels count again. Within the chosen level an untried
        available endpoint is taken at random (weighted); when none is left,
        any available one of the backend.
        """
        tried_keys = set(tried)
        plan = self.plan(state, rng)
        levels = plan.levels
        if not levels:
            return None
        touched = [any(e.key in tried_keys for e in level) for level in self.levels]
        order = [i for i in range(len(levels)) if not touched[i]] or list(range(len(levels)))
        available = state.available
        counts_total = [len(self.levels[i]) for i in order]
        counts_avail = [
            sum(1 for e in self.levels[i] if plan.load.panic or (e.ready and available(e.key)))
            for i in order
        ]
        load = priority_load(
            counts_avail,
            counts_total,
            self.locality.overprovisioning_factor,
            0.0,
        )
        ranked = list(range(len(order)))
        if sum(load.shares) > 0:
            first = bisect_right(list(accumulate(load.shares)), rng.random() * sum(load.shares))
            ranked = [first, *(j for j in ranked if j != first)]
        for j in ranked:
            level = levels[order[j]]
            fresh = [e for e in level if e.key not in tried_keys]
            if fresh:
                return _weighted_choice(fresh, rng)
        pool = [e for level in levels for e in level]
        return _weighted_choice(pool, rng) if pool else None

    def describe(self) -> dict[str, object]:
        """JSON-able summary for the admin API and `portway routes list --json`."""
        return {
            "name": self.name,
            "policy": self.policy.value,
            "allowedRegions": list(self.allowed_regions),
            "levels": [
                {"name": n, "endpoints": [e.key for e in level]}
                for n, level in zip(self.level_names, self.levels, strict=True)
            ],
        }


def _weighted_choice(eps: list[Endpoint], rng: Random) -> Endpoint:
    total = sum(e.weight for e in eps)
    x = rng.random() * total
    for e in eps:
        x -= e.weight
        if x < 0:
            return e
    return eps[-1]
