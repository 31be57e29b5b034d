"""derive(): which Services are published and what their records say, one case per rule."""

from __future__ import annotations

import random

import pytest
from derive_builders import NODES, SETTINGS, node, one, pod, service, slices

from controller.derive import Outcome, derive
from controller.objects import (
    ZONE_LABEL,
    ClusterSettings,
    PortInfo,
    PortRange,
    ServiceType,
)
from portway.model import ServiceKey, SessionAffinity, TrafficPolicy


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
