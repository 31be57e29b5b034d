"""doctor's verdicts from plain facts: one step per question, derive() decides the nodes."""

from __future__ import annotations

from dataclasses import replace

from derive_builders import EXPORT, service

from controller.derive import ClusterView
from controller.doctor import Status, Step, judge
from controller.doctor_facts import (
    DnsProbe,
    Facts,
    GatewayEndpoint,
    GatewayFacts,
    HealthzProbe,
    RegistryFacts,
    TcpProbe,
)
from controller.network_policy import PolicyEffect, PolicyFinding
from controller.objects import (
    AddressType,
    ClusterSettings,
    EndpointInfo,
    EndpointSliceInfo,
    NodeAddress,
    NodeInfo,
    ServiceInfo,
    ServiceType,
)
from portway.model import Node, TrafficPolicy

SETTINGS = ClusterSettings(cluster="east")
NODES = (
    NodeInfo("n1", (NodeAddress(AddressType.INTERNAL_IP, "10.0.0.1"),)),
    NodeInfo("n2", (NodeAddress(AddressType.INTERNAL_IP, "10.0.0.2"),)),
    NodeInfo("n3", (NodeAddress(AddressType.INTERNAL_IP, "10.0.0.3"),), unschedulable=True),
)
SLICES = (
    EndpointSliceInfo(
        "shop",
        "web-a",
        "web",
        endpoints=(
            EndpointInfo(("10.1.0.1",), "n1"),
            EndpointInfo(("10.1.0.2",), "n2"),
            EndpointInfo(("10.1.0.3",), "n2", ready=False),
        ),
    ),
)


def svc(policy: TrafficPolicy = TrafficPolicy.CLUSTER, export: bool = True) -> ServiceInfo:
    return service(
        type=ServiceType.LOAD_BALANCER,
        policy=policy,
        annotations=EXPORT if export else {},
        hc=32000 if policy is TrafficPolicy.LOCAL else None,
    )


