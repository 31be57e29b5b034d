"""derive() against an independent statement of kube-proxy's NodePort rules.

`reference_serving` below is written from the Kubernetes documentation, not
from controller/derive.py: a NodePort Service of policy Cluster is served by
every Ready node that is schedulable, not excluded from external load
balancers, not being deleted by the autoscaler and reachable at an IP of a
preferred address type; under policy Local only those of them hosting a pod
of the Service whose endpoint is ready and not terminating, counted per pod.
Hypothesis builds random clusters and checks derive() publishes exactly that
serving set as `ready=True` (NotReady nodes that would otherwise serve appear
as `ready=False`), with the right counts, addresses, zones and ports.
"""

from __future__ import annotations

import ipaddress
import random

from hypothesis import given
from hypothesis import strategies as st

from controller.derive import derive
from controller.objects import (
    AddressType,
    ClusterSettings,
    EndpointInfo,
    EndpointSliceInfo,
    NodeAddress,
    NodeInfo,
    PortInfo,
    ServiceInfo,
    ServiceType,
    Taint,
    frozen_map,
)
from portway.model import TrafficPolicy

ZONES = ["", "a", "b", "c"]
NODE_NAMES = [f"node-{i}" for i in range(8)]


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
        return True
    except ValueError:
        return False


def reference_address(preference: tuple[AddressType, ...], n: NodeInfo) -> str | None:
    for kind in preference:
        ips = [a.address for a in n.addresses if a.type == kind and _is_ip(a.address)]
        if ips:
            return ips[0]
    return None


def reference_candidate(preference: tuple[AddressType, ...], n: NodeInfo) -> bool:
    """Would this node serve any NodePort Service if it were Ready?"""
    if n.unschedulable:
        return False
    if "node.kubernetes.io/exclude-from-external-load-balancers" in n.labels:
        return False
    if "ToBeDeletedByClusterAutoscaler" in [t.key for t in n.taints]:
        return False
    return reference_address(preference, n) is not None


def reference_local_pods(svc: ServiceInfo, slices: list[EndpointSliceInfo]) -> dict[str, int]:
    """Per node, the pods of the Service with a ready, non-terminating endpoint."""
    pods: dict[str, set[str]] = {}
    best: dict[str, tuple[str | None, bool]] = {}
    for s in slices:
        if s.namespace != svc.namespace or s.service_name != svc.name:
            continue
        if s.address_type not in ("IPv4", "IPv6"):
            continue
        for e in s.endpoints:
            who = e.target or e.addresses[0]
            good = e.ready and not e.terminating
            if who not in best or (good and not best[who][1]):
                best[who] = (e.node_name, good)
    for who, (node_name, good) in best.items():
        if good and node_name:
            pods.setdefault(node_name, set()).add(who)
    return {k: len(v) for k, v in pods.items()}


def reference_serving(
    settings: ClusterSettings,
    svc: ServiceInfo,
    nodes: list[NodeInfo],
    slices: list[EndpointSliceInfo],
) -> tuple[dict[str, int], set[str]]:
    """(serving node -> local pod count (0 under Cluster), published-but-NotReady nodes)."""
    local = reference_local_pods(svc, slices)
    serving: dict[str, int] = {}
    unready: set[str] = set()
    for n in nodes:
        if not reference_candidate(settings.address_preference, n):
            continue
        if svc.external_traffic_policy == TrafficPolicy.LOCAL:
            if local.get(n.name, 0) < 1:
                continue
            count = local[n.name]
        else:
            count = 0
        if n.ready:
            serving[n.name] = count
        else:
            unready.add(n.name)
    return serving, unready


addresses = st.lists(
    st.tuples(
        st.sampled_from(list(AddressType)),
        st.sampled_from(["10.0.0.{}", "203.0.113.{}", "fd00::{}", "host-{}"]),
    ),
    max_size=3,
)


@st.composite
def node_infos(draw: st.DrawFn) -> list[NodeInfo]:
    names = draw(st.lists(st.sampled_from(NODE_NAMES), unique=True, max_size=8))
    out = []
    for i, name in enumerate(names):
        labels = {}
        if zone := draw(st.sampled_from(ZONES)):
            labels["topology.kubernetes.io/zone"] = zone
        if draw(st.integers(0, 5)) == 0:
            labels["node.kubernetes.io/exclude-from-external-load-balancers"] = ""
        taints = (Taint("ToBeDeletedByClusterAutoscaler"),) if draw(st.integers(0, 6)) == 0 else ()
        out.append(
            NodeInfo(
                name,
                tuple(NodeAddress(k, f.format(i + 1)) for k, f in draw(addresses)),
                frozen_map(labels),
                ready=draw(st.integers(0, 3)) > 0,
                unschedulable=draw(st.integers(0, 4)) == 0,
                taints=taints,
            )
        )
    return out


