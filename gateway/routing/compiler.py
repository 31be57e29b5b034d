"""Config + registry snapshot → `RoutingTable`.

Theory of operation. `compile_table` is a pure function: the same config,
the same records (in any order) and the same seed give an equal table.
Records are sorted by key first. Each backend is compiled once:

- a registry backend (`service: {namespace, name, port, clusters}`) is
  expanded from its records into one endpoint per eligible node
  (`gateway.routing.expansion`: nodePorts, externalTrafficPolicy Local,
  NotReady nodes); static endpoints are taken as written;
- `allowedRegions` of the backend drops endpoints of other regions here, at
  compile time, so no pick can ever leave them. A route with its own
  `allowedRegions` gets its own variant of each backend, filtered to the
  intersection.

Each listener gets an index of the routes it serves by hostname
(`gateway.routing.listener_index`).

Each compiled backend sits in a slot of the table (`BackendLayout`), and
rules name backends by slot, so `gateway.routing.update.update_table` can
replace the backends a registry change touches and share everything else;
this whole compile is what config changes go through, and the oracle the
incremental update is tested against. Given the `previous` table, a whole
compile keeps each of its backends (endpoints, levels, warm hash tables)
whose config is equal and whose records are the same objects, and the
route-region variants of those: a config change or a rollout step that
touches no backend builds routes, not a second copy of 500,000 endpoints.

The endpoint loop (`expansion._expand_record`) is the only per-endpoint
work (10,000 services × 50 endpoints must compile in under a second); hash
rings, Maglev tables and locality plans are built lazily on first use.
"""

from __future__ import annotations

import gc
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from random import Random

from gateway.config.model import (
    Backend,
    GatewayConfig,
    GatewaySettings,
    Route,
)
from gateway.routing.backend import CompiledBackend
from gateway.routing.endpoints import Endpoint
from gateway.routing.expansion import (
    ExpansionMemo,
    RecordIndex,
    backend_records,
    index_records,
    registry_endpoints,
)
from gateway.routing.layout import BackendLayout, SlotSpec
from gateway.routing.listener_index import listener_indexes
from gateway.routing.locality import group_levels
from gateway.routing.route import CompiledRoute, RulePlanner, compile_rule
from gateway.routing.split import NO_SLOT, BackendSplit
from gateway.routing.table import RoutingTable
from portway.model import ServiceRecord

SlotLookup = Callable[[str, tuple[str, ...], str], int]


class CompileError(ValueError):
    """The config refers to something that does not exist (the loader normally catches it)."""


def compile_table(
    config: GatewayConfig,
    records: Iterable[ServiceRecord],
    *,
    version: str = "",
    seed: int | None = None,
    plan_rule: RulePlanner | None = None,
    previous: RoutingTable | None = None,
) -> RoutingTable:
    """Compile `config` against a registry snapshot; see the module docstring.

    `plan_rule` is called once per compiled rule and its result kept on the
    rule (`CompiledRule.plan`): the HTTP proxy passes the builder of its
    filter chains (`gateway.http.plan.compile_http_table`); routing alone
    (`portway routes`, tests of the routing core) needs none. Backends of
    `previous` are kept where nothing they were built from changed.
    """
    return compile_indexed(
        config,
        index_records(records),
        version=version,
        seed=seed,
        plan_rule=plan_rule,
        previous=previous,
    )


def compile_indexed(
    config: GatewayConfig,
    by_service: RecordIndex,
    *,
    version: str = "",
    seed: int | None = None,
    plan_rule: RulePlanner | None = None,
    previous: RoutingTable | None = None,
) -> RoutingTable:
    """`compile_table` over records already indexed (`index_records`, `apply_record_changes`)."""
    with collector_paused():
        return _compile(config, by_service, version, seed, plan_rule, previous)


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic GC while compiling (restoring its previous state after).

    A compile allocates hundreds of thousands of long-lived objects and no
    cycles worth collecting; left on, the collector rescans the growing heap
    again and again and more than doubles the compile time.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _compile(
    config: GatewayConfig,
    by_service: RecordIndex,
    version: str,
    seed: int | None,
    plan_rule: RulePlanner | None = None,
    previous: RoutingTable | None = None,
) -> RoutingTable:
    gw = config.gateway
    memo = ExpansionMemo()
    slots: list[CompiledBackend] = []
    specs: list[SlotSpec] = []
    bases: dict[str, int] = {}
    kept: dict[str, CompiledBackend] = {}
    before = previous.backends if previous is not None and previous.gateway == gw else {}
    for b in config.backends:
        bases[b.name] = len(slots)
        specs.append(SlotSpec(b, (), len(slots)))
        records = backend_records(b, by_service)
        old = before.get(b.name)
        if old is not None and _unchanged(old, b, records):
            kept[b.name] = old
            slots.append(old)
            continue
        endpoints = registry_endpoints(b, by_service, memo)
        slots.append(compile_backend(b, endpoints, gw, records=records))
    variants: dict[tuple[str, tuple[str, ...]], int] = {}

    def slot_for(name: str, route_regions: tuple[str, ...], where: str) -> int:
        base = bases.get(name)
        if base is None:
            raise CompileError(f"{where}: unknown backend {name!r}")
        if not route_regions:
            return base
        key = (name, route_regions)
        slot = variants.get(key)
        if slot is None:
            slot = variants[key] = len(slots)
            specs.append(SlotSpec(specs[base].backend, route_regions, base))
            old = previous.variants.get(key) if name in kept and previous is not None else None
            if old is None:
                old = compile_variant(slots[base], route_regions, gw)
            slots.append(old)
        return slot

    routes = tuple(
        _compile_route(route, i, slot_for, plan_rule) for i, route in enumerate(config.routes)
    )
    http, l4 = listener_indexes(config.listeners, routes)
    layout = BackendLayout.of(specs)
    return RoutingTable(
        version=version,
        gateway=gw,
        listeners=config.listeners,
        routes=routes,
        slots=tuple(slots),
        layout=layout,
        backends={name: slots[i] for name, i in layout.by_name.items()},
        variants={key: slots[i] for key, i in layout.by_variant.items()},
        http=http,
        l4=l4,
        rng=Random(seed),
    )


