"""Builders shared by the routing tests: configs from camelCase dicts, records, facts."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.routing.compiler import compile_table
from gateway.routing.decision import RequestFacts
from gateway.routing.endpoints import EndpointState
from gateway.routing.table import RoutingTable
from portway.model import Node, ServicePort, ServiceRecord, TrafficPolicy

_ADAPTER = TypeAdapter(GatewayConfig)


def config(doc: Mapping[str, Any]) -> GatewayConfig:
    return _ADAPTER.validate_python(dict(doc))


def table(
    doc: Mapping[str, Any], records: Iterable[ServiceRecord] = (), seed: int = 7
) -> RoutingTable:
    return compile_table(config(doc), records, seed=seed)


def static(
    name: str, *ports: int, region: str = "", zone: str = "", cluster: str = "static"
) -> dict[str, Any]:
    return {
        "name": name,
        "endpoints": [
            {"address": "127.0.0.1", "port": p, "region": region, "zone": zone, "cluster": cluster}
            for p in ports
        ],
    }


def record(
    cluster: str,
    region: str,
    nodes: Iterable[tuple[str, str, str]],
    *,
    service: str = "web",
    node_port: int = 30080,
    policy: TrafficPolicy = TrafficPolicy.CLUSTER,
    health_check_node_port: int | None = None,
    not_ready: Iterable[str] = (),
    local: Mapping[str, int] | None = None,
) -> ServiceRecord:
    """nodes: (name, address, zone)."""
    down = set(not_ready)
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service=service,
        region=region,
        ports=(ServicePort("http", 80, node_port),),
        nodes=tuple(
            Node(n, a, z, ready=n not in down, local_endpoints=(local or {}).get(n, 0))
            for n, a, z in nodes
        ),
        external_traffic_policy=policy,
        health_check_node_port=health_check_node_port,
    )


def facts(
    url_path: str = "/",
    host: str = "shop.example.com",
    method: str = "GET",
    query: str = "",
    headers: Mapping[str, str] | None = None,
    client_ip: str = "203.0.113.7",
    listener: str = "web",
) -> RequestFacts:
    return RequestFacts(
        method=method,
        host=host,
        path=url_path,
        query=query,
        headers=dict(headers or {}),
        client_ip=client_ip,
        listener=listener,
    )


WEB = {"name": "web", "protocol": "HTTP", "port": 8080}


def routes_doc(*routes: dict[str, object]) -> dict[str, object]:
    """A config on listener WEB with these routes and ten static backends b0..b9."""
    return {
        "listeners": [WEB],
        "routes": list(routes),
        "backends": [static(f"b{i}", 9000 + i) for i in range(10)],
    }


def route_doc(
    name: str, backend: str, hostnames: list[str] | None = None, **match: object
) -> dict[str, object]:
    """One route, one rule to backend; match keywords form its single match (none: match all)."""
    return {
        "name": name,
        "hostnames": hostnames or [],
        "rules": [{"matches": [match] if match else [{}], "backendRefs": [{"name": backend}]}],
    }


def winner(t: RoutingTable, **kw: Any) -> str | None:
    """The name of the route t picks for facts(**kw), None when no route matches."""
    d = t.route_http(facts(**kw), EndpointState())
    return d.route.name if d.route else None


EAST = record("east", "us-east-1", [(f"e{i}", f"10.0.0.{i + 1}", "us-east-1a") for i in range(4)])
WEST = record("west", "us-west-2", [(f"w{i}", f"10.1.0.{i + 1}", "us-west-2a") for i in range(4)])


def service_doc(
    backend: dict[str, Any] | None = None, route: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A gateway in us-east-1a routing all of WEB to registry backend shop/web:http.

    backend and route are merged over the defaults (e.g. {"service": ...} or {"filters": ...})."""
    b = {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}}
    return {
        "gateway": {"region": "us-east-1", "zone": "us-east-1a"},
        "listeners": [WEB],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}], **(route or {})}],
        "backends": [{**b, **(backend or {})}],
    }
