"""Which nodes receive a Service's traffic, as kube-proxy serves its NodePorts (pure).

Theory of operation. `controller/derive.py` decides whether a Service is
published; this module decides where its traffic may land. Each node is
assessed once per derivation (`assess_node`: what does not depend on the
Service), then every node gets a verdict per Service (`node_verdicts`),
checked in this order:

1. cordoned (spec.unschedulable), excluded by the label
   `node.kubernetes.io/exclude-from-external-load-balancers`, or tainted
   `ToBeDeletedByClusterAutoscaler`: not published;
2. no address of a preferred type (settings.address_preference, default
   ExternalIP then InternalIP; only addresses that parse as IPs count): not
   published;
3. externalTrafficPolicy Local and no ready, non-terminating endpoint of the
   Service on the node (EndpointSlice nodeName + conditions,
   `count_endpoints`): not published, since kube-proxy drops such traffic and
   its healthCheckNodePort answers 503;
4. Ready condition not True: published with `ready=False`;
5. otherwise eligible: published with `ready=True`.

Why NotReady nodes are published (rule 4): the gateway's compiler keeps a
NotReady node in its locality level as unavailable, so the level's healthy
share drops and traffic spills to the next priority the way Envoy's does;
the node is never picked outside panic mode. Leaving it out would make a
zone with two of three nodes NotReady look fully healthy. The set of nodes
the gateway routes to in normal operation, the `ready=True` ones, is exactly
kube-proxy's serving set.

`place` turns the verdicts into the record's nodes: under Local each carries
its count of ready local endpoints (pods counted once across address
families). Zones are the nodes' `topology.kubernetes.io/zone` labels; the
region is settings.region, else the region label most published nodes carry.
Nodes come sorted by name (the caller sorts them), zones sorted.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from controller.objects import (
    EXCLUDE_LB_LABEL,
    TO_BE_DELETED_TAINT,
    ClusterSettings,
    EndpointSliceInfo,
    NodeInfo,
)
from portway.model import Node


class Eligibility(enum.Enum):
    """Why a node does (or does not) receive a Service's traffic."""

    ELIGIBLE = "eligible"
    NOT_READY = "not ready"
    UNSCHEDULABLE = "unschedulable"
    EXCLUDED = "excluded"
    DELETING = "deleting"
    NO_ADDRESS = "no address"
    NO_LOCAL_ENDPOINT = "no ready local endpoint"

    @property
    def published(self) -> bool:
        """In the record (a NotReady node as unavailable, see the module docstring)."""
        return self in (Eligibility.ELIGIBLE, Eligibility.NOT_READY)

    @property
    def serving(self) -> bool:
        """Published with ready=True: kube-proxy forwards what arrives on its NodePorts."""
        return self is Eligibility.ELIGIBLE


@dataclass(frozen=True, slots=True)
class NodeVerdict:
    """One node's verdict for one Service; `address` is the one that would be published."""

    node: str
    eligibility: Eligibility
    reason: str
    address: str = ""
    zone: str = ""
    local_endpoints: int = 0


@dataclass(frozen=True, slots=True)
class NodeAssessment:
    """The Service-independent half of a node's verdict, computed once per derivation."""

    info: NodeInfo
    blocked: NodeVerdict | None
    """Rules 1-2: the verdict for every Service when the node takes no traffic at all."""
    address: str
    no_local: NodeVerdict
    """The verdict for any Local Service without a usable endpoint here (shared)."""


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a Service's traffic may land: every node's verdict and the record's node list."""

    verdicts: tuple[NodeVerdict, ...]
    nodes: tuple[Node, ...]
    zones: tuple[str, ...]
    region: str
    summary: str