@st.composite
def endpoint_slices(draw: st.DrawFn) -> list[EndpointSliceInfo]:
    out = []
    for j in range(draw(st.integers(0, 3))):
        eps = []
        for k in range(draw(st.integers(0, 6))):
            ready = draw(st.booleans())
            # A pod (targetRef) lives on one node; a bare address may claim any.
            target = draw(st.sampled_from(["", f"pod-{k}"]))
            where = NODE_NAMES[k] if target else draw(st.sampled_from([None, *NODE_NAMES]))
            eps.append(
                EndpointInfo(
                    (f"10.1.{j}.{k}",),
                    where,
                    ready=ready,
                    serving=ready,
                    terminating=draw(st.booleans()),
                    target=target,
                )
            )
        out.append(
            EndpointSliceInfo(
                draw(st.sampled_from(["shop", "other"])),
                f"s{j}",
                draw(st.sampled_from(["web", "api"])),
                draw(st.sampled_from(["IPv4", "IPv6", "FQDN"])),
                tuple(eps),
            )
        )
    return out


@st.composite
def services(draw: st.DrawFn) -> ServiceInfo:
    ports = tuple(
        PortInfo(f"p{i}", 80 + i, draw(st.sampled_from([None, 30080 + i, 40000])))
        for i in range(draw(st.integers(1, 3)))
    )
    return ServiceInfo(
        "shop",
        "web",
        draw(st.sampled_from(list(ServiceType))),
        ports,
        frozen_map({"portway.io/export": draw(st.sampled_from(["true", "false"]))}),
        external_traffic_policy=draw(st.sampled_from(list(TrafficPolicy))),
        health_check_node_port=draw(st.sampled_from([None, 32000, 5000])),
        service_export=draw(st.booleans()),
    )


preferences = st.lists(st.sampled_from(list(AddressType)), min_size=1, max_size=3, unique=True)


@given(services(), node_infos(), endpoint_slices(), preferences)
def test_published_nodes_are_exactly_kube_proxys_serving_set(
    svc: ServiceInfo,
    nodes: list[NodeInfo],
    slices: list[EndpointSliceInfo],
    preference: list[AddressType],
) -> None:
    settings = ClusterSettings(
        cluster="c",
        address_preference=tuple(preference),
    )
    d = derive(settings, [svc], nodes, slices, now=3.0)
    records = list(d.records().values())
    exported = svc.service_export or svc.annotations["portway.io/export"] == "true"
    typed = svc.type in (ServiceType.NODE_PORT, ServiceType.LOAD_BALANCER)
    valid_ports = [p for p in svc.ports if p.node_port is not None and p.node_port <= 32767]
    if not (exported and typed and valid_ports):
        assert records == []
        return
    (rec,) = records
    serving, unready = reference_serving(settings, svc, nodes, slices)
    assert {n.name: n.local_endpoints for n in rec.nodes if n.ready} == serving
    assert {n.name for n in rec.nodes if not n.ready} == unready
    by_name = {n.name: n for n in nodes}
    for n in rec.nodes:
        assert n.address == reference_address(settings.address_preference, by_name[n.name])
        assert n.zone == by_name[n.name].labels.get("topology.kubernetes.io/zone", "")
    assert rec.zones == tuple(sorted({n.zone for n in rec.nodes if n.zone}))
    assert [p.name for p in rec.ports] == [p.name for p in valid_ports]
    local = svc.external_traffic_policy == TrafficPolicy.LOCAL
    in_range = svc.health_check_node_port == 32000
    assert rec.health_check_node_port == (32000 if local and in_range else None)
    (s,) = d.services
    assert {v.node for v in s.nodes} == set(by_name)
    assert {v.node for v in s.nodes if v.eligibility.published} == {n.name for n in rec.nodes}


@given(services(), node_infos(), endpoint_slices(), st.randoms())
def test_derivation_ignores_input_order(
    svc: ServiceInfo,
    nodes: list[NodeInfo],
    slices: list[EndpointSliceInfo],
    rng: random.Random,
) -> None:
    settings = ClusterSettings(cluster="c")
    first = derive(settings, [svc], nodes, slices, now=1.0)
    rng.shuffle(nodes)
    rng.shuffle(slices)
    assert derive(settings, [svc], nodes, slices, now=1.0) == first
