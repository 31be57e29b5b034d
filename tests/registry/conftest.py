"""Servers the registry tests share: one etcd member and one Consul emulator per session."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from consul_emulator import ConsulEmulator
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


@pytest.fixture(scope="session")
def consul_emulator() -> Iterator[ConsulEmulator]:
    emulator = ConsulEmulator().start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def consul_emulator_addr(consul_emulator: ConsulEmulator) -> str:
    return consul_emulator.address
