"""derive(): the rules kube-proxy serves NodePorts by, one case per rule."""

from __future__ import annotations

import random

import pytest

from controller.derive import Derivation, Eligibility, Outcome, derive
from controller.objects import (
    EXCLUDE_LB_LABEL,
    REGION_LABEL,
    TO_BE_DELETED_TAINT,
    ZONE_LABEL,
    AddressType,
    ClusterSettings,
    EndpointInfo,
    EndpointSliceInfo,
    NodeAddress,
    NodeInfo,
    PortInfo,
    PortRange,
    ServiceInfo,
    ServiceType,
    Taint,
    frozen_map,
)
from portway.model import ServiceKey, ServiceRecord, SessionAffinity, TrafficPolicy

SETTINGS = ClusterSettings(cluster="east", region="eu-1")
EXPORT = {"portway.io/export": "true"}


def node(
    name: str,
    ip: str | None = None,
    *,
    external: str | None = None,
    ready: bool = True,
    cordoned: bool = False,
    labels: dict[str, str] | None = None,
    taints: tuple[Taint, ...] = (),
) -> NodeInfo:
    addresses = []
    if ip is not None:
        addresses.append(NodeAddress(AddressType.INTERNAL_IP, ip))
    if external is not None:
        addresses.append(NodeAddress(AddressType.EXTERNAL_IP, external))
    addresses.append(NodeAddress(AddressType.HOSTNAME, name))
    return NodeInfo(
        name,
        tuple(addresses),
        frozen_map(labels),
        ready=ready,
        unschedulable=cordoned,
        taints=taints,
    )


def service(
    name: str = "web",
    *,
    type: ServiceType = ServiceType.NODE_PORT,
    policy: TrafficPolicy = TrafficPolicy.CLUSTER,
    annotations: dict[str, str] | None = None,
    ports: tuple[PortInfo, ...] = (PortInfo("http", 80, 30080),),
    hc: int | None = None,
    export: bool = False,
    **kw: object,
) -> ServiceInfo:
    return ServiceInfo(
        "shop",
        name,
        type,
        ports,
        frozen_map(EXPORT if annotations is None else annotations),
        external_traffic_policy=policy,
        health_check_node_port=hc,
        service_export=export,
        **kw,  # type: ignore[arg-type]
    )


def pod(n: str | None, ip: str, *, ready: bool = True, terminating: bool = False) -> EndpointInfo:
    return EndpointInfo((ip,), n, ready=ready, serving=ready, terminating=terminating, target=ip)


def slices(*endpoints: EndpointInfo, svc: str = "web") -> list[EndpointSliceInfo]:
    return [EndpointSliceInfo("shop", f"{svc}-x", svc, endpoints=endpoints)]


NODES = [node("n1", "10.0.0.1"), node("n2", "10.0.0.2"), node("n3", "10.0.0.3")]


def one(d: Derivation) -> ServiceRecord:
    recs = list(d.records().values())
    assert len(recs) == 1, d
    return recs[0]


def published(d: Derivation) -> dict[str, bool]:
    return {n.name: n.ready for n in one(d).nodes}


def verdict(d: Derivation, name: str) -> Eligibility:
    (s,) = d.services
    return next(v.eligibility for v in s.nodes if v.node == name)


def test_cluster_policy_publishes_every_ready_schedulable_node() -> None:
    d = derive(SETTINGS, [service()], NODES, [], now=7.0)
    rec = one(d)
    assert rec.key == ServiceKey("shop", "web", "east")
    assert [(n.name, n.address, n.ready, n.local_endpoints) for n in rec.nodes] == [
        ("n1", "10.0.0.1", True, 0),
        ("n2", "10.0.0.2", True, 0),
        ("n3", "10.0.0.3", True, 0),
    ]
    assert rec.ports[0].node_port == 30080
    assert rec.published_at == 7.0
    assert rec.region == "eu-1"
    assert rec.health_check_node_port is None


def test_cordoned_node_is_not_published() -> None:
    nodes = [*NODES[:2], node("n3", "10.0.0.3", cordoned=True)]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert published(d) == {"n1": True, "n2": True}
    assert verdict(d, "n3") is Eligibility.UNSCHEDULABLE


