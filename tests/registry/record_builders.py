"""The record the registry tests publish: one service and one node, its cluster and NodePort
chosen by the test."""

from __future__ import annotations

from portway.model import Node, ServicePort, ServiceRecord


def rec(cluster: str, node_port: int = 30080) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, node_port),),
        nodes=(Node("n1", "10.0.0.1"),),
    )
