"""`portway doctor`'s I/O: read the cluster, probe the nodes, ask the registry and gateway.

Theory of operation: `gather` collects `controller.doctor_facts.Facts` for one
Service and nothing else; every verdict is `controller.doctor.judge`'s. The
Kubernetes reads go through the official client (blocking, so each runs in a
worker thread) as raw JSON, converted by controller/kube_objects.py, then
derive() decides which nodes should serve. Only those nodes are probed:
TCP connect to node:nodePort, kube-proxy's healthz on healthCheckNodePort
(Local), and a DNS lookup of the node's name, all concurrently and each
bounded by `timeout_s`, so a black-holed node costs one timeout, not one per
question. A probe that cannot run records its error in its fact.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp

from controller.derive import ClusterView, ServiceDerivation
from controller.doctor_facts import (
    DnsProbe,
    Facts,
    GatewayEndpoint,
    GatewayFacts,
    HealthzProbe,
    RegistryFacts,
    TcpProbe,
    eligible_targets,
)
from controller.kube_objects import (
    ObjectError,
    endpoint_slice_info,
    labels_of,
    network_policy_info,
    node_info,
    service_info,
    service_selector,
)
from controller.network_policy import assess
from controller.objects import SERVICE_NAME_LABEL, ClusterSettings
from controller.placement import Eligibility
from portway.model import RecordError, ServiceRecord

SERVICE_EXPORT = ("multicluster.x-k8s.io", "v1alpha1", "serviceexports")


@dataclass(frozen=True, slots=True)
class RegistryTarget:
    """Which registry to ask: its backend's name and how to open a client for it (the
    command passes `portway controller`'s own opener, so the same flags open the same)."""

    backend: str
    open: Callable[[], Any]


@dataclass(frozen=True, slots=True)
class DoctorTarget:
    namespace: str
    name: str
    settings: ClusterSettings
    registry: RegistryTarget | None = None
    gateway_admin: str | None = None
    timeout_s: float = 3.0
    cluster_given: bool = True
    now: Callable[[], float] = field(default=time.time, compare=False)


class KubeReadError(Exception):
    """The apiserver could not be read (unreachable, forbidden, garbage)."""


async def gather(target: DoctorTarget, api_client: Any) -> Facts:
    """All the facts `judge` needs about `target`; never raises for a failed probe."""
    ns, name = target.namespace, target.name
    registry = await _registry_facts(target) if target.registry is not None else None
    cluster = target.settings.cluster
    if registry is not None and registry.record is not None:
        cluster = registry.record.cluster
    settings = _with_cluster(target.settings, cluster)
    base = Facts(ns, name, cluster, target.now(), registry=registry)
    try:
        kube = await asyncio.to_thread(_read_kube, api_client, ns, name, target.timeout_s)
    except KubeReadError as exc:
        return replace(base, kube_error=str(exc), gateway=await _gateway(target))
    if kube.service is None:
        return replace(base, gateway=await _gateway(target))
    view = ClusterView(settings, kube.nodes, kube.slices)
    d = view.derive_service(kube.service, target.now(), verdicts_always=True)
    probes = await asyncio.gather(
        _tcp_all(d, target.timeout_s),
        _healthz_all(d, target.timeout_s),
        _dns_all(d, target.timeout_s),
        _gateway(target),
    )
    tcp, healthz, dns, gateway = probes
    return replace(
        base,
        derivation=d,
        policies=kube.policies,
        policy_note=kube.policy_note,
        tcp=tcp,
        healthz=healthz,
        dns=dns,
        gateway=gateway,
    )


@dataclass(frozen=True, slots=True)
class _KubeFacts:
    service: Any = None
    nodes: tuple[Any, ...] = ()
    slices: tuple[Any, ...] = ()
    policies: Any = None
    policy_note: str = ""


