"""Tables built for the reloader: where the work runs, and when an update may not be trusted."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from gateway.config.loader import load_config_text
from gateway.runtime import table_builder
from gateway.runtime.table_builder import TableBuilder, count_endpoints
from portway.model import Node, ServicePort, ServiceRecord

CONFIG = """\
version: 1
listeners:
  - {name: web, protocol: HTTP, port: 18080}
routes:
  - name: shop
    rules:
      - backendRefs: [{name: shop}]
backends:
  - name: shop
    service: {namespace: shop, name: web, port: http}
"""


def record(cluster: str, *addresses: str) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, 30080),),
        nodes=tuple(Node(f"n{i}", a) for i, a in enumerate(addresses)),
    )


def test_endpoints_are_counted_as_nodes_times_ports() -> None:
    two_ports = SimpleNamespace(nodes=(1, 2, 3), ports=(1, 2))
    no_port = SimpleNamespace(nodes=(1, 2), ports=())
    assert count_endpoints([two_ports, no_port]) == 6 + 2


async def test_a_small_compile_runs_on_the_loop_and_a_big_one_in_a_thread() -> None:
    threads: list[int] = []

    def compile_fn(config: Any, records: Any, *, version: str, seed: int) -> str:
        threads.append(threading.get_ident())
        return version

    builder = TableBuilder(compile_fn=compile_fn, executor_endpoints=2)
    config = load_config_text(CONFIG)
    small = {r.key: r for r in [record("a", "10.0.0.1", "10.0.0.2")]}
    big = {r.key: r for r in [record("a", "10.0.0.1", "10.0.0.2", "10.0.0.3")]}
    assert await builder.compile(config, small, tag="v.1") == "v.1"
    assert await builder.compile(config, big, tag="v.2") == "v.2"
    assert threads[0] == threading.get_ident()
    assert threads[1] != threading.get_ident()


async def test_an_update_that_failed_half_way_is_not_built_on(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    builder = TableBuilder()
    config = load_config_text(CONFIG)
    a = record("a", "10.0.0.1")
    table = await builder.compile(config, {a.key: a}, tag="v.1")
    assert builder.can_update
    moved = record("a", "10.0.0.9")
    table, whole = await builder.update(table, config, {moved.key: moved}, tag="v.2")
    assert not whole
    assert [e.address for e in table.backends["shop"].endpoints] == ["10.0.0.9"]

    def broken(*args: Any, **kw: Any) -> Any:
        raise RuntimeError("half way")

    monkeypatch.setattr(table_builder, "update_table", broken)
    with pytest.raises(RuntimeError):
        await builder.update(table, config, {a.key: a}, tag="v.3")
    assert not builder.can_update, "the index took changes the table never got"
    monkeypatch.undo()
    await builder.compile(config, {a.key: a}, tag="v.4")
    assert builder.can_update


async def test_a_whole_compile_keeps_the_backends_of_the_last_table_it_built() -> None:
    """A config reload or rollout step holds one copy of the endpoints, not two."""
    builder = TableBuilder()
    a, b = record("a", "10.0.0.1"), record("b", "10.0.1.1")
    records = {a.key: a, b.key: b}
    first = await builder.compile(load_config_text(CONFIG), records, tag="v.1")
    reloaded = await builder.compile(load_config_text(CONFIG), records, tag="v.2")
    assert reloaded.backends["shop"] is first.backends["shop"]
    moved = record("a", "10.0.0.9")
    updated, _ = await builder.update(
        reloaded, load_config_text(CONFIG), {moved.key: moved}, tag="v.3"
    )
    again = await builder.compile(load_config_text(CONFIG), {moved.key: moved, b.key: b}, tag="v.4")
    assert again.backends["shop"] is updated.backends["shop"]
    assert [e.address for e in again.backends["shop"].endpoints] == ["10.0.0.9", "10.0.1.1"]
    other = record("b", "10.0.1.2")
    last = await builder.compile(
        load_config_text(CONFIG), {moved.key: moved, other.key: other}, tag="v.5"
    )
    assert last.backends["shop"] is not again.backends["shop"]