def test_excluded_label_removes_node() -> None:
    nodes = [*NODES[:2], node("n3", "10.0.0.3", labels={EXCLUDE_LB_LABEL: ""})]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert published(d) == {"n1": True, "n2": True}
    assert verdict(d, "n3") is Eligibility.EXCLUDED


def test_node_being_deleted_by_autoscaler_is_not_published() -> None:
    nodes = [*NODES[:2], node("n3", "10.0.0.3", taints=(Taint(TO_BE_DELETED_TAINT),))]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert published(d) == {"n1": True, "n2": True}
    assert verdict(d, "n3") is Eligibility.DELETING


def test_not_ready_node_is_published_as_unavailable() -> None:
    """The gateway counts it in its locality level but never picks it outside panic."""
    nodes = [*NODES[:2], node("n3", "10.0.0.3", ready=False)]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert published(d) == {"n1": True, "n2": True, "n3": False}
    assert verdict(d, "n3") is Eligibility.NOT_READY


def test_node_without_an_ip_address_is_not_published() -> None:
    nodes = [*NODES[:2], node("n3")]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert published(d) == {"n1": True, "n2": True}
    assert verdict(d, "n3") is Eligibility.NO_ADDRESS


def test_local_policy_skips_nodes_without_ready_endpoints() -> None:
    eps = slices(
        pod("n1", "10.1.0.1"),
        pod("n1", "10.1.0.2"),
        pod("n2", "10.1.0.3", ready=False),
        pod("n3", "10.1.0.4", ready=False, terminating=True),
        pod(None, "10.1.0.5"),
    )
    svc = service(type=ServiceType.LOAD_BALANCER, policy=TrafficPolicy.LOCAL, hc=32001)
    d = derive(SETTINGS, [svc], NODES, eps, now=0)
    rec = one(d)
    assert [(n.name, n.local_endpoints) for n in rec.nodes] == [("n1", 2)]
    assert rec.health_check_node_port == 32001
    assert verdict(d, "n2") is Eligibility.NO_LOCAL_ENDPOINT
    assert verdict(d, "n3") is Eligibility.NO_LOCAL_ENDPOINT
    (s,) = d.services
    assert (s.endpoints_total, s.endpoints_ready) == (5, 3)


def test_local_policy_ignores_terminating_endpoints_even_when_ready() -> None:
    eps = slices(pod("n1", "10.1.0.1", terminating=True), pod("n2", "10.1.0.2"))
    d = derive(SETTINGS, [service(policy=TrafficPolicy.LOCAL)], NODES, eps, now=0)
    assert published(d) == {"n2": True}


def test_local_policy_counts_a_dual_stack_pod_once() -> None:
    v4 = EndpointInfo(("10.1.0.1",), "n1", target="uid-1")
    v6 = EndpointInfo(("fd00::1",), "n1", target="uid-1")
    eps = [
        EndpointSliceInfo("shop", "web-v4", "web", "IPv4", (v4,)),
        EndpointSliceInfo("shop", "web-v6", "web", "IPv6", (v6,)),
        EndpointSliceInfo("shop", "web-fqdn", "web", "FQDN", (pod("n2", "db.example"),)),
    ]
    d = derive(SETTINGS, [service(policy=TrafficPolicy.LOCAL)], NODES, eps, now=0)
    assert [(n.name, n.local_endpoints) for n in one(d).nodes] == [("n1", 1)]


def test_local_policy_only_counts_slices_of_its_own_service_and_namespace() -> None:
    eps = [
        *slices(pod("n1", "10.1.0.1"), svc="other"),
        EndpointSliceInfo("elsewhere", "web-x", "web", endpoints=(pod("n2", "10.1.0.2"),)),
        *slices(pod("n3", "10.1.0.3")),
    ]
    d = derive(SETTINGS, [service(policy=TrafficPolicy.LOCAL)], NODES, eps, now=0)
    assert published(d) == {"n3": True}


def test_local_policy_not_ready_node_with_endpoints_is_published_unavailable() -> None:
    nodes = [node("n1", "10.0.0.1", ready=False), node("n2", "10.0.0.2")]
    eps = slices(pod("n1", "10.1.0.1"), pod("n2", "10.1.0.2"))
    d = derive(SETTINGS, [service(policy=TrafficPolicy.LOCAL)], nodes, eps, now=0)
    assert [(n.name, n.ready, n.local_endpoints) for n in one(d).nodes] == [
        ("n1", False, 1),
        ("n2", True, 1),
    ]