def _read_kube(api_client: Any, ns: str, name: str, timeout_s: float) -> _KubeFacts:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    opts = {"_preload_content": False, "_request_timeout": timeout_s}

    def get(call: Callable[..., Any], *args: Any, **kw: Any) -> Any:
        try:
            return json.loads(call(*args, **kw, **opts).data)
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise KubeReadError(f"{exc.status} {exc.reason}") from None
        except (OSError, ValueError) as exc:
            raise KubeReadError(f"{type(exc).__name__}: {exc}") from None
        except Exception as exc:  # urllib3's MaxRetryError and kin
            raise KubeReadError(f"{type(exc).__name__}: {exc}") from None

    raw = get(core.read_namespaced_service, name, ns)
    if raw is None:
        return _KubeFacts()
    exported = get(
        client.CustomObjectsApi(api_client).get_namespaced_custom_object,
        SERVICE_EXPORT[0],
        SERVICE_EXPORT[1],
        ns,
        SERVICE_EXPORT[2],
        name,
    )
    try:
        service = service_info(raw, service_export=exported is not None)
        nodes = tuple(node_info(n) for n in (get(core.list_node) or {}).get("items", ()))
        selector = f"{SERVICE_NAME_LABEL}={name}"
        listed = get(
            client.DiscoveryV1Api(api_client).list_namespaced_endpoint_slice,
            ns,
            label_selector=selector,
        )
    except ObjectError as exc:
        raise KubeReadError(str(exc)) from None
    slices = tuple(
        s
        for s in (endpoint_slice_info(x) for x in (listed or {}).get("items", ()))
        if s.service_name == name
    )
    policies, note = _read_policies(api_client, get, ns, service_selector(raw))
    return _KubeFacts(service, nodes, slices, policies, note)


def _read_policies(
    api_client: Any, get: Callable[..., Any], ns: str, selector: Mapping[str, str]
) -> tuple[Any, str]:
    from kubernetes import client

    if not selector:
        return None, "the Service has no selector: its pods are not known"
    try:
        listed = get(client.NetworkingV1Api(api_client).list_namespaced_network_policy, ns)
        pods = get(
            client.CoreV1Api(api_client).list_namespaced_pod,
            ns,
            label_selector=",".join(f"{k}={v}" for k, v in sorted(selector.items())),
        )
    except KubeReadError as exc:
        return None, f"cannot list NetworkPolicies or pods: {exc}"
    pod_labels = [
        lb
        for lb in (labels_of(p) for p in (pods or {}).get("items", ()))
        if all(lb.get(k) == v for k, v in selector.items())
    ]
    if not pod_labels:
        return None, "no pod matches the Service's selector"
    policies = [network_policy_info(p) for p in (listed or {}).get("items", ())]
    return assess(policies, pod_labels), ""


async def _tcp_all(d: ServiceDerivation, timeout_s: float) -> tuple[TcpProbe, ...]:
    targets = eligible_targets(d, d.record)
    return tuple(await asyncio.gather(*(_tcp(n, a, p, timeout_s) for n, a, p in targets)))


async def _tcp(node: str, address: str, port: int, timeout_s: float) -> TcpProbe:
    start = time.perf_counter()
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(address, port), timeout_s)
    except TimeoutError:
        return TcpProbe(node, address, port, f"no answer within {timeout_s:g} s")
    except OSError as exc:
        return TcpProbe(node, address, port, exc.strerror or str(exc))
    elapsed_ms = (time.perf_counter() - start) * 1000
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()
    return TcpProbe(node, address, port, "", elapsed_ms)


async def _healthz_all(d: ServiceDerivation, timeout_s: float) -> tuple[HealthzProbe, ...]:
    rec = d.record
    if rec is None or rec.health_check_node_port is None:
        return ()
    hc = rec.health_check_node_port
    nodes = [v for v in d.nodes if v.eligibility is Eligibility.ELIGIBLE]
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        return tuple(
            await asyncio.gather(*(_healthz(session, v.node, v.address, hc) for v in nodes))
        )


