"""kube_objects: typed client models and plain manifests read the same, with API defaults."""

from __future__ import annotations

import pytest
from kubernetes import client as k

from controller.kube_objects import ObjectError, endpoint_slice_info, node_info, service_info
from controller.objects import AddressType, NodeAddress, PortInfo, ServiceType, Taint
from portway.model import Protocol, SessionAffinity, TrafficPolicy

SERVICE = {
    "apiVersion": "v1",
    "kind": "Service",
    "metadata": {
        "namespace": "shop",
        "name": "web",
        "annotations": {"portway.io/export": "true", "portway.io/tier": "web"},
        "labels": {"app": "web"},
    },
    "spec": {
        "type": "LoadBalancer",
        "ports": [
            {"name": "http", "port": 80, "nodePort": 30210, "protocol": "TCP"},
            {"name": "dns", "port": 53, "nodePort": 30253, "protocol": "UDP"},
        ],
        "externalTrafficPolicy": "Local",
        "healthCheckNodePort": 32100,
        "sessionAffinity": "ClientIP",
        "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 600}},
    },
}


def test_service_manifest_read() -> None:
    s = service_info(SERVICE, service_export=True)
    assert (s.namespace, s.name, s.type) == ("shop", "web", ServiceType.LOAD_BALANCER)
    assert s.ports == (
        PortInfo("http", 80, 30210, Protocol.TCP),
        PortInfo("dns", 53, 30253, Protocol.UDP),
    )
    assert s.external_traffic_policy is TrafficPolicy.LOCAL
    assert s.health_check_node_port == 32100
    assert (s.session_affinity, s.session_affinity_timeout_s) == (SessionAffinity.CLIENT_IP, 600)
    assert s.annotations["portway.io/tier"] == "web"
    assert s.labels == {"app": "web"}
    assert s.service_export


def test_typed_service_reads_like_its_manifest() -> None:
    typed = k.V1Service(
        metadata=k.V1ObjectMeta(
            namespace="shop",
            name="web",
            annotations={"portway.io/export": "true", "portway.io/tier": "web"},
            labels={"app": "web"},
        ),
        spec=k.V1ServiceSpec(
            type="LoadBalancer",
            ports=[
                k.V1ServicePort(name="http", port=80, node_port=30210, protocol="TCP"),
                k.V1ServicePort(name="dns", port=53, node_port=30253, protocol="UDP"),
            ],
            external_traffic_policy="Local",
            health_check_node_port=32100,
            session_affinity="ClientIP",
            session_affinity_config=k.V1SessionAffinityConfig(
                client_ip=k.V1ClientIPConfig(timeout_seconds=600)
            ),
        ),
    )
    assert service_info(typed, service_export=True) == service_info(SERVICE, service_export=True)


def test_service_defaults_follow_the_api() -> None:
    s = service_info({"metadata": {"name": "x"}, "spec": {"ports": [{"port": 80}]}})
    assert s.namespace == "default"
    assert s.type is ServiceType.CLUSTER_IP
    assert s.ports == (PortInfo("", 80, None),)
    assert s.external_traffic_policy is TrafficPolicy.CLUSTER
    assert s.session_affinity is SessionAffinity.NONE
    assert s.session_affinity_timeout_s == 10800
    assert s.health_check_node_port is None
    assert not s.service_export


def test_old_traffic_policy_spelling_accepted() -> None:
    s = service_info({"metadata": {"name": "x"}, "spec": {"externalTrafficPolicy": "OnlyLocal"}})
    assert s.external_traffic_policy is TrafficPolicy.LOCAL


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"type": "Weird"}, "spec.type"),
        ({"ports": [{"port": "eighty"}]}, "spec.ports[0].port"),
        ({"ports": [{"port": 80, "nodePort": True}]}, "spec.ports[0].nodePort"),
        ({"externalTrafficPolicy": "Sometimes"}, "spec.externalTrafficPolicy"),
    ],
)
def test_unusable_service_field_named(spec: dict[str, object], path: str) -> None:
    with pytest.raises(ObjectError) as err:
        service_info({"metadata": {"namespace": "shop", "name": "bad"}, "spec": spec})
    assert err.value.path == path
    assert str(err.value).startswith(f"Service shop/bad: {path}: ")


