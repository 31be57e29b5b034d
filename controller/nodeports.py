"""NodePort range validation: which of a Service's ports may be published.

Theory of operation: the apiserver allocates nodePorts from its
--service-node-port-range (default 30000-32767); operators often carve that
range into per-tier blocks (web 30200-30299, ...) so firewalls and external
load balancers can be opened per tier. A Service declares its tier with the
`portway.io/tier` annotation (or label, the annotation wins). A port whose
nodePort lies outside the cluster range, outside its tier's block, belongs to
a tier nobody declared, or has no nodePort at all is a `PortViolation`: a
value, never an exception. Derivation leaves such ports out of the record;
the controller turns each violation into a Kubernetes Event on the Service and
a metric, and `portway doctor` prints them.
"""

from __future__ import annotations

from dataclasses import dataclass

from controller.objects import TIER_KEY, ClusterSettings, PortInfo, PortRange, ServiceInfo


@dataclass(frozen=True, slots=True)
class PortViolation:
    """One port of `service` ("namespace/name") that will not be published, and why."""

    service: str
    port: str
    node_port: int | None
    reason: str


def tier_of(service: ServiceInfo) -> str | None:
    """The Service's declared tier: annotation first, then label; None when undeclared."""
    tier = service.annotations.get(TIER_KEY)
    if tier is None:
        tier = service.labels.get(TIER_KEY)
    return tier.strip() if tier is not None else None


def port_label(port: PortInfo) -> str:
    """How a port is named in messages: its name, else its number."""
    return port.name or str(port.port)


def check_ports(
    settings: ClusterSettings, service: ServiceInfo
) -> tuple[tuple[PortInfo, ...], tuple[PortViolation, ...]]:
    """Split the Service's ports into the publishable ones and the violations, in spec order."""
    ok: list[PortInfo] = []
    bad: list[PortViolation] = []
    tier = tier_of(service)
    tier_range = settings.tier_ranges.get(tier) if tier is not None else None
    for p in service.ports:
        reason = _port_problem(settings, tier, tier_range, p)
        if reason is None:
            ok.append(p)
        else:
            bad.append(PortViolation(service.ref, port_label(p), p.node_port, reason))
    return tuple(ok), tuple(bad)


def check_health_check_port(
    settings: ClusterSettings, service: ServiceInfo
) -> PortViolation | None:
    """healthCheckNodePort comes from the same range; outside it, it is not published."""
    hc = service.health_check_node_port
    if hc is None or hc in settings.node_port_range:
        return None
    return PortViolation(
        service.ref,
        "healthCheckNodePort",
        hc,
        f"healthCheckNodePort {hc} is outside the NodePort range {settings.node_port_range}",
    )


def _port_problem(
    settings: ClusterSettings, tier: str | None, tier_range: PortRange | None, p: PortInfo
) -> str | None:
    if p.node_port is None or p.node_port == 0:
        return "no nodePort allocated (allocateLoadBalancerNodePorts: false?)"
    if p.node_port not in settings.node_port_range:
        return f"nodePort {p.node_port} is outside the NodePort range {settings.node_port_range}"
    if tier is None:
        return None
    if tier_range is None:
        declared = ", ".join(sorted(settings.tier_ranges)) or "none"
        return f"tier {tier!r} has no declared nodePort range (declared tiers: {declared})"
    if p.node_port not in tier_range:
        return f"nodePort {p.node_port} is outside tier {tier!r} range {tier_range}"
    return None