def test_local_policy_with_no_endpoints_publishes_an_empty_record() -> None:
    d = derive(SETTINGS, [service(policy=TrafficPolicy.LOCAL)], NODES, [], now=0)
    assert one(d).nodes == ()


@pytest.mark.parametrize(
    ("preference", "expected"),
    [
        ((AddressType.EXTERNAL_IP, AddressType.INTERNAL_IP), ["203.0.113.1", "10.0.0.2"]),
        ((AddressType.INTERNAL_IP, AddressType.EXTERNAL_IP), ["10.0.0.1", "10.0.0.2"]),
        ((AddressType.EXTERNAL_IP,), ["203.0.113.1"]),
    ],
)
def test_address_preference_picks_first_present_type(
    preference: tuple[AddressType, ...], expected: list[str]
) -> None:
    settings = ClusterSettings(cluster="east", address_preference=preference)
    nodes = [node("n1", "10.0.0.1", external="203.0.113.1"), node("n2", "10.0.0.2")]
    d = derive(settings, [service()], nodes, [], now=0)
    assert [n.address for n in one(d).nodes] == expected


def test_hostname_addresses_never_published() -> None:
    settings = ClusterSettings(
        cluster="east", address_preference=(AddressType.HOSTNAME, AddressType.INTERNAL_IP)
    )
    d = derive(settings, [service()], [node("n1", "10.0.0.1")], [], now=0)
    assert [n.address for n in one(d).nodes] == ["10.0.0.1"]


def test_ipv6_node_address_published() -> None:
    d = derive(SETTINGS, [service()], [node("n1", "fd00::10")], [], now=0)
    assert [n.address for n in one(d).nodes] == ["fd00::10"]


def test_zones_and_region_from_topology_labels() -> None:
    settings = ClusterSettings(cluster="east")
    nodes = [
        node("n1", "10.0.0.1", labels={ZONE_LABEL: "b", REGION_LABEL: "r2"}),
        node("n2", "10.0.0.2", labels={ZONE_LABEL: "a", REGION_LABEL: "r1"}),
        node("n3", "10.0.0.3", labels={ZONE_LABEL: "a", REGION_LABEL: "r1"}),
        node("n4", "10.0.0.4", cordoned=True, labels={ZONE_LABEL: "c", REGION_LABEL: "r9"}),
    ]
    rec = one(derive(settings, [service()], nodes, [], now=0))
    assert rec.zones == ("a", "b")
    assert [n.zone for n in rec.nodes] == ["b", "a", "a"]
    assert rec.region == "r1"
    assert one(derive(SETTINGS, [service()], nodes, [], now=0)).region == "eu-1"


def test_session_affinity_client_ip_and_timeout_published() -> None:
    svc = service(session_affinity=SessionAffinity.CLIENT_IP, session_affinity_timeout_s=600)
    rec = one(derive(SETTINGS, [svc], NODES, [], now=0))
    assert rec.session_affinity is SessionAffinity.CLIENT_IP
    assert rec.session_affinity_timeout_s == 600


@pytest.mark.parametrize("kind", [ServiceType.CLUSTER_IP, ServiceType.EXTERNAL_NAME])
def test_type_without_node_ports_is_not_exported(kind: ServiceType) -> None:
    d = derive(SETTINGS, [service(type=kind)], NODES, [], now=0)
    assert d.records() == {}
    (s,) = d.services
    assert s.outcome is Outcome.UNSUPPORTED_TYPE
    assert kind.value in s.reason


@pytest.mark.parametrize(
    ("annotations", "export", "exported"),
    [
        ({"portway.io/export": "true"}, False, True),
        ({"portway.io/export": "True"}, False, True),
        ({"portway.io/export": "false"}, False, False),
        ({"portway.io/export": "yes"}, False, False),
        ({}, False, False),
        ({}, True, True),
    ],
)
def test_export_by_annotation_or_service_export(
    annotations: dict[str, str], export: bool, exported: bool
) -> None:
    d = derive(SETTINGS, [service(annotations=annotations, export=export)], NODES, [], now=0)
    assert bool(d.records()) is exported
    (s,) = d.services
    assert (s.outcome is Outcome.PUBLISHED) is exported
    if not exported:
        assert s.outcome is Outcome.NOT_EXPORTED
        assert s.nodes == ()


