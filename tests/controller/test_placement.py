"""Placement: which nodes a Service's traffic may land on, the rules kube-proxy serves
NodePorts by, one case per rule (through `derive`, as the controller applies them)."""

from __future__ import annotations

import pytest
from derive_builders import NODES, SETTINGS, node, one, pod, published, service, slices, verdict

from controller.derive import derive
from controller.objects import (
    EXCLUDE_LB_LABEL,
    REGION_LABEL,
    TO_BE_DELETED_TAINT,
    ZONE_LABEL,
    AddressType,
    ClusterSettings,
    EndpointInfo,
    EndpointSliceInfo,
    ServiceType,
    Taint,
)
from controller.placement import Eligibility
from portway.model import TrafficPolicy


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


def test_every_node_gets_a_verdict_with_a_reason() -> None:
    nodes = [*NODES, node("n4", "10.0.0.4", cordoned=True), node("n5")]
    (s,) = derive(SETTINGS, [service()], nodes, [], now=0).services
    assert [v.node for v in s.nodes] == ["n1", "n2", "n3", "n4", "n5"]
    assert all(v.reason for v in s.nodes)
