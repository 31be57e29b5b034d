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

`backend_exposition` writes the two families as Prometheus text directly:
20,000 (backend, cluster) pairs take prometheus_client's generic renderer
about half a second, and a plain join a few tens of milliseconds.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from gateway.routing.endpoints import EndpointState

BackendCounts = dict[tuple[str, str], tuple[int, int]]
"""(backend, cluster) → (available endpoints, endpoints)."""


def unavailable_keys(state: EndpointState) -> frozenset[str]:
    """The keys `state` keeps out of rotation, copied (cheap: they are few)."""
    return frozenset((*state.unhealthy, *state.ejected, *state.draining))


class BackendCounter:
    """`backend_counts` that recounts only backends replaced since its last call.

    An incremental table shares every untouched `CompiledBackend` with the one
    before it, so with the same unavailable keys a backend object seen last time
    has the same counts: a new table costs one identity check per backend.
    """

    def __init__(self) -> None:
        self._unavailable: frozenset[str] | None = None
        self._seen: dict[str, tuple[Any, list[tuple[str, int, int]]]] = {}

    def count(self, backends: Mapping[str, Any], unavailable: frozenset[str]) -> BackendCounts:
        if unavailable != self._unavailable:
            self._seen = {}
            self._unavailable = unavailable
        seen = self._seen
        fresh: dict[str, tuple[Any, list[tuple[str, int, int]]]] = {}
        out: BackendCounts = {}
        for name, backend in backends.items():
            known = seen.get(name)
            if known is None or known[0] is not backend:
                rows = [
                    (cluster, available, total)
                    for (_, cluster), (available, total) in backend_counts(
                        {name: backend}, unavailable
                    ).items()
                ]
                known = (backend, rows)
            fresh[name] = known
            for cluster, available, total in known[1]:
                out[(name, cluster)] = (available, total)
        self._seen = fresh
        return out


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
    ("portway_backend_endpoints", "Endpoints of each backend in each cluster.", 1),
    (
        "portway_backend_endpoints_available",
        "Endpoints that may take traffic (ready, healthy, not ejected or drained).",
        0,
    ),
)


def backend_exposition(counts: BackendCounts) -> bytes:
    """`portway_backend_endpoints{backend,cluster}` and `..._available` as exposition text."""
    items = sorted(counts.items())
    labels = [f'{{backend="{_escape(b)}",cluster="{_escape(c)}"}} ' for (b, c), _ in items]
    lines: list[str] = []
    for name, help_text, column in _FAMILIES:
        lines.append(f"# HELP {name} {help_text}\n# TYPE {name} gauge\n")
        lines += [
            f"{name}{label}{pair[column]}\n" for label, (_, pair) in zip(labels, items, strict=True)
        ]
    return "".join(lines).encode()


def _escape(value: str) -> str:
    if "\\" in value or '"' in value or "\n" in value:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return value
