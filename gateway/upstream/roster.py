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

Keys are counted per backend holding them (`holders`), so a key two
backends share stays known until neither holds it. Every planned backend
is counted in before any replaced one is counted out, across overlapping
plans too: a key moving from one backend to another is never forgotten in
between. A replaced backend is kept only until it is counted out; the
roster holds the followed backends (shared with the table) and one integer
per key, no per-backend key sets.

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


class EndpointRoster:
    """The followed backends and how many of them hold each key (module docstring)."""

    __slots__ = ("_adds", "_not_ready", "_releases", "backends", "holders")

    def __init__(self) -> None:
        self.backends: dict[str, Any] = {}
        """Name → the compiled backend counted in (or being counted out)."""
        self.holders: dict[str, int] = {}
        """Endpoint key → how many counted backends hold it."""
        self._adds: list[tuple[str, Any]] = []
        self._releases: list[Any] = []
        self._not_ready: set[str] = set()

    @property
    def pending(self) -> bool:
        """Whether part of a plan is still to be carried out."""
        return bool(self._adds or self._releases)

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
        holders, adds = self.holders, self._adds
        while adds and left != 0:
            name, backend = adds.pop()
            old = self.backends.get(name)
            self.backends[name] = backend
            endpoints = backend.endpoints
            for e in endpoints:
                holders[e.key] = holders.get(e.key, 0) + 1
            if old is not None:
                self._releases.append(old)
                self._compare(old, endpoints, step)
            step.added.append((name, backend))
            left = max(0, left - max(1, len(endpoints))) if left > 0 else left
        releases = self._releases
        while not adds and releases and left != 0:
            old = releases.pop()
            for e in old.endpoints:
                n = holders.get(e.key, 1) - 1
                if n > 0:
                    holders[e.key] = n
                else:
                    holders.pop(e.key, None)
                    step.gone.append(e.key)
            left = max(0, left - max(1, len(old.endpoints))) if left > 0 else left
        if not self.pending:
            self._not_ready.clear()
        return step

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
