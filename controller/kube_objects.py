"""The I/O edge: Kubernetes objects -> controller/objects.py values.

Theory of operation: objects arrive in two shapes, typed models of the
`kubernetes` client (V1Service, V1Node, V1EndpointSlice, snake_case
attributes) and plain manifests (dicts with the API's camelCase keys, as a
watch stream, kmock or a YAML file gives them). Typed models are turned into
the manifest shape first with the client's own serializer, so there is one
reading of each field, written once against the API's documented JSON. A
missing optional field takes the API's default; a field that is present but
unusable (an unknown Service type, a port that is not a number) raises
`ObjectError` naming the object and the field, so the caller can log and skip
that one object.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

from controller.network_policy import (
    IngressRule,
    LabelSelector,
    NetworkPolicyInfo,
    SelectorRequirement,
)
from controller.objects import (
    DEFAULT_AFFINITY_TIMEOUT_S,
    SERVICE_NAME_LABEL,
    AddressType,
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
from portway.model import Protocol, SessionAffinity, TrafficPolicy


class ObjectError(ValueError):
    """A Kubernetes object that cannot be read; says which object and which field."""

    def __init__(self, kind: str, ref: str, path: str, message: str) -> None:
        super().__init__(f"{kind} {ref}: {path}: {message}")
        self.kind = kind
        self.ref = ref
        self.path = path


def manifest(obj: object) -> dict[str, Any]:
    """A typed client model, or a manifest already, as the API's JSON (camelCase dict)."""
    if isinstance(obj, Mapping):
        return dict(obj)
    out = _serializer().sanitize_for_serialization(obj)
    if not isinstance(out, dict):
        raise TypeError(f"not a Kubernetes object: {type(obj).__name__}")
    return out


@functools.cache
def _serializer() -> Any:
    """One ApiClient for its serializer only (it opens no connection until a request)."""
    from kubernetes.client import ApiClient

    return ApiClient()


def service_info(obj: object, *, service_export: bool = False) -> ServiceInfo:
    """A Service; `service_export` says whether a ServiceExport of the same name exists."""
    raw = manifest(obj)
    meta, spec = _meta(raw), _dict(raw.get("spec"))
    ref = _ref(meta)
    r = _Reader("Service", ref)
    ports = []
    for i, p in enumerate(_list(spec.get("ports"))):
        p = _dict(p)
        node_port = p.get("nodePort")
        ports.append(
            PortInfo(
                name=str(p.get("name") or ""),
                port=r.integer(p.get("port"), f"spec.ports[{i}].port"),
                node_port=None
                if node_port in (None, 0)
                else r.integer(node_port, f"spec.ports[{i}].nodePort"),
                protocol=r.enum(Protocol, p.get("protocol") or "TCP", f"spec.ports[{i}].protocol"),
            )
        )
    hc = spec.get("healthCheckNodePort")
    timeout = (
        _dict(_dict(spec.get("sessionAffinityConfig")).get("clientIP")).get("timeoutSeconds")
        or DEFAULT_AFFINITY_TIMEOUT_S
    )
    return ServiceInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        type=r.enum(ServiceType, spec.get("type") or "ClusterIP", "spec.type"),
        ports=tuple(ports),
        annotations=_strmap(meta.get("annotations")),
        labels=_strmap(meta.get("labels")),
        external_traffic_policy=r.enum(
            TrafficPolicy,
            _traffic_policy(spec.get("externalTrafficPolicy")),
            "spec.externalTrafficPolicy",
        ),
        health_check_node_port=(
            None if hc in (None, 0) else r.integer(hc, "spec.healthCheckNodePort")
        ),
        session_affinity=r.enum(
            SessionAffinity, spec.get("sessionAffinity") or "None", "spec.sessionAffinity"
        ),
        session_affinity_timeout_s=r.integer(
            timeout, "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
        ),
        service_export=service_export,
    )


def node_info(obj: object) -> NodeInfo:
    """A Node: Ready means a Ready condition with status "True" (absent means not ready)."""
    raw = manifest(obj)
    meta, spec, status = _meta(raw), _dict(raw.get("spec")), _dict(raw.get("status"))
    addresses = []
    for a in _list(status.get("addresses")):
        a = _dict(a)
        try:
            kind = AddressType(a.get("type"))
        except ValueError:
            continue  # an address type newer than this code: not one we would prefer
        addresses.append(NodeAddress(kind, str(a.get("address") or "")))
    ready = any(
        _dict(c).get("type") == "Ready" and _dict(c).get("status") == "True"
        for c in _list(status.get("conditions"))
    )
    taints = tuple(
        Taint(str(t.get("key") or ""), str(t.get("effect") or ""), str(t.get("value") or ""))
        for t in map(_dict, _list(spec.get("taints")))
    )
    return NodeInfo(
        name=str(meta.get("name") or ""),
        addresses=tuple(addresses),
        labels=_strmap(meta.get("labels")),
        ready=ready,
        unschedulable=bool(spec.get("unschedulable")),
        taints=taints,
    )


