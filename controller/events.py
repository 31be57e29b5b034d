"""NodePort violations as Kubernetes Events on their Service, and as a metric.

Theory of operation: every derivation yields the violations of the whole
cluster (controller/nodeports.py: a nodePort outside the apiserver's range or
its tier's block, an undeclared tier, no nodePort at all). `ViolationReporter`
sets `portway_controller_nodeport_violations{namespace,service}` from them
on every replica, and, on the leader only, creates one core/v1 Event
(type Warning, reason `NodePortOutOfRange`) per violation when it first
appears, so `kubectl describe service` shows why a port is missing from the
registry. A violation that stays is not reported again; one that goes away
and comes back is. The Event is created in a worker thread (the client is
blocking); a failure is logged and counted, and tried again on the next
derivation.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import logging
from collections.abc import Iterable
from typing import Any

from controller.metrics import ControllerMetrics
from controller.nodeports import PortViolation

log = logging.getLogger(__name__)

REASON = "NodePortOutOfRange"
COMPONENT = "portway-controller"
EVENT_API_CALLS = (("", "events", "create"),)
"""The Event calls the reporter makes (RBAC grants exactly these)."""


def event_body(
    violation: PortViolation, *, instance: str, now: datetime.datetime
) -> dict[str, Any]:
    """The core/v1 Event for one violation, named uniquely like kubectl's."""
    namespace, name = violation.service.split("/", 1)
    digest = hashlib.sha1(
        f"{violation.port}|{violation.node_port}|{violation.reason}|{now.timestamp()}".encode()
    ).hexdigest()[:10]
    stamp = now.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{name}.{digest}", "namespace": namespace},
        "involvedObject": {
            "apiVersion": "v1",
            "kind": "Service",
            "namespace": namespace,
            "name": name,
        },
        "reason": REASON,
        "message": f"port {violation.port} not published: {violation.reason}",
        "type": "Warning",
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": instance,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
    }


class EventApi:
    """The one Event call over the official client (blocking)."""

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self._api: Any = client.CoreV1Api(api_client)  # a raw dict body

    def create(self, body: dict[str, Any]) -> None:
        self._api.create_namespaced_event(
            body["metadata"]["namespace"], body, _preload_content=False, _request_timeout=5
        )


class ViolationReporter:
    """Violations -> metric (always) and Events (when `emit`), each new one once."""

    def __init__(self, api: EventApi | None, metrics: ControllerMetrics, *, instance: str) -> None:
        self.api = api
        self.metrics = metrics
        self.instance = instance
        self._reported: set[PortViolation] = set()
        self._gauged: set[tuple[str, str]] = set()

    async def report(self, violations: Iterable[PortViolation], *, emit: bool) -> None:
        current = set(violations)
        self._gauge(current)
        if not emit or self.api is None:
            return
        self._reported &= current
        for violation in sorted(current - self._reported, key=lambda v: (v.service, v.port)):
            body = event_body(
                violation, instance=self.instance, now=datetime.datetime.now(datetime.UTC)
            )
            try:
                await asyncio.to_thread(self.api.create, body)
            except Exception as exc:
                self.metrics.events.labels(reason=REASON, result="error").inc()
                log.warning(
                    "cannot create Event", extra={"service": violation.service, "error": str(exc)}
                )
                continue
            self._reported.add(violation)
            self.metrics.events.labels(reason=REASON, result="ok").inc()
            log.warning(
                "nodePort violation",
                extra={
                    "service": violation.service,
                    "port": violation.port,
                    "node_port": violation.node_port,
                    "reason": violation.reason,
                },
            )

    def _gauge(self, current: set[PortViolation]) -> None:
        counts: dict[tuple[str, str], int] = {}
        for v in current:
            namespace, name = v.service.split("/", 1)
            counts[(namespace, name)] = counts.get((namespace, name), 0) + 1
        for labels in self._gauged - counts.keys():
            self.metrics.nodeport_violations.remove(*labels)
        for (namespace, name), count in counts.items():
            self.metrics.nodeport_violations.labels(namespace=namespace, service=name).set(count)
        self._gauged = set(counts)
