"""The admin API at fleet size: constant-time probes, paged endpoints, bounded metrics."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from pydantic import TypeAdapter

from gateway.config.model import GatewayConfig
from gateway.ops.admin import start_admin
from gateway.ops.backend_health import (
    BackendCounter,
    backend_counts,
    backend_exposition,
    key_place,
    unavailable_keys,
)
from gateway.ops.metrics import MetricsSnapshot, RequestStats, merge, render
from gateway.routing.compiler import compile_table
from gateway.routing.endpoints import EndpointState
from gateway.runtime.reload import Reloader
from portway.model import Node, ServicePort, ServiceRecord


def record(cluster: str, addresses: list[str], not_ready: tuple[str, ...] = ()) -> ServiceRecord:
    return ServiceRecord(
        cluster=cluster,
        namespace="shop",
        service="web",
        ports=(ServicePort("http", 80, 30080),),
        nodes=tuple(Node(f"n{i}", a, ready=a not in not_ready) for i, a in enumerate(addresses)),
    )


BACKENDS = 7
CONFIG = (
    "version: 1\nlisteners:\n  - {name: web, protocol: HTTP, port: 18080}\nroutes:\n"
    + "".join(
        f"  - name: r{i}\n    hostnames: [s{i}.example.com]\n    rules:\n"
        f"      - backendRefs: [{{name: b{i}}}]\n"
        for i in range(BACKENDS)
    )
    + "backends:\n"
    + "".join(
        f"  - name: b{i}\n    endpoints:\n      - {{address: 127.0.0.1, port: {30000 + i}}}\n"
        for i in range(BACKENDS)
    )
)


class ProbeSource:
    """A single worker whose reports are counted (a readiness probe must not ask for any)."""

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.needs_registry = False
        self.expected_workers = 1
        self.draining = False
        self.report_calls = 0

    async def reports(self, **_options: bool) -> list[dict[str, Any]]:
        self.report_calls += 1
        snap = MetricsSnapshot.capture(RequestStats())
        return [{"metrics": snap.to_json(), "endpoints": {}}]

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        return None


@pytest.fixture
async def admin(tmp_path: Path, unused_tcp_port: int) -> AsyncIterator[tuple[str, ProbeSource]]:
    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    reloader = Reloader(path, lambda t, a: None)
    await reloader.load_initial()
    source = ProbeSource(reloader)
    runner = await start_admin(source, "127.0.0.1", unused_tcp_port)
    try:
        yield f"http://127.0.0.1:{unused_tcp_port}", source
    finally:
        await runner.cleanup()


async def _json(url: str) -> tuple[int, Any]:
    async with aiohttp.ClientSession() as s, s.get(url) as r:
        return r.status, await r.json()


async def test_a_readiness_probe_of_a_single_process_asks_no_worker_report(
    admin: tuple[str, ProbeSource],
) -> None:
    base, source = admin
    status, body = await _json(base + "/readyz")
    assert status == 200 and body["ready"]
    assert source.report_calls == 0


async def test_endpoints_are_paged_by_backend_name(admin: tuple[str, ProbeSource]) -> None:
    base, _ = admin
    seen: list[str] = []
    cursor = ""
    for _ in range(BACKENDS):
        query = f"?limit=3&after={cursor}" if cursor else "?limit=3"
        status, body = await _json(base + "/endpoints" + query)
        assert status == 200 and len(body["backends"]) <= 3
        seen += list(body["backends"])
        cursor = body["next"]
        if cursor is None:
            break
    assert seen == sorted(f"b{i}" for i in range(BACKENDS))
    status, body = await _json(base + "/endpoints?limit=0")
    assert status == 400


def test_availability_is_counted_per_backend_and_cluster() -> None:
    doc = {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}]}],
        "backends": [
            {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}}
        ],
    }
    records = [
        record("a", ["10.0.0.1", "10.0.0.2"], not_ready=("10.0.0.2",)),
        record("b", ["10.1.0.1", "10.1.0.2"]),
    ]
    table = compile_table(TypeAdapter(GatewayConfig).validate_python(doc), records)
    state = EndpointState()
    assert backend_counts(table.backends, unavailable_keys(state)) == {
        ("web", "a"): (1, 2),
        ("web", "b"): (2, 2),
    }
    state.set_unhealthy("b/10.1.0.2:30080", True)
    state.set_draining("a/10.0.0.2:30080", True)  # NotReady already: not counted twice
    counts = backend_counts(table.backends, unavailable_keys(state))
    assert counts == {("web", "a"): (1, 2), ("web", "b"): (1, 2)}
    one = MetricsSnapshot.capture(RequestStats(), backend_endpoints=counts)
    other = MetricsSnapshot.capture(
        RequestStats(), backend_endpoints={("web", "a"): (0, 2), ("web", "b"): (2, 2)}
    )
    total = merge([MetricsSnapshot.from_json(one.to_json()), other])
    assert total.backend_endpoints == {("web", "a"): (0, 2), ("web", "b"): (1, 2)}
    families = {f.name: f for f in text_string_to_metric_families(render(total).decode())}
    samples = {
        (s.name, s.labels["backend"], s.labels["cluster"]): s.value
        for name in ("portway_backend_endpoints", "portway_backend_endpoints_available")
        for s in families[name].samples
    }
    assert samples[("portway_backend_endpoints_available", "web", "a")] == 0
    assert samples[("portway_backend_endpoints", "web", "b")] == 2
    assert not list(families["portway_endpoint_health"].samples), "per endpoint: opt-in only"


def test_a_counter_recounts_only_what_an_update_or_an_ejection_touched() -> None:
    doc = {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
        "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}]}],
        "backends": [
            {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}},
            {"name": "api", "service": {"namespace": "shop", "name": "api", "port": "http"}},
        ],
    }
    from gateway.routing.expansion import index_records
    from gateway.routing.update import apply_record_changes, update_table

    web = record("a", ["10.0.0.1"])
    api = ServiceRecord(
        cluster="a",
        namespace="shop",
        service="api",
        ports=(ServicePort("http", 80, 30081),),
        nodes=(Node("n0", "10.0.0.2"),),
    )
    index = index_records([web, api])
    first = compile_table(TypeAdapter(GatewayConfig).validate_python(doc), [web, api])
    counter = BackendCounter()
    assert counter.count(first.backends, frozenset()) == {
        ("web", "a"): (1, 1),
        ("api", "a"): (1, 1),
    }
    assert counter._where is None, "nothing unavailable yet: no index of places"
    moved = record("a", ["10.0.0.3", "10.0.0.4"])
    second = update_table(
        first, index, apply_record_changes(index, {moved.key: moved}), version="2"
    )
    assert second.backends["api"] is first.backends["api"]
    assert counter.count(second.backends, frozenset()) == {
        ("web", "a"): (2, 2),
        ("api", "a"): (1, 1),
    }
    down = frozenset({"a/10.0.0.3:30080"})
    assert counter.count(second.backends, down) == {("web", "a"): (1, 2), ("api", "a"): (1, 1)}
    assert second.backends["api"]._cache.by_key is None, "api holds no such key: never looked up"
    assert counter.count(second.backends, frozenset()) == {
        ("web", "a"): (2, 2),
        ("api", "a"): (1, 1),
    }


def test_an_endpoint_key_names_its_cluster_and_port() -> None:
    assert key_place("east/10.0.0.1:30080") == ("east", 30080)
    assert key_place("east/[2001:db8::1]:30080") == ("east", 30080)
    assert key_place("nonsense") is None


def test_a_counter_renders_what_its_counts_render() -> None:
    doc = {
        "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
        "routes": [
            {"name": "r", "rules": [{"backendRefs": [{"name": "web"}, {"name": "static-1"}]}]}
        ],
        "backends": [
            {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}},
            {
                "name": "static-1",
                "endpoints": [{"address": "127.0.0.1", "port": 1, "cluster": "z"}],
            },
        ],
    }
    records = [record("b", ["10.1.0.1", "10.1.0.2"]), record("a", ["10.0.0.1"])]
    table = compile_table(TypeAdapter(GatewayConfig).validate_python(doc), records)
    counter = BackendCounter()
    for down in (frozenset(), frozenset({"b/10.1.0.2:30080"})):
        text = counter.exposition(table.backends, down).encode()
        assert text == backend_exposition(counter.count(table.backends, down))
        assert text == backend_exposition(backend_counts(table.backends, down))
    assert b'portway_backend_endpoints_available{backend="web",cluster="b"} 1\n' in text


def test_the_availability_exposition_is_exactly_this_text() -> None:
    counts = {
        ("web", "b"): (1, 2),
        ("web", "a"): (0, 3),
        ('say "hi"\\', "line\nbreak"): (4, 4),
    }
    assert backend_exposition(counts) == (
        b"# HELP portway_backend_endpoints Endpoints of each backend in each cluster.\n"
        b"# TYPE portway_backend_endpoints gauge\n"
        b'portway_backend_endpoints{backend="say \\"hi\\"\\\\",cluster="line\\nbreak"} 4\n'
        b'portway_backend_endpoints{backend="web",cluster="a"} 3\n'
        b'portway_backend_endpoints{backend="web",cluster="b"} 2\n'
        b"# HELP portway_backend_endpoints_available Endpoints that may take traffic"
        b" (ready, healthy, not ejected or drained).\n"
        b"# TYPE portway_backend_endpoints_available gauge\n"
        b'portway_backend_endpoints_available{backend="say \\"hi\\"\\\\",'
        b'cluster="line\\nbreak"} 4\n'
        b'portway_backend_endpoints_available{backend="web",cluster="a"} 0\n'
        b'portway_backend_endpoints_available{backend="web",cluster="b"} 1\n'
    )
    assert backend_exposition({}) == (
        b"# HELP portway_backend_endpoints Endpoints of each backend in each cluster.\n"
        b"# TYPE portway_backend_endpoints gauge\n"
        b"# HELP portway_backend_endpoints_available Endpoints that may take traffic"
        b" (ready, healthy, not ejected or drained).\n"
        b"# TYPE portway_backend_endpoints_available gauge\n"
    )


def test_what_a_counter_keeps_is_not_walked_by_full_collections() -> None:
    import gc

    table = compile_table(
        TypeAdapter(GatewayConfig).validate_python(
            {
                "listeners": [{"name": "web", "protocol": "HTTP", "port": 8080}],
                "routes": [{"name": "r", "rules": [{"backendRefs": [{"name": "web"}]}]}],
                "backends": [
                    {"name": "web", "service": {"namespace": "shop", "name": "web", "port": "http"}}
                ],
            }
        ),
        [record("a", ["10.0.0.1", "10.0.0.2"])],
    )
    counter = BackendCounter()
    counter.count(table.backends, frozenset({"a/10.0.0.1:30080"}))
    gc.collect()
    gc.collect()  # a tuple is let go once what it holds is: nested ones take two passes
    kept = [*counter._seen.values(), *counter._places.values(), *counter._where.values()]
    assert kept and not any(gc.is_tracked(v) for v in kept)


def test_a_lone_process_s_rendered_availability_is_what_metrics_shows() -> None:
    text = 'portway_backend_endpoints{backend="web",cluster="a"} 2\n'
    lone = MetricsSnapshot.capture(RequestStats())
    lone.backend_endpoints_text = text
    total = merge([MetricsSnapshot.from_json(lone.to_json())])
    assert render(total).endswith(text.encode())
    two = merge([lone, MetricsSnapshot.capture(RequestStats())])
    assert two.backend_endpoints_text is None  # workers' counts are merged from rows


class _Table:
    """A table whose equality must never be asked: it compares whole descriptions."""

    def __init__(self, backends: Any) -> None:
        self.backends = backends

    def __eq__(self, other: object) -> bool:
        raise AssertionError("a routing table compared by value on the scrape path")

    __hash__ = object.__hash__


async def test_a_scrape_recounts_a_new_table_without_comparing_tables(tmp_path: Path) -> None:
    import types

    from gateway.runtime.process import ServerOptions
    from gateway.runtime.server import Worker

    path = tmp_path / "gw.yaml"
    path.write_text(CONFIG)
    worker = Worker(ServerOptions(config_path=str(path)), serve_admin=True)
    await worker.reloader.load_initial()
    backends = worker.reloader.table.backends
    worker.ctx = types.SimpleNamespace(  # type: ignore[assignment]
        table=_Table(backends),
        state=EndpointState(),
        pools=None,
        connections=(),
        config_version="1",
        breakers=types.SimpleNamespace(overflows={}),
    )
    for table in (worker.ctx.table, _Table(backends)):
        worker.ctx.table = table
        for rendered in (True, False):
            (report,) = await worker.reports(rendered=rendered)
            metrics = report["metrics"]
            assert ("backend_endpoints_text" in metrics) is rendered
            assert metrics["backend_endpoints"] or rendered
