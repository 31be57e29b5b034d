"""The supervisor's shared rate limit table: sized from the first config, a bigger ask on
reload is said, not silently absorbed."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from pydantic import TypeAdapter

from gateway.config.active import ActiveConfig
from gateway.config.model import GatewayConfig
from gateway.http.filters.shared_buckets import MIN_SLOTS, SharedBucketTable, table_slots
from gateway.runtime.process import ServerOptions
from gateway.runtime.supervisor import Supervisor


def config(max_keys: int) -> GatewayConfig:
    rule = {"backendRefs": [{"name": "b"}], "rateLimit": {"requests": 5, "maxKeys": max_keys}}
    return TypeAdapter(GatewayConfig).validate_python(
        {
            "version": 1,
            "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
            "routes": [{"name": "r", "rules": [rule]}],
            "backends": [{"name": "b", "endpoints": [{"address": "127.0.0.1", "port": 1}]}],
        }
    )


def active(cfg: GatewayConfig) -> ActiveConfig:
    return ActiveConfig(cfg, "v", "gw.yaml", 0.0, 1)


def test_a_reload_needing_a_bigger_shared_table_is_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    supervisor = Supervisor(ServerOptions(str(tmp_path / "gw.yaml"), workers=2))
    first = config(1000)
    supervisor.rate_limits = SharedBucketTable.create(table_slots(first), 2)
    assert supervisor.rate_limits.slots == MIN_SLOTS
    caplog.set_level(logging.WARNING)
    supervisor._swapped(None, active(first))
    assert not caplog.records
    bigger = config(MIN_SLOTS)  # needs 2 x MIN_SLOTS slots
    supervisor._swapped(None, active(bigger))
    supervisor._swapped(None, active(bigger))  # a registry update: the same config again
    [record] = caplog.records
    assert "restart to grow it" in record.getMessage()
    assert (record.slots, record.wanted) == (MIN_SLOTS, 2 * MIN_SLOTS)  # type: ignore[attr-defined]
