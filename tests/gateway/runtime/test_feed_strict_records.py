"""The gateway's feed skips a record with a key the format does not have: logged once, counted."""

from __future__ import annotations

import asyncio
import json
import logging
import time

import pytest
from prometheus_client import CollectorRegistry

from gateway.runtime.feed import EndpointFeed
from portway.model import Node, ServicePort, ServiceRecord
from portway.registry.memory import MemoryRegistry, MemoryStore

pytestmark = pytest.mark.timeout(30)


async def test_a_record_with_a_typo_is_skipped_logged_with_key_and_counted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = MemoryStore()
    seen: list[set[str]] = []
    metrics = CollectorRegistry()
    feed = EndpointFeed(
        MemoryRegistry(store),
        lambda records, status: seen.append({k.path() for k in records}),
        debounce_s=0.01,
        metrics_registry=metrics,
    )
    caplog.set_level(logging.WARNING)
    feed.start()
    await asyncio.wait_for(feed.synced.wait(), 5)
    good = ServiceRecord(
        cluster="a",
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, 30080),),
        nodes=(Node("n1", "10.0.0.1"),),
    )
    typo = good.to_dict() | {"cluster": "b"}
    typo["nodes"][0]["raedy"] = typo["nodes"][0].pop("ready")
    bad_key = "portway/v1/services/shop/web/b"
    store.put_raw(bad_key, json.dumps(typo))
    await MemoryRegistry(store).publish(good)
    deadline = time.monotonic() + 5
    while not (seen and seen[-1] == {good.key.path()}):
        assert time.monotonic() < deadline, seen
        await asyncio.sleep(0.01)
    await feed.stop()
    logged = [r for r in caplog.records if r.getMessage() == "skipping bad registry record"]
    assert len(logged) == 1
    assert logged[0].key == bad_key
    assert logged[0].error == (
        "nodes[0].raedy: unknown key 'raedy'; did you mean 'ready'? "
        "(allowed keys: name, address, zone, ready, localEndpoints)"
    )
    assert (
        metrics.get_sample_value("portway_registry_bad_records_total", {"backend": "memory"}) == 1
    )
