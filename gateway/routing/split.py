"""Choosing a backend within a rule: weights, then the canary on top.

Theory of operation. Without a canary the rule's `backendRefs` share the
traffic by weight (a precomputed cumulative table and one `bisect` per
request; a single backend skips even that). A canary takes `percent` of the
requests first. A request carrying the override header or cookie with its
value always goes to the canary. With `sticky`, the client's side is kept in
a cookie: a request that carries it keeps its side (`canary` or `stable`);
one that does not is decided by `percent` and told, through the decision's
`set_cookie`, which side it landed on.

A split names its backends by *slot*, an index into the table's
`RoutingTable.slots`, not by holding them: a registry change then replaces
a compiled backend in the next table's slots while every rule (and whatever
was built per rule) is shared with the table in force.
"""

from __future__ import annotations

from bisect import bisect_right
from dataclasses import dataclass, field
from itertools import accumulate
from random import Random
from typing import Final

from gateway.config.model import Canary
from gateway.routing.facts import RequestFacts

CANARY_SIDE: Final = "canary"
STABLE_SIDE: Final = "stable"
NO_SLOT: Final = -1


@dataclass(frozen=True, slots=True, eq=False)
class BackendSplit:
    """The backends of one rule (slots and names) with their weights, and the optional canary."""

    slots: tuple[int, ...]
    names: tuple[str, ...]
    weights: tuple[int, ...]
    canary: int = NO_SLOT
    canary_name: str = ""
    canary_config: Canary | None = None
    cum: tuple[int, ...] = field(init=False)
    single: int = field(init=False)
    """The slot when exactly one backend has weight > 0 and there is no canary (fast
    path), else `NO_SLOT`."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "cum", tuple(accumulate(self.weights)))
        live = [s for s, w in zip(self.slots, self.weights, strict=True) if w > 0]
        single = live[0] if len(live) == 1 and self.canary == NO_SLOT else NO_SLOT
        object.__setattr__(self, "single", single)

    def choose(
        self, facts: RequestFacts, rng: Random, why: list[str] | None = None
    ) -> tuple[int, str]:
        """(slot or `NO_SLOT`, Set-Cookie value or ""); appends the reasons to `why` when given."""
        c = self.canary_config
        if c is not None and self.canary != NO_SLOT:
            if c.header is not None and facts.headers.get(c.header.name.lower()) == c.header.value:
                if why is not None:
                    why.append(f"canary forced by header {c.header.name}: {c.header.value}")
                return self.canary, ""
            if c.cookie is not None and facts.cookie(c.cookie.name) == c.cookie.value:
                if why is not None:
                    why.append(f"canary forced by cookie {c.cookie.name}={c.cookie.value}")
                return self.canary, ""
            if c.sticky:
                side = facts.cookie(c.sticky_cookie)
                if side in (CANARY_SIDE, STABLE_SIDE):
                    if why is not None:
                        why.append(f"sticky cookie {c.sticky_cookie}={side} keeps the client there")
                    if side == CANARY_SIDE:
                        return self.canary, ""
                    return self._weighted(rng, why), ""
            to_canary = rng.random() * 100.0 < c.percent
            if why is not None:
                sent = "canary" if to_canary else "stable"
                why.append(f"canary takes {c.percent:g}% of requests; this one drew {sent}")
            cookie = ""
            if c.sticky:
                side = CANARY_SIDE if to_canary else STABLE_SIDE
                cookie = f"{c.sticky_cookie}={side}; Path=/; HttpOnly; SameSite=Lax"
                if why is not None:
                    why.append(f"sticky: Set-Cookie {c.sticky_cookie}={side}")
            if to_canary:
                return self.canary, cookie
            return self._weighted(rng, why), cookie
        return self._weighted(rng, why), ""

    def _weighted(self, rng: Random, why: list[str] | None) -> int:
        slots = self.slots
        cum = self.cum
        if not cum or cum[-1] == 0:
            if why is not None:
                why.append("no backend has a weight above 0")
            return NO_SLOT
        i = 0 if len(slots) == 1 else bisect_right(cum, rng.random() * cum[-1])
        if why is not None:
            total = cum[-1]
            shares = ", ".join(
                f"{n} {w}/{total}" for n, w in zip(self.names, self.weights, strict=True)
            )
            why.append(f"weights: {shares} → {self.names[i]}")
        return slots[i]