def facts(service: ServiceInfo | None = None, **kw: object) -> Facts:
    service = service or svc()
    d = ClusterView(SETTINGS, NODES, SLICES).derive_service(service, 100.0, verdicts_always=True)
    base = Facts(
        "shop",
        "web",
        "east",
        now=130.0,
        derivation=d,
        policies=(),
        tcp=(TcpProbe("n1", "10.0.0.1", 30080), TcpProbe("n2", "10.0.0.2", 30080)),
        dns=(DnsProbe("n1", ("10.0.0.1",)), DnsProbe("n2", ("10.0.0.2",))),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def step(f: Facts, name: str) -> Step:
    return next(s for s in judge(f).steps if s.name == name)


def test_steps_follow_the_troubleshooting_order() -> None:
    assert [s.name for s in judge(facts()).steps] == [
        "service",
        "endpoints",
        "nodes",
        "nodeports",
        "health-check",
        "network-policies",
        "dns",
        "registry",
        "gateway",
    ]


def test_healthy_cluster_service_passes() -> None:
    report = judge(facts())
    assert report.exit_code == 0
    assert step(facts(), "service").status is Status.OK
    assert step(facts(), "endpoints").status is Status.WARN  # one pod of three not ready
    assert "2 of 3" in step(facts(), "endpoints").summary


def test_node_step_reports_derives_verdicts() -> None:
    s = step(facts(), "nodes")
    assert s.status is Status.WARN
    assert s.summary == "2 of 3 node(s) eligible"
    assert any(d.startswith("n3 (10.0.0.3): unschedulable: cordoned") for d in s.details)


def test_missing_service_fails() -> None:
    f = Facts("shop", "web", "east", now=0.0)
    report = judge(f)
    assert report.exit_code == 1
    assert step(f, "service").status is Status.FAIL
    assert step(f, "nodes").status is Status.SKIP


def test_apiserver_unreachable_fails() -> None:
    f = Facts("shop", "web", "east", now=0.0, kube_error="connection refused")
    assert "connection refused" in step(f, "service").summary


def test_unexported_service_fails_but_nodes_still_judged() -> None:
    f = facts(svc(export=False), tcp=())
    assert step(f, "service").status is Status.FAIL
    assert "not exported" in step(f, "service").summary
    assert step(f, "nodes").summary == "2 of 3 node(s) eligible"
    assert judge(f).exit_code == 1


def test_all_nodeports_unreachable_fails_some_warns() -> None:
    one_down = (TcpProbe("n1", "10.0.0.1", 30080), TcpProbe("n2", "10.0.0.2", 30080, "refused"))
    all_down = tuple(replace(p, error="refused") for p in one_down)
    assert step(facts(tcp=one_down), "nodeports").status is Status.WARN
    assert step(facts(tcp=all_down), "nodeports").status is Status.FAIL


def test_local_health_check_compares_with_endpoint_slices() -> None:
    local = svc(TrafficPolicy.LOCAL)
    good = (
        HealthzProbe("n1", "10.0.0.1", 32000, 200, 1),
        HealthzProbe("n2", "10.0.0.2", 32000, 200, 1),
    )
    assert step(facts(local, healthz=good), "health-check").status is Status.OK
    wrong = (good[0], HealthzProbe("n2", "10.0.0.2", 32000, 503, 0))
    s = step(facts(local, healthz=wrong), "health-check")
    assert s.status is Status.WARN
    assert "HTTP 503, localEndpoints 0 (EndpointSlices say 1)" in s.details[1]
    assert step(facts(), "health-check").status is Status.SKIP


def test_blocking_network_policy_fails() -> None:
    block = PolicyFinding("shop/only-pods", PolicyEffect.BLOCKS_EXTERNAL, "pods only")
    allow = PolicyFinding("shop/open", PolicyEffect.ALLOWS_ANY_SOURCE, "from anywhere")
    assert step(facts(policies=(block,)), "network-policies").status is Status.FAIL
    assert step(facts(policies=(block, allow)), "network-policies").status is Status.OK
    assert step(facts(policies=None, policy_note="x"), "network-policies").status is Status.SKIP


def test_unresolvable_node_name_warns() -> None:
    dns = (DnsProbe("n1", ("10.0.0.1",)), DnsProbe("n2", error="Name or service not known"))
    s = step(facts(dns=dns), "dns")
    assert s.status is Status.WARN
    assert judge(facts(dns=dns)).exit_code == 0


def test_registry_record_matching_and_its_age() -> None:
    f = facts()
    assert f.record is not None
    published = replace(f.record, published_at=100.0)
    s = step(replace(f, registry=RegistryFacts("files", published)), "registry")
    assert s.status is Status.OK
    assert "published 30 s ago" in s.summary


def test_registry_record_differing_warns_and_missing_fails() -> None:
    f = facts()
    assert f.record is not None
    stale = replace(f.record, nodes=(Node("n9", "10.0.0.9"),))
    s = step(replace(f, registry=RegistryFacts("files", stale)), "registry")
    assert s.status is Status.WARN
    assert any(d.startswith("node n9: published") for d in s.details)
    assert step(replace(f, registry=RegistryFacts("files")), "registry").status is Status.FAIL
    unreachable = RegistryFacts("etcd", error="connection refused")
    assert step(replace(f, registry=unreachable), "registry").status is Status.FAIL


def test_record_of_unexported_service_is_a_failure() -> None:
    f = facts()
    assert f.record is not None
    g = facts(svc(export=False), registry=RegistryFacts("files", f.record))
    assert step(g, "registry").status is Status.FAIL


def test_gateway_endpoints_compared_with_the_record() -> None:
    same = tuple(GatewayEndpoint("shop", "east", a, 30080, True) for a in ("10.0.0.1", "10.0.0.2"))
    f = facts(gateway=GatewayFacts("http://gw", same))
    assert step(f, "gateway").status is Status.OK
    short = facts(gateway=GatewayFacts("http://gw", same[:1]))
    assert step(short, "gateway").status is Status.WARN
    other = facts(gateway=GatewayFacts("http://gw", (replace(same[0], cluster="west"),)))
    assert step(other, "gateway").status is Status.FAIL
    assert step(facts(), "gateway").status is Status.SKIP


def test_report_json_shape() -> None:
    out = judge(facts()).to_dict()
    assert out["service"] == "shop/web" and out["ok"] is True
    assert {"name", "status", "summary", "details"} <= set(out["steps"][0])
