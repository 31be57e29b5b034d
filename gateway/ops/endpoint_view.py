"""Endpoints as the whole gateway sees them, from its workers' reports.

Each worker judges endpoints on its own (health checks, outlier ejections,
in-flight counts), and the admin API answers for the whole gateway: an
endpoint down in any worker is down (that worker sends it nothing), in-flight
requests are summed, and the first reason a worker gives is the reason
shown. `backend_rows` is one backend as `/endpoints` lists it: each
endpoint's record fields, its locality level, and what the merged state says
of it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from gateway.routing.endpoints import EndpointState


def merged_state(reports: Iterable[Mapping[str, Any]]) -> tuple[EndpointState, dict[str, int]]:
    """Endpoint state as the whole gateway sees it: down anywhere = down; in-flight summed."""
    state = EndpointState()
    in_flight: dict[str, int] = {}
    for report in reports:
        eps = report.get("endpoints", {})
        state.unhealthy.update(eps.get("unhealthy", ()))
        for key in eps.get("ejected", ()):
            state.ejected[key] = float("inf")
        state.draining.update(eps.get("draining", ()))
        for key, n in eps.get("in_flight", {}).items():
            in_flight[key] = in_flight.get(key, 0) + n
    return state, in_flight


def merged_reasons(reports: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Why each endpoint is out of rotation (health check, ejection), as workers said it."""
    out: dict[str, str] = {}
    for report in reports:
        for key, why in report.get("endpoints", {}).get("reasons", {}).items():
            out.setdefault(key, why)
    return out


def endpoint_levels(backend: Any) -> dict[str, int]:
    """Locality level index of each endpoint key in a compiled backend (0 = preferred)."""
    out: dict[str, int] = {}
    for index, level in enumerate(getattr(backend, "levels", ()) or ()):
        members = getattr(level, "endpoints", level)
        for endpoint in members:
            out.setdefault(getattr(endpoint, "key", str(endpoint)), index)
    return out


def _level_name(names: tuple[str, ...], index: int | None) -> str | None:
    return names[index] if index is not None and index < len(names) else None


def backend_rows(
    backend: Any, state: EndpointState, in_flight: dict[str, int], reasons: dict[str, str]
) -> list[dict[str, Any]]:
    """Each endpoint of a compiled backend with its locality and its merged state."""
    levels = endpoint_levels(backend)
    level_names = tuple(getattr(backend, "level_names", ()))
    return [
        {
            **ep.to_dict(),
            "locality_level": levels.get(ep.key),
            "locality": _level_name(level_names, levels.get(ep.key)),
            "healthy": ep.key not in state.unhealthy,
            "ejected": ep.key in state.ejected,
            "draining": ep.key in state.draining,
            "available": ep.ready and state.available(ep.key),
            "in_flight": in_flight.get(ep.key, 0),
            "reason": reasons.get(ep.key),
        }
        for ep in getattr(backend, "endpoints", ())
    ]