def compile_variant(
    base: CompiledBackend, route_regions: tuple[str, ...], gw: GatewaySettings
) -> CompiledBackend:
    """`base` filtered to a route's allowedRegions (intersected with the backend's own)."""
    assert base.config is not None
    allowed = set(route_regions)
    if base.allowed_regions:
        allowed &= set(base.allowed_regions)
    eps = [e for e in base.endpoints if e.region in allowed]
    return compile_backend(base.config, eps, gw, tuple(sorted(allowed)), filtered=True)


def _unchanged(old: CompiledBackend, backend: Backend, records: tuple[ServiceRecord, ...]) -> bool:
    """Whether `old` is what compiling `backend` from `records` would give again."""
    if len(old.records) != len(records) or not (old.config is backend or old.config == backend):
        return False
    return all(a is b for a, b in zip(old.records, records, strict=True))


def compile_backend(
    backend: Backend,
    endpoints: Sequence[Endpoint],
    gw: GatewaySettings,
    allowed_regions: tuple[str, ...] = (),
    *,
    filtered: bool = False,
    records: tuple[ServiceRecord, ...] = (),
) -> CompiledBackend:
    """Group `endpoints` into locality levels; applies the backend's allowedRegions.
    `records` are those `endpoints` were expanded from (`backend_records`)."""
    allowed = allowed_regions or tuple(backend.allowed_regions)
    eps = tuple(endpoints)
    if backend.allowed_regions and not filtered:
        keep = set(backend.allowed_regions)
        eps = tuple(e for e in eps if e.region in keep)
    levels, names = group_levels(eps, backend.locality, gw.region, gw.zone)
    affinity = backend.session_affinity
    return CompiledBackend(
        name=backend.name,
        endpoints=eps,
        levels=levels,
        level_names=names,
        load_balancer=backend.load_balancer,
        locality=backend.locality,
        allowed_regions=allowed,
        affinity_timeout_s=affinity.timeout_s if affinity.type == "ClientIP" else 0.0,
        circuit_breaker=backend.circuit_breaker,
        outlier_detection=backend.outlier_detection,
        health_check=backend.health_check,
        tls=backend.tls,
        config=backend,
        records=records,
    )


def _compile_route(
    route: Route,
    index: int,
    slot_for: SlotLookup,
    plan_rule: RulePlanner | None = None,
) -> CompiledRoute:
    regions = tuple(sorted(set(route.allowed_regions)))
    rules = []
    for ui, rule in enumerate(route.rules):
        where = f"routes[{index}] {route.name} rules[{ui}]"
        canary = rule.canary
        split = BackendSplit(
            slots=tuple(slot_for(ref.name, regions, where) for ref in rule.backend_refs),
            names=tuple(ref.name for ref in rule.backend_refs),
            weights=tuple(ref.weight for ref in rule.backend_refs),
            canary=slot_for(canary.backend, regions, where) if canary else NO_SLOT,
            canary_name=canary.backend if canary else "",
            canary_config=canary,
        )
        rules.append(compile_rule(rule, ui, route.name, split, route, plan_rule))
    return CompiledRoute(
        name=route.name,
        index=index,
        listeners=route.listeners,
        hostnames=tuple(h.lower().rstrip(".") for h in route.hostnames),
        allowed_regions=regions,
        rules=tuple(rules),
        access=route.access,
        auth=route.auth,
        config=route,
    )
