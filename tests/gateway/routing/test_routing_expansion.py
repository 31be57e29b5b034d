"""Registry records expanded into endpoints: nodes, NodePorts, readiness, Local policy, clusters."""

from __future__ import annotations

from routing_builders import EAST, WEST, record, service_doc, table

from portway.model import TrafficPolicy


def test_registry_backend_expands_nodes_with_node_port_and_readiness() -> None:
    rec = record(
        "east", "us-east-1", [("n1", "10.0.0.1", "a"), ("n2", "10.0.0.2", "b")], not_ready=["n2"]
    )
    t = table(service_doc(), [rec])
    ep, down = t.backends["web"].endpoints
    assert (ep.address, ep.port, ep.cluster, ep.region, ep.zone, ep.node, ep.ready) == (
        "10.0.0.1",
        30080,
        "east",
        "us-east-1",
        "a",
        "n1",
        True,
    )
    assert ep.key == "east/10.0.0.1:30080"
    assert (down.node, down.ready) == ("n2", False)


def test_local_policy_skips_nodes_without_ready_endpoints() -> None:
    rec = record(
        "east",
        "us-east-1",
        [("n1", "10.0.0.1", "a"), ("n2", "10.0.0.2", "a"), ("n3", "10.0.0.3", "a")],
        policy=TrafficPolicy.LOCAL,
        health_check_node_port=32000,
        local={"n1": 2, "n3": 0},
    )
    t = table(service_doc(), [rec])
    (ep,) = t.backends["web"].endpoints
    assert ep.node == "n1" and ep.health_check_port == 32000 and ep.weight == 2


def test_clusters_filter_and_port_by_number() -> None:
    doc = service_doc(
        {"service": {"namespace": "shop", "name": "web", "port": 80, "clusters": ["west"]}}
    )
    t = table(doc, [EAST, WEST])
    assert {e.cluster for e in t.backends["web"].endpoints} == {"west"}
