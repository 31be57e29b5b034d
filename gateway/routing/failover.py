"""Failover across a rule's backends: an empty backend's share goes to the others.

Theory of operation. A rule splits its traffic over weighted backends (and a
canary). When the backend a request drew has no endpoint that may take
traffic (`CompiledBackend.usable_count` is 0: every endpoint down, ejected,
drained or NotReady, or none published at all, such as a cloud cluster
whose records expired), the request goes to another backend of the rule
drawn by weight among those that have usable endpoints, so the failed share
is spread over the others in proportion to their weights. Locality levels
fail over inside a backend (`gateway.routing.locality`); this is the level
above, and the two compose (Istio does one or the other, istio#35124).

`onEmpty: fail` on the rule keeps the share on the empty backend: its
requests are answered 503. When no other backend has a usable endpoint the
original draw stands, and that backend's panic mode decides (fail open over
all its endpoints, or closed). Residency holds by construction: every
backend of a route was compiled with the route's `allowedRegions` filter,
so no candidate here has an endpoint outside them.
"""

from __future__ import annotations

from random import Random
from typing import Final

from gateway.routing.backend import CompiledBackend
from gateway.routing.endpoints import EndpointState
from gateway.routing.route import CompiledRule
from gateway.routing.split import NO_SLOT, BackendSplit

FAILOVER: Final = "failover"


def fails_over(rule: CompiledRule) -> bool:
    """Whether an empty backend's share moves to the rule's other backends: `onEmpty:
    failover` (the default, and a rule compiled without its config), not `fail`."""
    config = rule.config
    return config is None or config.on_empty == FAILOVER


def failover_slot(
    split: BackendSplit,
    empty: int,
    slots: tuple[CompiledBackend, ...],
    state: EndpointState,
    rng: Random,
    why: list[str] | None = None,
) -> int:
    """The slot of another backend of `split` with usable endpoints, by weight; or NO_SLOT."""
    candidates: list[tuple[int, int]] = []
    skipped: list[str] = []
    for slot, weight in zip(split.slots, split.weights, strict=True):
        if slot == empty or weight <= 0:
            continue
        if slots[slot].usable_count(state, rng) > 0:
            candidates.append((slot, weight))
        else:
            skipped.append(slots[slot].name)
    if why is not None and skipped:
        why.append(f"skipped backends with no usable endpoint: {', '.join(skipped)}")
    if not candidates:
        return NO_SLOT
    x = rng.random() * sum(w for _, w in candidates)
    for slot, weight in candidates:
        x -= weight
        if x < 0:
            return slot
    return candidates[-1][0]