def assess_node(settings: ClusterSettings, n: NodeInfo) -> NodeAssessment:
    """Rules 1 and 2 for node `n`, and the address it would be published with."""
    address = preferred_address(settings, n)
    blocked: NodeVerdict | None = None
    if n.unschedulable:
        blocked = NodeVerdict(
            n.name, Eligibility.UNSCHEDULABLE, "cordoned (spec.unschedulable)", address, n.zone
        )
    elif EXCLUDE_LB_LABEL in n.labels:
        blocked = NodeVerdict(
            n.name, Eligibility.EXCLUDED, f"labelled {EXCLUDE_LB_LABEL}", address, n.zone
        )
    elif any(t.key == TO_BE_DELETED_TAINT for t in n.taints):
        blocked = NodeVerdict(
            n.name,
            Eligibility.DELETING,
            f"tainted {TO_BE_DELETED_TAINT}: the cluster autoscaler is removing it",
            address,
            n.zone,
        )
    elif not address:
        wanted = ", ".join(t.value for t in settings.address_preference)
        blocked = NodeVerdict(
            n.name, Eligibility.NO_ADDRESS, f"no IP address of type {wanted}", "", n.zone
        )
    no_local = NodeVerdict(
        n.name,
        Eligibility.NO_LOCAL_ENDPOINT,
        "externalTrafficPolicy Local and no ready, non-terminating endpoint on this node",
        address,
        n.zone,
    )
    return NodeAssessment(n, blocked, address, no_local)


def preferred_address(settings: ClusterSettings, node: NodeInfo) -> str:
    """The first address of the most preferred type present that parses as an IP, or ""."""
    for wanted in settings.address_preference:
        for a in node.addresses:
            if a.type is wanted and _is_ip(a.address):
                return a.address
    return ""


def node_verdicts(
    nodes: Iterable[NodeAssessment], *, local_policy: bool, local: Mapping[str, int]
) -> tuple[NodeVerdict, ...]:
    """Every node's verdict for one Service (rules 1-5); `local` is `count_endpoints`'s
    ready local endpoints per node, read under policy Local only."""
    out: list[NodeVerdict] = []
    for base in nodes:
        if base.blocked is not None:
            out.append(base.blocked)
            continue
        n = base.info
        count = local.get(n.name, 0)
        if local_policy and count == 0:
            out.append(base.no_local)
            continue
        published_count = count if local_policy else 0
        if not n.ready:
            out.append(
                NodeVerdict(
                    n.name,
                    Eligibility.NOT_READY,
                    "Ready condition is not True: published as unavailable",
                    base.address,
                    n.zone,
                    published_count,
                )
            )
            continue
        why = f"{count} ready local endpoint(s)" if local_policy else "Ready and schedulable"
        out.append(
            NodeVerdict(n.name, Eligibility.ELIGIBLE, why, base.address, n.zone, published_count)
        )
    return tuple(out)


def place(
    settings: ClusterSettings,
    nodes: Sequence[NodeAssessment],
    verdicts: tuple[NodeVerdict, ...],
) -> Placement:
    """The record's nodes, zones and region from the verdicts, and a one-line summary."""
    published = [v for v in verdicts if v.eligibility.published]
    unready = sum(v.eligibility is Eligibility.NOT_READY for v in published)
    record_nodes = tuple(
        Node(v.node, v.address, v.zone, v.eligibility is Eligibility.ELIGIBLE, v.local_endpoints)
        for v in published
    )
    return Placement(
        verdicts,
        record_nodes,
        tuple(sorted({v.zone for v in published if v.zone})),
        settings.region or _majority_region(nodes, published),
        f"{len(published)} node(s) published, {unready} of them NotReady"
        if unready
        else f"{len(published)} node(s) published",
    )


def count_endpoints(
    slices: Sequence[EndpointSliceInfo],
) -> tuple[int, int, dict[str, int]]:
    """(distinct endpoints, ready ones, ready non-terminating ones per node).

    FQDN slices are ignored as kube-proxy ignores them; an endpoint present in
    several slices (one per address family) counts once, ready if any copy is.
    """
    seen: dict[str, tuple[str | None, bool]] = {}
    for s in slices:
        if s.address_type == "FQDN":
            continue
        for e in s.endpoints:
            usable = e.ready and not e.terminating
            key = e.identity
            prev = seen.get(key)
            if prev is None or (usable and not prev[1]):
                seen[key] = (e.node_name, usable)
    local: dict[str, int] = {}
    ready = 0
    for node_name, usable in seen.values():
        if usable:
            ready += 1
            if node_name:
                local[node_name] = local.get(node_name, 0) + 1
    return len(seen), ready, local


def _majority_region(bases: Sequence[NodeAssessment], published: Sequence[NodeVerdict]) -> str:
    names = {v.node for v in published}
    counts = Counter(b.info.region for b in bases if b.info.name in names and b.info.region)
    if not counts:
        return ""
    return min(counts, key=lambda r: (-counts[r], r))


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True
