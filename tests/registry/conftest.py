"""Servers the registry tests share: one etcd member and one Consul emulator per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from etcd_server import EtcdCluster


@pytest.fixture(scope="session")
def etcd_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdCluster]:
    cluster = EtcdCluster(Path(tmp_path_factory.mktemp("etcd")), size=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(scope="session")
def etcd_endpoints(etcd_cluster: EtcdCluster) -> list[str]:
    return etcd_cluster.endpoints