def test_unexport_withdraws_the_record() -> None:
    before = derive(SETTINGS, [service()], NODES, [], now=0)
    after = derive(SETTINGS, [service(annotations={})], NODES, [], now=1)
    assert set(before.records()) == {ServiceKey("shop", "web", "east")}
    assert after.records() == {}


def test_port_changes_follow_the_service() -> None:
    v1 = service(ports=(PortInfo("http", 80, 30080),))
    v2 = service(ports=(PortInfo("http", 8080, 30090), PortInfo("metrics", 9090, 30091)))
    r1 = one(derive(SETTINGS, [v1], NODES, [], now=0))
    r2 = one(derive(SETTINGS, [v2], NODES, [], now=0))
    assert [(p.name, p.port, p.node_port) for p in r1.ports] == [("http", 80, 30080)]
    assert [(p.name, p.port, p.node_port) for p in r2.ports] == [
        ("http", 8080, 30090),
        ("metrics", 9090, 30091),
    ]


def test_out_of_range_port_is_left_out_and_reported() -> None:
    settings = ClusterSettings(cluster="east", node_port_range=PortRange(30000, 30999))
    svc = service(ports=(PortInfo("http", 80, 30080), PortInfo("admin", 81, 31500)))
    d = derive(settings, [svc], NODES, [], now=0)
    assert [p.name for p in one(d).ports] == ["http"]
    assert one(d).node_port_range == (30000, 30999)
    (v,) = d.violations()
    assert (v.service, v.port, v.node_port) == ("shop/web", "admin", 31500)


def test_service_with_no_valid_port_is_not_published() -> None:
    svc = service(ports=(PortInfo("http", 80, None),))
    d = derive(SETTINGS, [svc], NODES, [], now=0)
    assert d.records() == {}
    assert d.services[0].outcome is Outcome.NO_VALID_PORTS
    assert len(d.violations()) == 1


def test_health_check_port_outside_range_is_not_published() -> None:
    svc = service(policy=TrafficPolicy.LOCAL, hc=8080)
    d = derive(SETTINGS, [svc], NODES, slices(pod("n1", "10.1.0.1")), now=0)
    assert one(d).health_check_node_port is None
    assert [v.port for v in d.violations()] == ["healthCheckNodePort"]


def test_health_check_port_is_published_only_for_local() -> None:
    rec = one(derive(SETTINGS, [service(hc=32001)], NODES, [], now=0))
    assert rec.health_check_node_port is None


def test_duplicate_node_names_give_an_invalid_outcome_not_an_exception() -> None:
    nodes = [node("n1", "10.0.0.1"), node("n1", "10.0.0.2")]
    d = derive(SETTINGS, [service()], nodes, [], now=0)
    assert d.records() == {}
    assert d.services[0].outcome is Outcome.INVALID
    assert "duplicate node name" in d.services[0].reason


def test_every_node_gets_a_verdict_with_a_reason() -> None:
    nodes = [*NODES, node("n4", "10.0.0.4", cordoned=True), node("n5")]
    (s,) = derive(SETTINGS, [service()], nodes, [], now=0).services
    assert [v.node for v in s.nodes] == ["n1", "n2", "n3", "n4", "n5"]
    assert all(v.reason for v in s.nodes)


def test_derivation_is_deterministic_whatever_the_input_order() -> None:
    nodes = [node(f"n{i}", f"10.0.0.{i}", labels={ZONE_LABEL: f"z{i % 3}"}) for i in range(20)]
    eps = slices(*(pod(f"n{i % 7}", f"10.1.0.{i}") for i in range(30)))
    svcs = [service(f"s{i}", policy=TrafficPolicy.LOCAL) for i in range(5)]
    first = derive(SETTINGS, svcs, nodes, eps, now=1)
    rng = random.Random(4)
    for _ in range(5):
        rng.shuffle(nodes)
        rng.shuffle(svcs)
        assert derive(SETTINGS, svcs, nodes, eps, now=1) == first


def test_settings_refuse_tier_outside_cluster_range() -> None:
    with pytest.raises(ValueError, match="outside the NodePort range"):
        ClusterSettings(cluster="east", tier_ranges={"web": PortRange(29000, 30100)})
    with pytest.raises(ValueError, match="cluster name"):
        ClusterSettings(cluster="a/b")