async def _healthz(
    session: aiohttp.ClientSession, node: str, address: str, port: int
) -> HealthzProbe:
    host = f"[{address}]" if ":" in address else address
    try:
        async with session.get(f"http://{host}:{port}/healthz") as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        return HealthzProbe(node, address, port, error=str(exc) or type(exc).__name__)
    try:
        count = json.loads(body).get("localEndpoints")
    except (ValueError, AttributeError):
        return HealthzProbe(node, address, port, status, error="answer is not kube-proxy's JSON")
    return HealthzProbe(node, address, port, status, count if isinstance(count, int) else None)


async def _dns_all(d: ServiceDerivation, timeout_s: float) -> tuple[DnsProbe, ...]:
    names = [v.node for v in d.nodes if v.eligibility.published]
    return tuple(await asyncio.gather(*(_dns(n, timeout_s) for n in names)))


async def _dns(name: str, timeout_s: float) -> DnsProbe:
    loop = asyncio.get_running_loop()
    try:
        infos = await asyncio.wait_for(
            loop.getaddrinfo(name, None, type=socket.SOCK_STREAM), timeout_s
        )
    except TimeoutError:
        return DnsProbe(name, error=f"no answer within {timeout_s:g} s")
    except OSError as exc:
        return DnsProbe(name, error=exc.strerror or str(exc))
    return DnsProbe(name, tuple(sorted({str(i[4][0]) for i in infos})))


async def _registry_facts(target: DoctorTarget) -> RegistryFacts:
    """The Service's record for the target cluster; without --cluster, the only record."""
    from portway.registry.base import RegistryError

    assert target.registry is not None
    r = target.registry
    try:
        reg = r.open()
    except (RegistryError, ValueError) as exc:
        return RegistryFacts(r.backend, error=str(exc))
    try:
        snap = await asyncio.wait_for(reg.snapshot(), target.timeout_s * 2)
    except (RegistryError, RecordError, OSError, TimeoutError) as exc:
        return RegistryFacts(r.backend, error=str(exc) or type(exc).__name__)
    finally:
        await reg.close()
    mine: list[ServiceRecord] = [
        rec
        for key, rec in snap.records.items()
        if key.namespace == target.namespace and key.service == target.name
    ]
    if not target.cluster_given and len(mine) == 1:
        return RegistryFacts(r.backend, mine[0])
    cluster = target.settings.cluster if target.cluster_given else None
    found = next((rec for rec in mine if rec.cluster == cluster), None)
    others = tuple(sorted(rec.cluster for rec in mine if rec.cluster != cluster))
    return RegistryFacts(r.backend, found, others)


async def _gateway(target: DoctorTarget) -> GatewayFacts | None:
    url = target.gateway_admin
    if url is None:
        return None
    timeout = aiohttp.ClientTimeout(total=target.timeout_s)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.get(url.rstrip("/") + "/endpoints") as resp,
        ):
            if resp.status != 200:
                return GatewayFacts(url, error=f"/endpoints answered HTTP {resp.status}")
            body = await resp.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
        return GatewayFacts(url, error=str(exc) or type(exc).__name__)
    return GatewayFacts(url, _gateway_endpoints(body))


def _gateway_endpoints(body: Any) -> tuple[GatewayEndpoint, ...]:
    out = []
    backends = body.get("backends", {}) if isinstance(body, dict) else {}
    for name, eps in sorted(backends.items()):
        for e in eps if isinstance(eps, list) else ():
            if not isinstance(e, dict):
                continue
            out.append(
                GatewayEndpoint(
                    str(name),
                    str(e.get("cluster", "")),
                    str(e.get("address", "")),
                    int(e.get("port") or 0),
                    bool(e.get("ready", True)),
                )
            )
    return tuple(out)


def _with_cluster(settings: ClusterSettings, cluster: str) -> ClusterSettings:
    return settings if cluster == settings.cluster else replace(settings, cluster=cluster)