NODE = {
    "metadata": {
        "name": "n1",
        "labels": {"topology.kubernetes.io/zone": "eu-1a"},
    },
    "spec": {
        "unschedulable": True,
        "taints": [{"key": "ToBeDeletedByClusterAutoscaler", "effect": "NoSchedule"}],
    },
    "status": {
        "addresses": [
            {"type": "InternalIP", "address": "10.0.0.1"},
            {"type": "Hostname", "address": "n1"},
            {"type": "SomethingNew", "address": "x"},
        ],
        "conditions": [
            {"type": "MemoryPressure", "status": "False"},
            {"type": "Ready", "status": "True"},
        ],
    },
}


def test_node_manifest_read() -> None:
    n = node_info(NODE)
    assert n.name == "n1"
    assert n.addresses == (
        NodeAddress(AddressType.INTERNAL_IP, "10.0.0.1"),
        NodeAddress(AddressType.HOSTNAME, "n1"),
    )
    assert n.ready and n.unschedulable
    assert n.zone == "eu-1a"
    assert n.taints == (Taint("ToBeDeletedByClusterAutoscaler", "NoSchedule"),)


@pytest.mark.parametrize(
    "conditions",
    [[], [{"type": "Ready", "status": "False"}], [{"type": "Ready", "status": "Unknown"}]],
)
def test_node_without_ready_true_is_not_ready(conditions: list[dict[str, str]]) -> None:
    assert not node_info({"metadata": {"name": "n"}, "status": {"conditions": conditions}}).ready


def test_typed_node_reads_like_its_manifest() -> None:
    typed = k.V1Node(
        metadata=k.V1ObjectMeta(name="n1", labels={"topology.kubernetes.io/zone": "eu-1a"}),
        spec=k.V1NodeSpec(
            unschedulable=True,
            taints=[k.V1Taint(key="ToBeDeletedByClusterAutoscaler", effect="NoSchedule")],
        ),
        status=k.V1NodeStatus(
            addresses=[
                k.V1NodeAddress(type="InternalIP", address="10.0.0.1"),
                k.V1NodeAddress(type="Hostname", address="n1"),
            ],
            conditions=[k.V1NodeCondition(type="Ready", status="True")],
        ),
    )
    assert node_info(typed) == node_info(NODE)


SLICE = {
    "metadata": {
        "namespace": "shop",
        "name": "web-abc",
        "labels": {"kubernetes.io/service-name": "web"},
    },
    "addressType": "IPv4",
    "endpoints": [
        {
            "addresses": ["10.1.0.1"],
            "nodeName": "n1",
            "targetRef": {"kind": "Pod", "name": "web-1", "uid": "u1"},
        },
        {
            "addresses": ["10.1.0.2"],
            "nodeName": "n2",
            "conditions": {"ready": False, "serving": True, "terminating": True},
        },
        {"addresses": ["10.1.0.3"], "conditions": {"ready": False}},
    ],
}


def test_endpoint_slice_conditions_take_api_defaults() -> None:
    s = endpoint_slice_info(SLICE)
    assert (s.namespace, s.name, s.service_name, s.address_type) == (
        "shop",
        "web-abc",
        "web",
        "IPv4",
    )
    a, b, c = s.endpoints
    assert (a.ready, a.serving, a.terminating, a.node_name, a.identity) == (
        True,
        True,
        False,
        "n1",
        "u1",
    )
    assert (b.ready, b.serving, b.terminating) == (False, True, True)
    assert (c.ready, c.serving, c.node_name, c.identity) == (False, False, None, "10.1.0.3")


def test_typed_endpoint_slice_reads_like_its_manifest() -> None:
    typed = k.V1EndpointSlice(
        metadata=k.V1ObjectMeta(
            namespace="shop", name="web-abc", labels={"kubernetes.io/service-name": "web"}
        ),
        address_type="IPv4",
        endpoints=[
            k.V1Endpoint(
                addresses=["10.1.0.1"],
                node_name="n1",
                target_ref=k.V1ObjectReference(kind="Pod", name="web-1", uid="u1"),
            ),
            k.V1Endpoint(
                addresses=["10.1.0.2"],
                node_name="n2",
                conditions=k.V1EndpointConditions(ready=False, serving=True, terminating=True),
            ),
            k.V1Endpoint(addresses=["10.1.0.3"], conditions=k.V1EndpointConditions(ready=False)),
        ],
    )
    assert endpoint_slice_info(typed) == endpoint_slice_info(SLICE)
