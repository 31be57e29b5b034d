"""The controller's Prometheus metrics, one registry per controller instance.

Per instance (not the process-global default registry) so two controllers in
one test process, or one per emulated cluster, keep their own numbers.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class ControllerMetrics:
    """Every metric the controller exports, labelled like the gateway's."""

    def __init__(self, cluster: str) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.kube_up = Gauge(
            "portway_controller_kube_up",
            "1 while the Kubernetes apiserver answers every watch, 0 while any fails",
            registry=r,
        )
        self.leader = Gauge(
            "portway_controller_leader", "1 while this replica holds the Lease", registry=r
        )
        self.synced = Gauge(
            "portway_controller_synced", "1 once every watched kind has been listed", registry=r
        )
        self.records = Gauge(
            "portway_controller_records",
            "records this replica holds in the registry (written and renewed)",
            registry=r,
        )
        self.blocked = Gauge(
            "portway_controller_records_blocked",
            "records a writer of another identity holds (until its TTL runs out)",
            registry=r,
        )
        self.publishes = Counter(
            "portway_controller_publishes_total",
            "record writes by result (ok, owned, unavailable, error)",
            ["result"],
            registry=r,
        )
        self.withdrawals = Counter(
            "portway_controller_withdrawals_total", "records withdrawn", registry=r
        )
        self.derivations = Counter(
            "portway_controller_derivations_total", "whole-cluster derivations run", registry=r
        )
        self.derive_seconds = Histogram(
            "portway_controller_derive_seconds",
            "time to derive the whole cluster from the cache",
            buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.watch_events = Counter(
            "portway_controller_watch_events_total",
            "watch items received, by kind and type",
            ["kind", "type"],
            registry=r,
        )
        self.nodeport_violations = Gauge(
            "portway_controller_nodeport_violations",
            "Service ports left unpublished because their nodePort breaks a range",
            ["namespace", "service"],
            registry=r,
        )
        self.events = Counter(
            "portway_controller_events_total",
            "Kubernetes Events created, by reason and result",
            ["reason", "result"],
            registry=r,
        )
        self.info = Gauge(
            "portway_controller_info", "constant 1, labelled", ["cluster"], registry=r
        )
        self.info.labels(cluster=cluster).set(1)
