"""Locality priority levels and Envoy's priority-load rule.

Theory of operation. A backend's endpoints are grouped into priority levels:
with `prefer: zone`, level 0 is the gateway's own zone, level 1 the rest of
its region, level 2 everything else; `prefer: region` has two levels,
`prefer: none` one; explicit `priorities` define the levels in order, and
endpoints they do not name form a last level. Empty levels are dropped (an
empty level has no health, so dropping it changes no share).

Each level's health is its available share × the overprovisioning factor,
capped at 100 %. Level 0 takes its health in percent of the traffic, the
next level takes its health of what is left, and so on. When the summed
health is below 100 % the shares are scaled up so they still sum to 100 %.
When the summed health is below the panic threshold the backend is in panic:
health is ignored and traffic spreads over all endpoints, level shares in
proportion to their endpoint counts. With no available endpoint at all there
is no share to give: the request fails with `no_healthy_upstream`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.config.model import Locality
from gateway.routing.endpoints import Endpoint


@dataclass(frozen=True, slots=True)
class PriorityLoad:
    """Per-level health and traffic share, both in percent, and the panic flag."""

    health: tuple[float, ...]
    shares: tuple[float, ...]
    panic: bool

    @property
    def total_health(self) -> float:
        return min(100.0, sum(self.health))


def priority_load(
    available: Sequence[float],
    total: Sequence[int],
    overprovisioning_factor: float = 1.4,
    panic_threshold: float = 50.0,
) -> PriorityLoad:
    """Envoy's rule (see module docstring) for levels with these endpoint counts."""
    health = tuple(
        min(100.0, 100.0 * a / t * overprovisioning_factor) if t else 0.0
        for a, t in zip(available, total, strict=True)
    )
    total_health = min(100.0, sum(health))
    if sum(available) == 0:
        return PriorityLoad(health, tuple(0.0 for _ in health), False)
    if total_health < panic_threshold:
        count = sum(total)
        return PriorityLoad(health, tuple(100.0 * t / count for t in total), True)
    shares: list[float] = []
    remaining = 100.0
    for h in health:
        share = min(remaining, h * 100.0 / total_health)
        shares.append(share)
        remaining -= share
    if remaining > 1e-9 and shares:
        for i in range(len(shares) - 1, -1, -1):
            if health[i] > 0:
                shares[i] += remaining
                break
    return PriorityLoad(health, tuple(shares), False)


def level_of(endpoint: Endpoint, locality: Locality, region: str, zone: str) -> int:
    """The priority level index of one endpoint (before empty levels are dropped)."""
    if locality.priorities:
        for i, p in enumerate(locality.priorities):
            if (
                (not p.regions or endpoint.region in p.regions)
                and (not p.zones or endpoint.zone in p.zones)
                and (not p.clusters or endpoint.cluster in p.clusters)
            ):
                return i
        return len(locality.priorities)
    if locality.prefer == "zone":
        if zone and endpoint.zone == zone and (not region or endpoint.region in ("", region)):
            return 0
        if region and endpoint.region == region:
            return 1
        return 2
    if locality.prefer == "region":
        return 0 if region and endpoint.region == region else 1
    return 0


def level_labels(locality: Locality, region: str, zone: str) -> tuple[str, ...]:
    """Human names of the levels `level_of` returns, by index."""
    if locality.priorities:
        names = []
        for p in locality.priorities:
            parts = [f"regions={list(p.regions)}"] if p.regions else []
            parts += [f"zones={list(p.zones)}"] if p.zones else []
            parts += [f"clusters={list(p.clusters)}"] if p.clusters else []
            names.append(" ".join(parts) or "any")
        return (*names, "unlisted")
    if locality.prefer == "zone":
        return (f"zone {zone or '?'}", f"region {region or '?'}", "other regions")
    if locality.prefer == "region":
        return (f"region {region or '?'}", "other regions")
    return ("all",)


def group_levels(
    endpoints: Sequence[Endpoint], locality: Locality, region: str, zone: str
) -> tuple[tuple[tuple[Endpoint, ...], ...], tuple[str, ...]]:
    """Endpoints grouped into non-empty levels in priority order, with level names."""
    labels = level_labels(locality, region, zone)
    if len(labels) == 1:
        return ((tuple(endpoints),), labels) if endpoints else ((), ())
    buckets: list[list[Endpoint]] = [[] for _ in labels]
    by_place: dict[tuple[str, str, str], list[Endpoint]] = {}
    for ep in endpoints:
        site = ep.site
        place = (site.region, site.zone, ep.cluster)
        bucket = by_place.get(place)
        if bucket is None:
            bucket = by_place[place] = buckets[level_of(ep, locality, region, zone)]
        bucket.append(ep)
    levels = tuple(tuple(b) for b in buckets if b)
    names = tuple(label for b, label in zip(buckets, labels, strict=True) if b)
    return levels, names
