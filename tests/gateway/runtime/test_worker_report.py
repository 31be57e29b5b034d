"""One worker's report: counters, endpoint state, pools and mirrors, as its readers sum them."""

from __future__ import annotations

from types import SimpleNamespace

from gateway.config.model import GatewaySettings
from gateway.context import GatewayContext, RequestLog
from gateway.http.filters.mirror import MIRRORS
from gateway.ops.observer import GatewayObserver
from gateway.runtime.worker_report import WorkerReports, pool_connections


def worker(*, started: bool = True) -> SimpleNamespace:
    """What a report reads of a worker (`ReportedWorker`), before or after it started."""
    ctx = GatewayContext(table=None, settings=GatewaySettings()) if started else None
    return SimpleNamespace(ctx=ctx, health=None, observer=GatewayObserver(), server_tls={})


def test_pool_connections_splits_idle_and_active() -> None:
    """Idle counts the event loop's idle connections and the native lane's
    (`PoolSet.idle_count`); the rest of each pool's total is active."""
    native_idle = {"a": 1, "b": 0}
    pools = SimpleNamespace(
        pools={
            "a": SimpleNamespace(key="a", idle=[1, 2], total=5),
            "b": SimpleNamespace(key="b", idle=[], total=1),
        },
        idle_count=lambda pool: len(pool.idle) + native_idle[pool.key],
    )
    assert pool_connections(pools) == {"idle": 3, "active": 3}  # type: ignore[arg-type]
    assert pool_connections(None) == {"idle": 0, "active": 0}


async def test_report_carries_metrics_and_endpoint_state() -> None:
    w = worker()
    w.ctx.state.set_unhealthy("c/1.2.3.4:5", True)
    log = RequestLog(route_name="r", backend_name="api", upstream_cluster="c", response_code=200)
    w.observer.end(w.observer.begin(log, {}), log)
    report = await WorkerReports(w).full()
    assert report["endpoints"]["unhealthy"] == ["c/1.2.3.4:5"]
    assert report["metrics"]["requests"] == [["r", "api", "c", 200, 1]]


async def test_a_worker_not_started_yet_reports_nothing_out_of_rotation() -> None:
    report = await WorkerReports(worker(started=False)).full()
    assert report["config_version"] == ""
    assert report["endpoints"] == {
        "unhealthy": [],
        "ejected": [],
        "draining": [],
        "in_flight": {},
        "reasons": {},
    }
    assert not report["metrics"]["backend_endpoints"]


async def test_report_carries_the_mirror_counts() -> None:
    counts = MIRRORS.counts_for("report-test/0", "shadow")
    counts.dropped += 1
    report = await WorkerReports(worker()).full()
    rows = {tuple(row[:3]): row[3] for row in report["metrics"]["mirrors"]}
    assert rows[("report-test/0", "shadow", "dropped")] == counts.dropped
    assert rows[("report-test/0", "shadow", "sent")] == counts.sent
