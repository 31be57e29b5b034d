"""Endpoint availability per (backend, cluster): the default, bounded-cardinality health metric.

A per-endpoint health series (`portway_endpoint_health{cluster,endpoint}`)
is 500,000 series at 10,000 services × 50 endpoints; like Envoy, portway
reports per backend and cluster by default and per endpoint only on request
(`/metrics?endpoints=1`). The count costs: each compiled backend tallies its
endpoints per cluster once (`CompiledBackend.cluster_counts`, cached with
the backend, so an incremental table recounts only what it recompiled), and
each call then looks up the currently unavailable keys (unhealthy, ejected,
drained: few) in every backend. The walk reads only the immutable table and
a copy of the unavailable keys, so the caller runs it in a thread.

`backend_exposition` and `BackendCounter.exposition` write the two families
as Prometheus text directly, through one writer (`_exposition`):
20,000 (backend, cluster) pairs take prometheus_client's generic renderer
about half a second, and a plain join a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

from gateway.routing.endpoints import EndpointState

BackendCounts = dict[tuple[str, str], tuple[int, int]]
"""(backend, cluster) → (available endpoints, endpoints)."""


def unavailable_keys(state: EndpointState) -> frozenset[str]:
    """The keys `state` keeps out of rotation, copied (cheap: they are few)."""
    return frozenset((*state.unhealthy, *state.ejected, *state.draining))


Rows = tuple[tuple[str, int, int], ...]
"""(cluster, available, total) per cluster of one backend."""


class BackendCounter:
    """Availability counts kept up to date at the cost of what changed.

    An incremental table shares every untouched `CompiledBackend` with the one
    before it, so a backend object seen last time, with the same unavailable
    keys, has the same counts: a new table costs one identity check per
    backend. When keys turn unavailable or back, only the backends holding
    such a key's (cluster, port) are recounted, found through an index of
    places built the first time the unavailable keys change (a fleet where
    nothing is ever drained, ejected or unhealthy never builds it: a first
    count of 10,000 backends is 2-3 times cheaper without) and kept up to
    date after; only those backends ever build their key lookup
    (`CompiledBackend.endpoint`), so one drained endpoint does not make every
    backend of the fleet build one.

    What it keeps is tuples of strings and integers, which the cyclic
    collector stops tracking, so a scrape at fleet size does not give every
    full collection tens of thousands more objects to walk (seen: 7-15 ms
    collections on the event loop per scrape with lists and sets here).
    `exposition` renders straight from the kept rows, in name order kept
    from one call to the next, with no per-pair objects.
    """

    def __init__(self) -> None:
        self._unavailable: frozenset[str] = frozenset()
        self._counted: dict[str, Any] = {}
        """Name → the backend object its rows were counted from."""
        self._seen: dict[str, Rows] = {}
        self._places: dict[str, tuple[Place, ...]] = {}
        self._where: dict[Place, tuple[str, ...]] | None = None
        """Place → names of the backends holding it; None until first needed."""
        self._order: list[str] = []
        """Backend names sorted, as of the last `exposition`."""

    def count(self, backends: Mapping[str, Any], unavailable: frozenset[str]) -> BackendCounts:
        """(available, total) per (backend, cluster) of `backends`."""
        self._refresh(backends, unavailable)
        return {
            (name, cluster): (available, total)
            for name, rows in self._seen.items()
            for cluster, available, total in rows
        }

    def exposition(self, backends: Mapping[str, Any], unavailable: frozenset[str]) -> str:
        """`backend_exposition` of what `count` would give, without building it."""
        self._refresh(backends, unavailable)
        seen = self._seen
        if len(self._order) != len(seen) or any(name not in seen for name in self._order):
            self._order = sorted(seen)
        return _exposition(self._order, seen)

    def _refresh(self, backends: Mapping[str, Any], unavailable: frozenset[str]) -> None:
        stale: set[str] = set()
        if unavailable != self._unavailable:
            where = self._where
            if where is None:
                where = self._where = {}
                for name, backend in self._counted.items():
                    self._index(name, backend)
            for key in unavailable ^ self._unavailable:
                place = key_place(key)
                if place is not None:
                    stale.update(where.get(place, ()))
            self._unavailable = unavailable
        places = {key: key_place(key) for key in unavailable}
        seen, counted = self._seen, self._counted
        for name, backend in backends.items():
            if counted.get(name) is not backend:
                self._index(name, backend)
                counted[name] = backend
            elif name not in stale:
                continue
            seen[name] = self._rows(name, backend, places)
        if len(seen) != len(backends):
            for name in [n for n in seen if n not in backends]:
                del seen[name], counted[name]
                self._index(name, None)

    def _index(self, name: str, backend: Any) -> None:
        where = self._where
        if where is None:
            return
        for place in self._places.pop(name, ()):
            holders = tuple(n for n in where.get(place, ()) if n != name)
            if holders:
                where[place] = holders
            else:
                where.pop(place, None)
        if backend is None:
            return
        mine = tuple({(e.cluster, e.port): None for e in backend.endpoints})
        self._places[name] = mine
        for place in mine:
            where[place] = (*where.get(place, ()), name)

    def _rows(self, name: str, backend: Any, places: Mapping[str, Place | None]) -> Rows:
        down: dict[str, int] = {}
        mine = self._places.get(name, ()) if places else ()
        for key, place in places.items():
            if place in mine:
                ep = backend.endpoint(key)
                if ep is not None and ep.ready:
                    down[ep.cluster] = down.get(ep.cluster, 0) + 1
        return tuple(
            sorted(
                (cluster, ready - down.get(cluster, 0), total)
                for cluster, (ready, total) in backend.cluster_counts().items()
            )
        )


Place = tuple[str, int]
"""(cluster, port) of an endpoint key."""


def key_place(key: str) -> Place | None:
    """(cluster, port) of `cluster/address:port` (see `endpoint_key`); None if malformed."""
    cluster, _, rest = key.partition("/")
    _, _, port = rest.rpartition(":")
    return (cluster, int(port)) if port.isdigit() else None


def backend_counts(backends: Mapping[str, Any], unavailable: Collection[str]) -> BackendCounts:
    """Available and total endpoints per (backend, cluster); see the module docstring."""
    out: BackendCounts = {}
    for name, backend in backends.items():
        down: dict[str, int] = {}
        for key in unavailable:
            ep = backend.endpoint(key)
            if ep is not None and ep.ready:
                down[ep.cluster] = down.get(ep.cluster, 0) + 1
        for cluster, (ready, total) in backend.cluster_counts().items():
            out[(name, cluster)] = (ready - down.get(cluster, 0), total)
    return out


_FAMILIES = (
    ("portway_backend_endpoints", "Endpoints of each backend in each cluster.", 2),
    (
        "portway_backend_endpoints_available",
        "Endpoints that may take traffic (ready, healthy, not ejected or drained).",
        1,
    ),
)
"""Name, help and the `Rows` column each family reports (total or available)."""


def backend_exposition(counts: BackendCounts) -> bytes:
    """`portway_backend_endpoints{backend,cluster}` and `..._available` as exposition text."""
    rows: dict[str, list[tuple[str, int, int]]] = {}
    for (backend, cluster), (available, total) in sorted(counts.items()):
        rows.setdefault(backend, []).append((cluster, available, total))
    return _exposition(list(rows), rows).encode()


def _exposition(order: Sequence[str], rows: Mapping[str, Sequence[tuple[str, int, int]]]) -> str:
    """The two families of `rows` (each backend's (cluster, available, total), clusters
    sorted), backends in `order`: the one writer behind `backend_exposition` and
    `BackendCounter.exposition`, so a lone process and a merged fleet say the same bytes."""
    chunks: list[str] = []
    for name, help_text, column in _FAMILIES:
        chunks.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        for backend in order:
            label = _escape(backend)
            for row in rows[backend]:
                chunks.append(
                    f'{name}{{backend="{label}",cluster="{_escape(row[0])}"}} {row[column]}\n'
                )
    return "".join(chunks)


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value
