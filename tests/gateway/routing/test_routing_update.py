"""Incremental tables: a registry change recompiles what it touches and equals a full compile."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from routing_builders import WEB, config, facts, record

from gateway.routing.compiler import compile_indexed, compile_table
from gateway.routing.endpoints import EndpointState
from gateway.routing.expansion import index_records
from gateway.routing.table import RoutingTable
from gateway.routing.update import apply_record_changes, update_table
from portway.model import ServiceKey, ServiceRecord, TrafficPolicy

REGIONS = ("eu-west-1", "us-east-1")
CLUSTERS = ("a", "b", "c")
SERVICES = ("web", "api", "img")


def _doc(backends: list[dict[str, Any]], routes: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "gateway": {"region": "eu-west-1", "zone": "eu-west-1a"},
        "listeners": [WEB],
        "routes": routes,
        "backends": backends,
    }


def _svc_backend(name: str, service: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "service": {"namespace": "shop", "name": service, "port": "http", **extra.pop("ref", {})},
        **extra,
    }


backend_docs = st.lists(
    st.tuples(
        st.sampled_from(SERVICES),
        st.sets(st.sampled_from(CLUSTERS), max_size=2),
        st.sets(st.sampled_from(REGIONS), max_size=2),
        st.sampled_from(["round_robin", "ring_hash", "maglev"]),
    ),
    min_size=1,
    max_size=4,
)
route_docs = st.lists(
    st.tuples(
        st.lists(st.integers(0, 3), min_size=1, max_size=2),
        st.sets(st.sampled_from(REGIONS), max_size=2),
        st.booleans(),
    ),
    min_size=1,
    max_size=3,
)
node_sets = st.lists(
    st.tuples(st.integers(0, 5), st.booleans(), st.integers(0, 3)),
    max_size=4,
    unique_by=lambda t: t[0],
)
change_steps = st.lists(
    st.lists(
        st.tuples(
            st.sampled_from(SERVICES),
            st.sampled_from(CLUSTERS),
            st.none() | node_sets,
            st.booleans(),
        ),
        min_size=1,
        max_size=3,
    ),
    min_size=1,
    max_size=6,
)


def _build_config(backends: list[Any], routes: list[Any]) -> dict[str, Any]:
    bdocs = [
        _svc_backend(
            f"b{i}",
            service,
            ref={"clusters": sorted(clusters)} if clusters else {},
            allowedRegions=sorted(regions),
            loadBalancer={"policy": policy, "maglevTableSize": 251, "ringSize": 64},
        )
        for i, (service, clusters, regions, policy) in enumerate(backends)
    ]
    rdocs = []
    for i, (refs, regions, canary) in enumerate(routes):
        names = sorted({f"b{r % len(bdocs)}" for r in refs})
        rule: dict[str, Any] = {"backendRefs": [{"name": n} for n in names]}
        if canary:
            rule["canary"] = {"backend": f"b{(i + 1) % len(bdocs)}", "percent": 10}
        rdocs.append(
            {
                "name": f"r{i}",
                "hostnames": [f"h{i}.example.com"],
                "allowedRegions": sorted(regions),
                "rules": [rule],
            }
        )
    return _doc(bdocs, rdocs)


def _record(
    service: str, cluster: str, nodes: list[tuple[int, bool, int]], local: bool
) -> ServiceRecord:
    region = REGIONS[CLUSTERS.index(cluster) % len(REGIONS)]
    return record(
        cluster,
        region,
        [
            (f"n{n}", f"10.{CLUSTERS.index(cluster)}.0.{n + 1}", f"{region}{'ab'[n % 2]}")
            for n, _, _ in nodes
        ],
        service=service,
        policy=TrafficPolicy.LOCAL if local else TrafficPolicy.CLUSTER,
        health_check_node_port=32000 if local else None,
        not_ready=[f"n{n}" for n, ready, _ in nodes if not ready],
        local={f"n{n}": count for n, _, count in nodes},
    )


def _same(incremental: RoutingTable, full: RoutingTable) -> None:
    assert incremental == full
    assert incremental.variants.keys() == full.variants.keys()
    for key, variant in full.variants.items():
        mine = incremental.variants[key]
        assert mine.describe() == variant.describe()
        assert [e.to_dict() for e in mine.endpoints] == [e.to_dict() for e in variant.endpoints]
    assert [s.describe() for s in incremental.slots] == [s.describe() for s in full.slots]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(backends=backend_docs, routes=route_docs, steps=change_steps)
def test_any_sequence_of_updates_equals_a_full_compile(
    backends: list[Any], routes: list[Any], steps: list[Any]
) -> None:
    cfg = config(_build_config(backends, routes))
    records: dict[ServiceKey, ServiceRecord] = {}
    index = index_records(records.values())
    table = compile_table(cfg, records.values(), version="0")
    for n, step in enumerate(steps, 1):
        changes: dict[ServiceKey, ServiceRecord | None] = {}
        for service, cluster, nodes, local in step:
            key = ServiceKey("shop", service, cluster)
            changes[key] = None if nodes is None else _record(service, cluster, nodes, local)
        for key, rec in changes.items():
            if rec is None:
                records.pop(key, None)
            else:
                records[key] = rec
        before = table
        touched = apply_record_changes(index, changes)
        table = update_table(table, index, touched, version=str(n))
        full = compile_table(cfg, records.values(), version=str(n))
        _same(table, full)
        kept = compile_indexed(cfg, index, version=str(n), previous=before)
        _same(kept, full)
        for name, backend in kept.backends.items():
            if table.backends[name] is before.backends[name]:
                assert backend is before.backends[name], "kept where an update shares it"
        assert table.routes is before.routes
        fed = {s for svc in touched for s in table.layout.by_service.get(svc, ())}
        fed |= {v for s in fed for v in table.layout.variants_of.get(s, ())}
        for slot, backend in enumerate(table.slots):
            if slot not in fed:
                assert backend is before.slots[slot], "untouched backends are shared"


def test_an_update_routes_to_the_new_endpoints_and_keeps_the_old_table_intact() -> None:
    cfg = config(
        _doc(
            [_svc_backend("web", "web"), _svc_backend("api", "api")],
            [
                {
                    "name": "w",
                    "hostnames": ["shop.example.com"],
                    "rules": [{"backendRefs": [{"name": "web"}]}],
                },
                {
                    "name": "a",
                    "hostnames": ["api.example.com"],
                    "rules": [{"backendRefs": [{"name": "api"}]}],
                },
            ],
        )
    )
    old_web = _record("web", "a", [(1, True, 0)], False)
    api = _record("api", "a", [(2, True, 0)], False)
    records = {old_web.key: old_web, api.key: api}
    index = index_records(records.values())
    first = compile_table(cfg, records.values(), version="1")
    new_web = _record("web", "a", [(3, True, 0)], False)
    second = update_table(
        first, index, apply_record_changes(index, {new_web.key: new_web}), version="2"
    )
    state = EndpointState()
    assert first.route_http(facts(), state).endpoint.address == "10.0.0.2"  # type: ignore[union-attr]
    assert second.route_http(facts(), state).endpoint.address == "10.0.0.4"  # type: ignore[union-attr]
    assert second.backends["api"] is first.backends["api"]
    assert second.routes is first.routes and second.rng is first.rng
    assert second.version == "2"


def test_a_change_to_a_service_no_backend_reads_shares_every_slot() -> None:
    cfg = config(
        _doc(
            [_svc_backend("web", "web")],
            [{"name": "w", "rules": [{"backendRefs": [{"name": "web"}]}]}],
        )
    )
    index = index_records(())
    first = compile_table(cfg, (), version="1")
    other = _record("img", "a", [(1, True, 0)], False)
    second = update_table(
        first, index, apply_record_changes(index, {other.key: other}), version="2"
    )
    assert second.slots is first.slots
    assert index[("shop", "img")] == [other]


def test_records_naming_the_same_nodes_and_nodeport_share_their_endpoints() -> None:
    import dataclasses

    doc = _doc(
        [_svc_backend("web", "web"), _svc_backend("api", "api"), _svc_backend("img", "img")],
        [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}, {"name": "api"}]}]}],
    )
    web = record("a", "eu-west-1", [("n1", "10.0.0.1", "z"), ("n2", "10.0.0.2", "z")])
    api = dataclasses.replace(web, service="api")  # the same nodes tuple, the same NodePort
    img = dataclasses.replace(
        web, service="img", ports=(dataclasses.replace(web.ports[0], node_port=30090),)
    )
    table = compile_table(config(doc), [web, api, img])
    b = table.backends
    assert b["web"].endpoints[0] is b["api"].endpoints[0]
    assert b["img"].endpoints[0] is not b["web"].endpoints[0]
    assert b["img"].endpoints[0].key == "a/10.0.0.1:30090"
    index = index_records([web, api, img])
    down = record(
        "a", "eu-west-1", [("n1", "10.0.0.1", "z"), ("n2", "10.0.0.2", "z")], not_ready=["n1"]
    )
    down = dataclasses.replace(down, service="api")
    updated = update_table(table, index, apply_record_changes(index, {down.key: down}), version="2")
    assert not updated.backends["api"].endpoints[0].ready
    assert updated.backends["web"].endpoints[0].ready
    _same(updated, compile_table(config(doc), [web, down, img], version="2"))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    backends=backend_docs,
    routes=route_docs,
    other_backends=backend_docs,
    other_routes=route_docs,
    step=change_steps,
)
def test_a_whole_compile_keeps_the_backends_a_new_config_does_not_change(
    backends: list[Any],
    routes: list[Any],
    other_backends: list[Any],
    other_routes: list[Any],
    step: list[Any],
) -> None:
    """Config reloads and rollout steps: an equal backend over the same record objects is
    the previous table's own object (endpoints, levels, hash tables); the table equals a
    compile from scratch either way."""
    records: dict[ServiceKey, ServiceRecord] = {}
    for service, cluster, nodes, local in step[0]:
        if nodes is not None:
            rec = _record(service, cluster, nodes, local)
            records[rec.key] = rec
    first_cfg = config(_build_config(backends, routes))
    first = compile_table(first_cfg, records.values(), version="1")
    first.warm()
    for cfg in (
        config(_build_config(backends, routes)),  # reloaded unchanged: equal, not identical
        config(_build_config(backends, other_routes)),
        config(_build_config(other_backends, other_routes)),
    ):
        again = compile_table(cfg, records.values(), version="2", previous=first)
        _same(again, compile_table(cfg, records.values(), version="2"))
        for name, backend in again.backends.items():
            old = first.backends.get(name)
            kept = old is not None and old.config == backend.config
            assert (backend is old) == kept
        for key, variant in again.variants.items():
            if key in first.variants and again.backends[key[0]] is first.backends.get(key[0]):
                assert variant is first.variants[key]


def test_a_whole_compile_rebuilds_a_backend_whose_records_changed() -> None:
    cfg = config(_doc([_svc_backend("web", "web"), _svc_backend("api", "api")], []))
    web = _record("web", "a", [(1, True, 0)], False)
    api = _record("api", "a", [(2, True, 0)], False)
    first = compile_table(cfg, [web, api], version="1")
    equal_web = _record("web", "a", [(1, True, 0)], False)  # equal, but another object
    second = compile_table(cfg, [equal_web, api], version="2", previous=first)
    assert second.backends["api"] is first.backends["api"]
    assert second.backends["web"] is not first.backends["web"]
    assert second == compile_table(cfg, [equal_web, api], version="2")
