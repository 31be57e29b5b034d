"""Would a NetworkPolicy drop NodePort traffic to a Service's pods? (pure)

Theory of operation: NodePort traffic reaches a pod from outside the cluster:
with the client's address under externalTrafficPolicy Local, with the node's
address (SNAT) under Cluster. Neither matches a podSelector or
namespaceSelector peer, so a policy that selects the pods and admits ingress
only from pods or namespaces drops it, which is the "service suddenly
unreachable" case the troubleshooting guide starts with. Policies are
additive: traffic passes when any policy selecting the pod admits it.
`assess` looks at every policy of the namespace that selects at least one of
the Service's pods and says, per policy, what it lets in; `overall` folds
those findings into one verdict. Port lists are reported, not matched: the
target ports behind a NodePort are the pods' (named) container ports, which
doctor does not resolve.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class SelectorRequirement:
    key: str
    operator: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.operator == "In":
            return self.key in labels and labels[self.key] in self.values
        if self.operator == "NotIn":
            return self.key not in labels or labels[self.key] not in self.values
        if self.operator == "Exists":
            return self.key in labels
        if self.operator == "DoesNotExist":
            return self.key not in labels
        return False  # an operator this code does not know selects nothing


@dataclass(frozen=True, slots=True)
class LabelSelector:
    """metav1.LabelSelector: all of match_labels and match_expressions; empty selects all."""

    match_labels: tuple[tuple[str, str], ...] = ()
    match_expressions: tuple[SelectorRequirement, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(labels.get(k) == v for k, v in self.match_labels) and all(
            r.matches(labels) for r in self.match_expressions
        )


@dataclass(frozen=True, slots=True)
class IngressRule:
    """One ingress rule: no peers means from anywhere; no ports means every port."""

    ip_blocks: tuple[str, ...] = ()
    selector_peers: int = 0
    ports: tuple[str, ...] = ()

    @property
    def from_anywhere(self) -> bool:
        return not self.ip_blocks and not self.selector_peers


@dataclass(frozen=True, slots=True)
class NetworkPolicyInfo:
    """A NetworkPolicy; `restricts_ingress` when its policyTypes include Ingress."""

    namespace: str
    name: str
    pod_selector: LabelSelector
    restricts_ingress: bool
    ingress: tuple[IngressRule, ...] = ()


class PolicyEffect(enum.Enum):
    """What one policy does to traffic coming from outside the cluster."""

    ALLOWS_ANY_SOURCE = "allows any source"
    ALLOWS_CIDRS = "allows listed CIDRs only"
    BLOCKS_EXTERNAL = "admits pods/namespaces only"
    DENIES_ALL = "denies all ingress"


@dataclass(frozen=True, slots=True)
class PolicyFinding:
    policy: str
    effect: PolicyEffect
    detail: str


def assess(
    policies: Sequence[NetworkPolicyInfo], pod_labels: Sequence[Mapping[str, str]]
) -> tuple[PolicyFinding, ...]:
    """Findings for the policies selecting at least one pod and restricting ingress."""
    out = []
    for p in sorted(policies, key=lambda p: p.name):
        if not p.restricts_ingress or not any(p.pod_selector.matches(lb) for lb in pod_labels):
            continue
        out.append(_finding(p))
    return tuple(out)


def overall(findings: Sequence[PolicyFinding]) -> PolicyEffect | None:
    """The most permissive effect among the findings (policies add up); None if none apply."""
    for effect in (
        PolicyEffect.ALLOWS_ANY_SOURCE,
        PolicyEffect.ALLOWS_CIDRS,
        PolicyEffect.BLOCKS_EXTERNAL,
        PolicyEffect.DENIES_ALL,
    ):
        if any(f.effect is effect for f in findings):
            return effect
    return None


def _finding(p: NetworkPolicyInfo) -> PolicyFinding:
    ref = f"{p.namespace}/{p.name}"
    if not p.ingress:
        return PolicyFinding(ref, PolicyEffect.DENIES_ALL, "selects the pods and has no rule")
    open_rules = [r for r in p.ingress if r.from_anywhere]
    if open_rules:
        ports = sorted({port for r in open_rules for port in r.ports})
        where = f"on ports {', '.join(ports)}" if all(r.ports for r in open_rules) else "any port"
        return PolicyFinding(ref, PolicyEffect.ALLOWS_ANY_SOURCE, f"from anywhere, {where}")
    cidrs = sorted({c for r in p.ingress for c in r.ip_blocks})
    if cidrs:
        return PolicyFinding(
            ref,
            PolicyEffect.ALLOWS_CIDRS,
            f"only from {', '.join(cidrs)}: the gateway's (Cluster: the nodes') "
            "addresses must fall inside",
        )
    return PolicyFinding(
        ref,
        PolicyEffect.BLOCKS_EXTERNAL,
        "admits only pod/namespace selectors; NodePort traffic comes from outside the "
        "cluster (Local: the client, Cluster: the node) and is dropped",
    )
