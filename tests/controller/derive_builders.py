"""Builders for derivation tests: the API's objects as the watch cache hands them over."""

from __future__ import annotations

from controller.derive import Derivation
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
from controller.placement import Eligibility
from portway.model import ServiceRecord, TrafficPolicy

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