def endpoint_slice_info(obj: object) -> EndpointSliceInfo:
    """An EndpointSlice; conditions take the API defaults (ready/serving nil = true)."""
    raw = manifest(obj)
    meta = _meta(raw)
    endpoints = []
    for e in map(_dict, _list(raw.get("endpoints"))):
        cond = _dict(e.get("conditions"))
        ready = cond.get("ready")
        serving = cond.get("serving")
        target = _dict(e.get("targetRef"))
        endpoints.append(
            EndpointInfo(
                addresses=tuple(str(a) for a in _list(e.get("addresses"))),
                node_name=e.get("nodeName") or None,
                ready=True if ready is None else bool(ready),
                serving=(True if ready is None else bool(ready))
                if serving is None
                else bool(serving),
                terminating=bool(cond.get("terminating")),
                target=str(target.get("uid") or target.get("name") or ""),
            )
        )
    labels = _strmap(meta.get("labels"))
    return EndpointSliceInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        service_name=labels.get(SERVICE_NAME_LABEL, ""),
        address_type=str(raw.get("addressType") or "IPv4"),
        endpoints=tuple(endpoints),
    )


class _Reader:
    """Field conversions that name the object and field when they fail."""

    __slots__ = ("kind", "ref")

    def __init__(self, kind: str, ref: str) -> None:
        self.kind = kind
        self.ref = ref

    def integer(self, value: object, path: str) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise ObjectError(self.kind, self.ref, path, f"{value!r} is not an integer")
        try:
            return int(value)
        except ValueError:
            raise ObjectError(self.kind, self.ref, path, f"{value!r} is not an integer") from None

    def enum(self, cls: Any, value: object, path: str) -> Any:
        try:
            return cls(value)
        except ValueError:
            allowed = ", ".join(m.value for m in cls)
            raise ObjectError(
                self.kind, self.ref, path, f"{value!r} is not one of {allowed}"
            ) from None


_OLD_POLICY_NAMES = {"Global": "Cluster", "OnlyLocal": "Local"}


def _traffic_policy(value: object) -> object:
    """Absent means Cluster; the API's pre-1.0 spellings are still accepted."""
    if value is None or value == "":
        return "Cluster"
    return _OLD_POLICY_NAMES.get(value, value) if isinstance(value, str) else value


def _meta(raw: Mapping[str, Any]) -> dict[str, Any]:
    return _dict(raw.get("metadata"))


def _ref(meta: Mapping[str, Any]) -> str:
    return f"{meta.get('namespace') or 'default'}/{meta.get('name') or '?'}"


def _dict(v: object) -> dict[str, Any]:
    return dict(v) if isinstance(v, Mapping) else {}


def _list(v: object) -> list[Any]:
    return list(v) if isinstance(v, list | tuple) else []


def _strmap(v: object) -> Mapping[str, str]:
    if not isinstance(v, Mapping):
        return frozen_map()
    return frozen_map({str(k): "" if x is None else str(x) for k, x in v.items()})


def network_policy_info(obj: object) -> NetworkPolicyInfo:
    """A NetworkPolicy; policyTypes defaults to Ingress (plus Egress when egress rules exist)."""
    raw = manifest(obj)
    meta, spec = _meta(raw), _dict(raw.get("spec"))
    types = _list(spec.get("policyTypes")) or ["Ingress"]
    rules = []
    for rule in map(_dict, _list(spec.get("ingress"))):
        peers = [_dict(p) for p in _list(rule.get("from"))]
        rules.append(
            IngressRule(
                ip_blocks=tuple(
                    _ip_block(_dict(p["ipBlock"])) for p in peers if p.get("ipBlock") is not None
                ),
                selector_peers=sum(
                    1 for p in peers if "podSelector" in p or "namespaceSelector" in p
                ),
                ports=tuple(
                    f"{_dict(x).get('port', '*')}/{_dict(x).get('protocol') or 'TCP'}"
                    for x in _list(rule.get("ports"))
                ),
            )
        )
    return NetworkPolicyInfo(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name") or ""),
        pod_selector=label_selector(spec.get("podSelector")),
        restricts_ingress="Ingress" in types,
        ingress=tuple(rules),
    )


def label_selector(raw: object) -> LabelSelector:
    """metav1.LabelSelector from its JSON form (absent or {} selects everything)."""
    sel = _dict(raw)
    return LabelSelector(
        match_labels=tuple(sorted(_strmap(sel.get("matchLabels")).items())),
        match_expressions=tuple(
            SelectorRequirement(
                str(e.get("key") or ""),
                str(e.get("operator") or ""),
                tuple(str(v) for v in _list(e.get("values"))),
            )
            for e in map(_dict, _list(sel.get("matchExpressions")))
        ),
    )


def labels_of(obj: object) -> Mapping[str, str]:
    """metadata.labels of any object (a pod, a namespace)."""
    return _strmap(_meta(manifest(obj)).get("labels"))


def _ip_block(block: Mapping[str, Any]) -> str:
    cidr = str(block.get("cidr") or "")
    excepted = [str(x) for x in _list(block.get("except"))]
    return f"{cidr} except {', '.join(excepted)}" if excepted else cidr


def service_selector(obj: object) -> Mapping[str, str]:
    """spec.selector of a Service: the labels of its pods (empty: endpoints managed by hand)."""
    return _strmap(_dict(manifest(obj).get("spec")).get("selector"))
