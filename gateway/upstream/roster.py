"""Which endpoints the table in force holds, followed backend by backend in bounded slices.

Theory of operation. The health driver keeps state per endpoint key (probe
targets, outlier records, reasons) and must forget it once no backend of
the table holds the key any more, ramp the new endpoints of a backend that
already served, and let back an ejected endpoint its cluster publishes
Ready again. The roster answers those questions per changed backend:

- `follow(backends)` plans the move to a new table: the backends that are
  new objects (incremental tables share every untouched backend, so a
  registry change plans that service's backends only; the identity test of
  each name is the one step proportional to the fleet, ~0.1 µs a backend);
- `advance(budget)` carries out at most `budget` endpoints of the plan and
  returns what that slice changed (`RosterStep`), so a first table of
  500,000 endpoints is counted in slices between which the event loop
  serves requests, instead of in one stall.

A key is gone once no counted backend holds it, two backends may share a
key, and every planned backend is counted in before any replaced one is
counted out, across overlapping plans too: a key moving from one backend to
another is never forgotten in between. What is counted is places, not keys:
`_where` lists, per (cluster, port) an endpoint has, the counted backends
holding an endpoint there (one NodePort is one Service in one cluster, so a
registry place is one service's, usually held by one backend and, during a
move, by its successor too). Counting a backend out compares its keys with
those of the other holders of its places only, so the roster holds no entry
per endpoint: at 10,000 services x 50 endpoints 2.7 MiB for 20,000 places,
where one count per key took 14.7 MiB. A replaced backend is kept only until
it is counted out. Places shared by many backends (static endpoints of many
backends on one port) make counting out walk those backends' endpoints;
slices count that walk too.

Pure: no I/O, no clock; the caller applies each step.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class RosterStep:
    """What one slice changed: backends counted in, keys to ramp or let back, keys gone."""

    added: list[tuple[str, Any]] = field(default_factory=list)
    """(name, backend) counted in: their probe targets are (re)derived by the caller."""
    ramp: list[str] = field(default_factory=list)
    """New keys of a backend that had endpoints before (a cluster coming back)."""
    ready_again: list[str] = field(default_factory=list)
    """Keys NotReady in the replaced backend and Ready in its successor."""
    gone: list[str] = field(default_factory=list)
    """Keys no followed backend holds any more: forget their state."""


Place = tuple[str, int]
"""(cluster, port) of an endpoint."""


class EndpointRoster:
    """The followed backends and the places they hold endpoints at (module docstring)."""

    __slots__ = ("_adds", "_not_ready", "_releases", "_where", "backends")

    def __init__(self) -> None:
        self.backends: dict[str, Any] = {}
        """Name → the compiled backend counted in."""
        self._where: dict[Place, tuple[Any, ...]] = {}
        """Place → the counted backends (followed, or replaced and not yet counted out) with
        an endpoint there, once per time counted."""
        self._adds: list[tuple[str, Any]] = []
        self._releases: list[Any] = []
        self._not_ready: set[str] = set()

    @property
    def pending(self) -> bool:
        """Whether part of a plan is still to be carried out."""
        return bool(self._adds or self._releases)

    def holders(self) -> dict[str, int]:
        """How many counted backends hold each key, counted anew (tests and debugging)."""
        counts: dict[str, int] = {}
        for backend in (*self.backends.values(), *self._releases):
            for e in backend.endpoints:
                counts[e.key] = counts.get(e.key, 0) + 1
        return counts

    def follow(self, backends: Mapping[str, Any]) -> None:
        """Plan the move to `backends` (name → compiled backend); replaces an unfinished plan."""
        followed = self.backends
        self._adds = [(n, b) for n, b in backends.items() if followed.get(n) is not b]
        for name in followed.keys() - backends.keys():
            self._releases.append(followed.pop(name))

    def advance(self, budget: int | None = None) -> RosterStep:
        """Carry out about `budget` endpoints of the plan (None: all of it)."""
        step = RosterStep()
        left = budget if budget is not None else -1
        where, adds = self._where, self._adds
        while adds and left != 0:
            name, backend = adds.pop()
            old = self.backends.get(name)
            self.backends[name] = backend
            endpoints = backend.endpoints
            for place in _places(endpoints):
                where[place] = (*where.get(place, ()), backend)
            if old is not None:
                self._releases.append(old)
                self._compare(old, endpoints, step)
            step.added.append((name, backend))
            left = max(0, left - max(1, len(endpoints))) if left > 0 else left
        releases = self._releases
        while not adds and releases and left != 0:
            walked = self._count_out(releases.pop(), step.gone)
            left = max(0, left - max(1, walked)) if left > 0 else left
        if not self.pending:
            self._not_ready.clear()
        return step

    def _count_out(self, old: Any, gone: list[str]) -> int:
        """Forget `old` at its places; append to `gone` its keys no other holder there has.
        Returns how many endpoints that walked."""
        where = self._where
        walked = len(old.endpoints)
        for place in _places(old.endpoints):
            holders = list(where.get(place, ()))
            del holders[next(i for i, b in enumerate(holders) if b is old)]  # never __eq__
            if holders:
                where[place] = tuple(holders)
            else:
                del where[place]
            cluster, port = place
            mine = dict.fromkeys(
                e.key for e in old.endpoints if e.port == port and e.cluster == cluster
            )
            if holders:
                held: set[str] = set()
                for other in holders:
                    held.update(e.key for e in other.endpoints)
                    walked += len(other.endpoints)
                gone += [key for key in mine if key not in held]
            else:
                gone += mine
        return walked

    def _compare(self, old: Any, endpoints: Any, step: RosterStep) -> None:
        """Ramp keys new to a backend that had endpoints; note keys turned Ready."""
        before = old.endpoints
        if not before:
            return
        keys = {e.key for e in before}
        self._not_ready.update(e.key for e in before if not e.ready)
        step.ramp += [e.key for e in endpoints if e.key not in keys]
        not_ready = self._not_ready
        step.ready_again += [e.key for e in endpoints if e.ready and e.key in not_ready]


def _places(endpoints: Any) -> dict[Place, None]:
    """The distinct (cluster, port) of `endpoints`, in order of first appearance.

    A record's endpoints are contiguous and share its cluster and port objects, so
    an identity test skips them without building a tuple per endpoint.
    """
    places: dict[Place, None] = {}
    cluster: object = None
    port: object = None
    for e in endpoints:
        if e.cluster is cluster and e.port is port:
            continue
        cluster, port = e.cluster, e.port
        places[(e.cluster, e.port)] = None
    return places
