"""`portway doctor`: the NodePort troubleshooting guide as verdicts (pure).

Theory of operation: the probes (controller/probes.py) gather `Facts`
(controller/doctor_facts.py) about one Service: the Kubernetes objects,
derive()'s decision for it, TCP and healthz answers from the nodes, DNS,
network policies, the registry record and what a gateway's admin API lists.
`judge(facts)` turns them into one `Step` per question of the guide, each
ok / warn / fail / skip with the why, in the order one would troubleshoot:
Service -> endpoints -> nodes -> the NodePort on each node -> health check
-> network policies -> DNS -> registry -> gateway. Which nodes should serve
is never decided here: the node step prints derive()'s verdicts, so doctor
and the controller cannot disagree. A step that fails makes the exit status
1; warnings do not.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from controller.derive import Outcome, ServiceDerivation
from controller.doctor_facts import Facts
from controller.network_policy import PolicyEffect, overall
from controller.placement import Eligibility
from portway.model import Protocol, ServiceRecord, TrafficPolicy


class Status(enum.Enum):
    OK = "ok"
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True, slots=True)
class Step:
    name: str
    status: Status
    summary: str
    details: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status.value,
            "summary": self.summary,
            "details": list(self.details),
        }


@dataclass(frozen=True, slots=True)
class Report:
    target: str
    cluster: str
    steps: tuple[Step, ...]

    @property
    def exit_code(self) -> int:
        return 1 if any(s.status is Status.FAIL for s in self.steps) else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "service": self.target,
            "cluster": self.cluster,
            "ok": self.exit_code == 0,
            "steps": [s.to_dict() for s in self.steps],
        }


def judge(f: Facts) -> Report:
    d = f.derivation
    steps = [_service(f, d)]
    if d is None:
        skipped = "the Service could not be read"
        steps += [
            Step(n, Status.SKIP, skipped)
            for n in ("endpoints", "nodes", "nodeports", "health-check", "network-policies", "dns")
        ]
    else:
        steps += [
            _endpoints(d),
            _nodes(d),
            _nodeports(f),
            _health_check(f, d),
            _policies(f),
            _dns(f),
        ]
    steps += [_registry(f, d), _gateway(f, d)]
    return Report(f"{f.namespace}/{f.name}", f.cluster, tuple(steps))


def _service(f: Facts, d: ServiceDerivation | None) -> Step:
    if f.kube_error:
        return Step("service", Status.FAIL, f"cannot read from the apiserver: {f.kube_error}")
    if d is None:
        return Step("service", Status.FAIL, f"Service {f.namespace}/{f.name} does not exist")
    details = tuple(f"port {v.port}: {v.reason}" for v in d.violations)
    if d.outcome is Outcome.PUBLISHED:
        if details:
            return Step("service", Status.WARN, "exported; some ports are not published", details)
        return Step("service", Status.OK, "exported, type and ports publishable")
    return Step("service", Status.FAIL, f"{d.outcome.value}: {d.reason}", details)


def _endpoints(d: ServiceDerivation) -> Step:
    summary = f"{d.endpoints_ready} of {d.endpoints_total} endpoint(s) ready"
    if d.endpoints_total == 0:
        return Step("endpoints", Status.FAIL, "no endpoints: no pod matches the selector")
    if d.endpoints_ready == 0:
        return Step("endpoints", Status.FAIL, summary + ": pods exist but none is ready")
    if d.endpoints_ready < d.endpoints_total:
        return Step("endpoints", Status.WARN, summary)
    return Step("endpoints", Status.OK, summary)


def _nodes(d: ServiceDerivation) -> Step:
    details = tuple(
        f"{v.node} ({v.address or 'no address'}): {v.eligibility.value}: {v.reason}"
        for v in d.nodes
    )
    serving = sum(v.eligibility is Eligibility.ELIGIBLE for v in d.nodes)
    others = len(d.nodes) - serving
    summary = f"{serving} of {len(d.nodes)} node(s) eligible"
    if not d.nodes:
        if d.outcome is Outcome.PUBLISHED:
            return Step("nodes", Status.FAIL, "the cluster has no nodes")
        return Step("nodes", Status.SKIP, f"no node verdicts: {d.outcome.value}")
    if serving == 0:
        return Step("nodes", Status.FAIL, summary + ": nothing can receive traffic", details)
    return Step("nodes", Status.WARN if others else Status.OK, summary, details)


def _nodeports(f: Facts) -> Step:
    if not f.tcp:
        return Step("nodeports", Status.SKIP, "no eligible node with a TCP nodePort to probe")
    bad = [p for p in f.tcp if p.error]
    details = tuple(
        f"{p.node} {_hostport(p.address, p.port)}: "
        + (f"unreachable: {p.error}" if p.error else f"connected in {p.elapsed_ms:.1f} ms")
        for p in f.tcp
    )
    summary = f"{len(f.tcp) - len(bad)} of {len(f.tcp)} node:nodePort connect"
    if len(bad) == len(f.tcp):
        return Step("nodeports", Status.FAIL, summary + " (firewall, security group?)", details)
    return Step("nodeports", Status.WARN if bad else Status.OK, summary, details)


def _health_check(f: Facts, d: ServiceDerivation) -> Step:
    rec = f.record
    if rec is None or rec.external_traffic_policy is not TrafficPolicy.LOCAL:
        return Step("health-check", Status.SKIP, "externalTrafficPolicy is not Local")
    if rec.health_check_node_port is None:
        return Step(
            "health-check",
            Status.WARN,
            "Local without a healthCheckNodePort: the gateway cannot probe the nodes",
        )
    expected = {v.node: v.local_endpoints for v in d.nodes}
    problems = 0
    details = []
    for h in f.healthz:
        where = f"{h.node} {_hostport(h.address, h.port)}"
        if h.error or h.status is None:
            problems += 1
            details.append(f"{where}: no answer: {h.error}")
            continue
        want = expected.get(h.node)
        line = f"{where}: HTTP {h.status}, localEndpoints {h.local_endpoints}"
        if h.status != 200 or h.local_endpoints != want:
            problems += 1
            line += f" (EndpointSlices say {want})"
        details.append(line)
    summary = f"{len(f.healthz) - problems} of {len(f.healthz)} node(s) answer as expected"
    if not f.healthz:
        return Step("health-check", Status.SKIP, "no eligible node to probe")
    if problems == len(f.healthz):
        return Step("health-check", Status.FAIL, summary, tuple(details))
    return Step("health-check", Status.WARN if problems else Status.OK, summary, tuple(details))


def _policies(f: Facts) -> Step:
    if f.policies is None:
        return Step("network-policies", Status.SKIP, f.policy_note or "not checked")
    if not f.policies:
        return Step("network-policies", Status.OK, "no NetworkPolicy restricts the pods' ingress")
    details = tuple(f"{p.policy}: {p.effect.value}: {p.detail}" for p in f.policies)
    effect = overall(f.policies)
    status = _POLICY_STATUS[effect] if effect is not None else Status.OK
    summary = f"{len(f.policies)} policy(ies) select the pods; together: " + (
        effect.value if effect is not None else "-"
    )
    return Step("network-policies", status, summary, details)


_POLICY_STATUS = {
    PolicyEffect.ALLOWS_ANY_SOURCE: Status.OK,
    PolicyEffect.ALLOWS_CIDRS: Status.WARN,
    PolicyEffect.BLOCKS_EXTERNAL: Status.FAIL,
    PolicyEffect.DENIES_ALL: Status.FAIL,
}


def _dns(f: Facts) -> Step:
    if not f.dns:
        return Step("dns", Status.SKIP, "no node to resolve")
    bad = [p for p in f.dns if p.error]
    details = tuple(
        f"{p.node}: " + (f"does not resolve: {p.error}" if p.error else ", ".join(p.addresses))
        for p in f.dns
    )
    summary = f"{len(f.dns) - len(bad)} of {len(f.dns)} node name(s) resolve"
    # Records carry addresses, not names: a name that does not resolve hurts
    # people and tools, not routing, so it is a warning.
    return Step("dns", Status.WARN if bad else Status.OK, summary, details)


def _registry(f: Facts, d: ServiceDerivation | None) -> Step:
    reg = f.registry
    if reg is None:
        return Step("registry", Status.SKIP, "no --registry given")
    if reg.error:
        return Step("registry", Status.FAIL, f"{reg.backend}: {reg.error}")
    want = f.record
    got = reg.record
    if got is None:
        if reg.other_clusters:
            return Step(
                "registry",
                Status.WARN,
                f"no record for cluster {f.cluster!r}; published by: "
                + ", ".join(reg.other_clusters)
                + " (give --cluster)",
            )
        if want is None:
            return Step("registry", Status.OK, "no record, as expected (not published)")
        return Step("registry", Status.FAIL, "no record: is the controller running and leading?")
    age = max(0.0, f.now - got.published_at)
    where = f"{got.key.path()} (published {age:.0f} s ago)"
    if want is None:
        return Step(
            "registry", Status.FAIL, f"{where} exists but the Service should not be published"
        )
    diffs = record_differences(want, got)
    if diffs:
        return Step("registry", Status.WARN, f"{where} differs from the cluster now", diffs)
    return Step("registry", Status.OK, f"{where} matches the cluster")


def record_differences(want: ServiceRecord, got: ServiceRecord) -> tuple[str, ...]:
    """What a published record says differently from what derive() says now."""
    out = []

    def ports(r: ServiceRecord) -> set[tuple[str, int, int, str]]:
        return {(p.name, p.port, p.node_port, p.protocol.value) for p in r.ports}

    def nodes(r: ServiceRecord) -> dict[str, tuple[str, bool, int]]:
        return {n.name: (n.address, n.ready, n.local_endpoints) for n in r.nodes}

    if ports(want) != ports(got):
        out.append(f"ports: published {sorted(ports(got))}, now {sorted(ports(want))}")
    wn, gn = nodes(want), nodes(got)
    for name in sorted(wn.keys() | gn.keys()):
        if wn.get(name) != gn.get(name):
            out.append(f"node {name}: published {gn.get(name)}, now {wn.get(name)}")
    for attr in ("external_traffic_policy", "health_check_node_port", "session_affinity"):
        if getattr(want, attr) != getattr(got, attr):
            out.append(f"{attr}: published {getattr(got, attr)}, now {getattr(want, attr)}")
    return tuple(out)


def _gateway(f: Facts, d: ServiceDerivation | None) -> Step:
    gw = f.gateway
    if gw is None:
        return Step("gateway", Status.SKIP, "no --gateway-admin given")
    if gw.error:
        return Step("gateway", Status.FAIL, f"{gw.url}: {gw.error}")
    rec = f.record
    if rec is None:
        return Step("gateway", Status.SKIP, "nothing to compare: the Service is not published")
    expected = expected_gateway_endpoints(rec)
    by_backend: dict[str, set[tuple[str, int, bool]]] = {}
    for e in gw.endpoints:
        if e.cluster == rec.cluster:
            by_backend.setdefault(e.backend, set()).add((e.address, e.port, e.ready))
    details = []
    differing = 0
    for backend, seen in sorted(by_backend.items()):
        for port, want in expected.items():
            if not {(a, p) for a, p, _ in seen} & {(a, p) for a, p, _ in want}:
                continue
            if seen == want:
                details.append(f"backend {backend}: port {port}: same {len(want)} endpoint(s)")
            else:
                differing += 1
                missing = sorted(want - seen)
                extra = sorted(seen - want)
                details.append(f"backend {backend}: port {port}: missing {missing}, extra {extra}")
    if not details:
        return Step(
            "gateway",
            Status.FAIL,
            f"no backend of {gw.url} routes to this Service's endpoints in {rec.cluster!r}",
        )
    status = Status.WARN if differing else Status.OK
    summary = f"{len(details)} backend port(s) route here, {differing} with other endpoints"
    return Step("gateway", status, summary, tuple(details))


def expected_gateway_endpoints(rec: ServiceRecord) -> dict[str, set[tuple[str, int, bool]]]:
    """Per TCP port, the (address, nodePort, ready) a gateway compiles from `rec`:
    every node under Cluster, nodes with local endpoints under Local."""
    local = rec.external_traffic_policy is TrafficPolicy.LOCAL
    nodes = [n for n in rec.nodes if not local or n.local_endpoints > 0]
    return {
        p.name or str(p.port): {(n.address, p.node_port, n.ready) for n in nodes}
        for p in rec.ports
        if p.protocol is Protocol.TCP
    }


def _hostport(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"
