"""Registry records -> `Endpoint`s: the one per-endpoint loop of a compile.

Theory of operation. A registry backend (`service: {namespace, name, port,
clusters}`) becomes one endpoint per eligible node of each matching record:
the node's address and the record port's nodePort. Under
externalTrafficPolicy Local only nodes holding a ready local endpoint are
eligible (kube-proxy drops traffic on other nodes) and each endpoint weighs
its local endpoint count (capped at `MAX_ENDPOINT_WEIGHT`) and carries the
record's healthCheckNodePort, so each pod, not each node, gets an even
share; NotReady nodes are kept with `ready=False`. Static endpoints are taken
as written.

Records are read from a `RecordIndex` (`index_records`; kept current by
`gateway.routing.update.apply_record_changes`). One `ExpansionMemo` per
compile or update lets records naming the same nodes and NodePort share
their endpoints, and interned `Site`s are shared by every table. The
compiler (`gateway.routing.compiler`) and the incremental update both expand
through `registry_endpoints`; grouping endpoints into a backend is theirs.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from gateway.config.model import Backend
from gateway.routing.endpoints import NOWHERE, Endpoint, Site
from portway.bounded_memo import BoundedMemo
from portway.model import Node, ServiceRecord, TrafficPolicy

MAX_ENDPOINT_WEIGHT = 128

RecordIndex = dict[tuple[str, str], list[ServiceRecord]]
ExpansionKey = tuple[int, int, str, str, bool, int | None]


@dataclass(slots=True)
class ExpansionMemo:
    """What one compile or update expands once and shares.

    `endpoints`: per (nodes tuple, nodePort, cluster, region, policy, health check
    port): records that name the same nodes (the record decoder shares a cluster's
    node tuple) with the same NodePort give the same endpoints, built and held once.
    `sites`: per (nodes tuple, region), the `Site` of each node, looked up once per
    cluster rather than once per endpoint. The nodes tuple is kept in each value so
    its id cannot be reused while the memo lives.
    """

    endpoints: dict[ExpansionKey, tuple[object, tuple[Endpoint, ...]]] = field(default_factory=dict)
    sites: dict[tuple[int, str], tuple[object, tuple[Site, ...]]] = field(default_factory=dict)


_SITES_LIMIT = 1 << 16
_SITES: BoundedMemo[tuple[str, str, str], Site] = BoundedMemo(_SITES_LIMIT)


def site(region: str, zone: str, node: str) -> Site:
    """The one `Site` of these names (interned across compiles, so every table shares it).

    Bounded like the record decoder's node memo: past `_SITES_LIMIT` names (nodes
    replaced over a long life) it starts afresh, and tables built before keep theirs.
    """
    if not (region or zone or node):
        return NOWHERE
    key = (region, zone, node)
    found = _SITES.get(key)
    if found is None:
        found = _SITES.put(key, Site(region, zone, node))
    return found


def backend_records(backend: Backend, by_service: RecordIndex) -> tuple[ServiceRecord, ...]:
    """The records a backend is expanded from: its service's, as indexed (none if static)."""
    ref = backend.service
    if ref is None:
        return ()
    return tuple(by_service.get((ref.namespace, ref.name), ()))


def index_records(records: Iterable[ServiceRecord]) -> RecordIndex:
    """Records by (namespace, service), each list sorted by cluster; newest wins a duplicate key."""
    ordered = sorted(records, key=lambda r: (r.namespace, r.service, r.cluster, -r.published_at))
    out: RecordIndex = {}
    last: tuple[str, str, str] | None = None
    for r in ordered:
        key = (r.namespace, r.service, r.cluster)
        if key == last:
            continue
        last = key
        out.setdefault((r.namespace, r.service), []).append(r)
    return out


def registry_endpoints(
    backend: Backend, by_service: RecordIndex, memo: ExpansionMemo
) -> list[Endpoint]:
    """The backend's endpoints: static as written, or expanded from registry records;
    equal expansions share their endpoints through `memo` (one per compile or update)."""
    if backend.service is None:
        return [
            Endpoint(s.address, s.port, s.cluster, site(s.region, s.zone, ""), s.weight)
            for s in backend.endpoints
        ]
    ref = backend.service
    clusters = set(ref.clusters)
    out: list[Endpoint] = []
    for rec in by_service.get((ref.namespace, ref.name), ()):
        if clusters and rec.cluster not in clusters:
            continue
        port = rec.port(ref.port)
        if port is None:
            continue
        local = rec.external_traffic_policy is TrafficPolicy.LOCAL
        hc = rec.health_check_node_port if local else None
        key = (id(rec.nodes), port.node_port, rec.cluster, rec.region, local, hc)
        known = memo.endpoints.get(key)
        if known is None or known[0] is not rec.nodes:
            at = (id(rec.nodes), rec.region)
            sites = memo.sites.get(at)
            if sites is None or sites[0] is not rec.nodes:
                sites = memo.sites[at] = (rec.nodes, _sites(rec.nodes, rec.region))
            mine: list[Endpoint] = []
            _expand_record(rec, port.node_port, sites[1], mine)
            known = memo.endpoints[key] = (rec.nodes, tuple(mine))
        out += known[1]
    return out


def _sites(nodes: tuple[Node, ...], region: str) -> tuple[Site, ...]:
    return tuple(site(region, n.zone, n.name) for n in nodes)


_NEW = Endpoint.__new__
(
    _SET_ADDRESS,
    _SET_PORT,
    _SET_CLUSTER,
    _SET_SITE,
    _SET_WEIGHT,
    _SET_HC,
    _SET_KEY,
    _SET_READY,
) = (
    Endpoint.__dict__[f].__set__
    for f in (
        "address",
        "port",
        "cluster",
        "site",
        "weight",
        "health_check_port",
        "key",
        "ready",
    )
)


def _expand_record(
    rec: ServiceRecord, node_port: int, sites: tuple[Site, ...], out: list[Endpoint]
) -> None:
    """Append one endpoint per eligible node of `rec` (see module docstring); `sites` are
    the nodes' sites, in order.

    This loop runs once per endpoint of the whole registry, so it fills the
    frozen `Endpoint` slots directly through their descriptors: the generated
    frozen `__init__` costs about three times as much (compiled or not), which
    alone would eat the compile budget.
    """
    cluster = rec.cluster
    local = rec.external_traffic_policy is TrafficPolicy.LOCAL
    hc = rec.health_check_node_port if local else None
    suffix = f":{node_port}"
    prefix = cluster + "/"
    for n, where in zip(rec.nodes, sites, strict=True):
        weight = 1
        if local:
            if n.local_endpoints <= 0:
                continue
            weight = min(n.local_endpoints, MAX_ENDPOINT_WEIGHT)
        address = n.address
        e = _NEW(Endpoint)
        _SET_ADDRESS(e, address)
        _SET_PORT(e, node_port)
        _SET_CLUSTER(e, cluster)
        _SET_SITE(e, where)
        _SET_WEIGHT(e, weight)
        _SET_HC(e, hc)
        _SET_KEY(e, prefix + (f"[{address}]" if ":" in address else address) + suffix)
        _SET_READY(e, n.ready)
        out.append(e)
