"""The gateway process runtime: one worker's event loop, and the multi-worker supervisor.

`Worker` is what serves traffic: it loads the config (`Reloader`), builds the
`GatewayContext` (table, endpoint state, observer, upstream pools), follows the
registry (`EndpointFeed` → `Reloader.on_changes`), starts one server per
listener with SO_REUSEPORT, and applies listener changes on reload (listeners
added, removed or changed are started/stopped). The `admin`, `telemetry` and
`registry` sections are read at startup: a reload that changes them logs a
warning that a restart is needed. SIGHUP reloads. SIGTERM/SIGINT drain: stop
accepting, set `ctx.draining`, close idle keep-alive client connections (and
each busy one as soon as its response is done: `HttpProxy.close_idle`, swept
every 20 ms), wait for in-flight requests up to the drain deadline, then
flush the access log and traces and exit. Open TCP/TLS passthrough
connections (`ctx.tunnels`) are waited for like requests and cut at the deadline.

`Supervisor` (`gateway.runtime.supervisor`) runs when `--workers N` > 1: it
spawns N `portway gateway --worker` processes (fresh interpreters, no fork of a running loop), each
given one end of a socketpair as its control channel, restarts a worker that
dies, forwards SIGHUP and SIGTERM, and serves the admin API itself. Metrics
design: the supervisor asks every worker for a JSON report over the control
channel at scrape time and sums them (`gateway.ops.metrics.merge`); workers keep
plain counters, so nothing on the request path knows about processes, and
there is no shared directory of mmapped files to clean up after a crash
(prometheus_client's multiprocess mode), at the price of one round trip per
worker per scrape. The admin API is served by exactly one process, so its
answers do not depend on which worker a connection lands on.

Control protocol: newline-delimited JSON. Supervisor → worker:
`{"op": "report", "id": N}` (answered by one report line carrying the same
`id`, so a late answer to a timed-out request is recognised and skipped) and
`{"op": "drain_endpoint", "key": K, "draining": bool}`. A worker whose control
channel closes (the supervisor died) drains and exits.

Rate limits of `scope: shared` live in a table of shared memory the
supervisor creates and hands to every worker as a second descriptor
(`--rate-limit-fd`, with `--worker-index` naming the worker's count in it;
`gateway.http.filters.shared_buckets`).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import compiled
from gateway.config.model import GatewayConfig, Listener
from gateway.config.ports import socket_groups
from gateway.context import GatewayContext, Tunnel
from gateway.http.filters.auth import refresh_jwks
from gateway.http.filters.mirror import MIRRORS
from gateway.http.filters.shared_buckets import attach as attach_shared_buckets
from gateway.http.plan import build_plan
from gateway.ops.accesslog import AccessLog
from gateway.ops.admin import start_admin
from gateway.ops.backend_health import BackendCounter, unavailable_keys
from gateway.ops.metrics import MetricsSnapshot
from gateway.ops.observer import GatewayObserver
from gateway.rollout.metrics import RolloutCollector
from gateway.rollout.runner import RolloutRunner
from gateway.rollout.window import Counters
from gateway.runtime.file_watch import watch_config_file
from gateway.runtime.reload import ActiveConfig, Reloader
from portway.telemetry import setup_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.routing.table import RoutingTable
    from gateway.runtime.feed import EndpointFeed
    from gateway.runtime.tls import ServerTls
    from gateway.upstream.health_driver import HealthDriver
    from gateway.upstream.pool import PoolSet

BackendCounts = dict[tuple[str, str], tuple[int, int]]
"""(available, total) endpoints per (backend, cluster), as the metrics report them."""

log = logging.getLogger("portway.gateway.runtime.server")

DRAIN_GRACE_S = 0.1
TLS_POLL_S = 1.0
"""How often certificate and key files are checked for a change."""


def file_stamp(name: str) -> tuple[int, int, int] | None:
    """What tells a replaced file from the one read before; None when it is missing."""
    try:
        st = os.stat(name)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@dataclass(frozen=True, slots=True)
class ServerOptions:
    """Command-line knobs of `portway gateway`."""

    config_path: str
    workers: int = 1
    drain_timeout_s: float = 30.0
    admin_port: int | None = None
    control_fd: int | None = None
    rate_limit_fd: int | None = None
    """A worker's descriptor of the supervisor's shared rate limit table
    (`http.filters.shared_buckets`), mapped before the first table is compiled."""
    worker_index: int = 0
    """Which of the supervisor's workers this is (its count in that table)."""


def needs_registry(config: GatewayConfig) -> bool:
    """Whether any backend takes endpoints from the registry."""
    return any(backend.service is not None for backend in config.backends)


def pool_connections(pools: PoolSet | None) -> dict[str, int]:
    """Upstream pool connections by state (idle / active) from `ctx.pools`."""
    idle = active = 0
    for pool in pools.pools.values() if pools is not None else ():
        n_idle = len(pool.idle)
        idle += n_idle
        active += max(0, pool.total - n_idle)
    return {"idle": idle, "active": active}


class RegistryFollower:
    """Runs the registry feed for a config (none when no backend uses the registry).

    A relative `registry.path` is relative to the working directory, as for
    every other `portway` verb.
    """

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.feed: EndpointFeed | None = None

    async def start(self, config: GatewayConfig) -> None:
        if not needs_registry(config):
            return
        from gateway.runtime.feed import EndpointFeed
        from portway.registry.backends import open_registry, root_from_prefix

        settings = config.registry
        registry = open_registry(
            settings.type,
            path=settings.path,
            endpoints=settings.endpoints,
            root=root_from_prefix(settings.prefix),
        )
        feed = EndpointFeed(registry, self.reloader.on_changes, debounce_s=settings.debounce_s)
        feed.start()
        self.feed = feed

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
            with contextlib.suppress(Exception):
                await self.feed.registry.close()


class Worker:
    """One event loop serving the listeners; also the admin source when it is alone."""

    def __init__(self, options: ServerOptions, *, serve_admin: bool) -> None:
        self.options = options
        self.serve_admin = serve_admin
        self.reloader = Reloader(
            options.config_path, self._swap, plan_rule=build_plan, announce=serve_admin
        )
        self.needs_registry = False
        self.expected_workers = 1
        self.ctx: GatewayContext | None = None
        self.health: HealthDriver | None = None
        """Probes and the outlier sweep, once started."""
        self.observer = GatewayObserver()
        self.servers: dict[str, tuple[tuple[Listener, ...], asyncio.AbstractServer]] = {}
        """One server per socket (`config.ports.socket_groups`): by listener name, or by
        `address:port` for listeners sharing one, with the listeners it serves."""
        self.server_tls: dict[str, ServerTls] = {}
        """HTTPS listeners' TLS by listener name: reloaded when their files change or
        on SIGHUP, read by the admin API and the expiry metric."""
        self._listener_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._tracer_provider: TracerProvider | None = None
        self._admin: web.AppRunner | None = None
        self._follower = RegistryFollower(self.reloader)
        self.rollouts = RolloutRunner(
            self.reloader, measure=self._rollout_counters if serve_admin else None
        )
        """Follows the rollouts' stored weights; drives them when this process is alone."""
        self._counts_memo: tuple[tuple[RoutingTable | None, int], list[list[Any]] | None] = (
            (None, -1),
            None,
        )
        self._text_memo: tuple[tuple[RoutingTable | None, int], str | None] = ((None, -1), None)
        self._counting = asyncio.Lock()
        self._warming: asyncio.Task[None] | None = None
        self._counter = BackendCounter()
        self._started_with: GatewayConfig | None = None

    # ---- admin source ------------------------------------------------------

    def report(
        self,
        *,
        backend_endpoints: BackendCounts | None = None,
        backend_endpoints_json: list[list[Any]] | None = None,
        per_endpoint: bool = False,
    ) -> dict[str, Any]:
        """This worker's counters and endpoint state; see `full_report` for the health part.

        `backend_endpoints_json` is the counts already in their JSON form (made
        in a thread by `full_report`: 20,000 pairs at 10,000 services), taken
        as they are instead of being converted here, on the event loop.

        `per_endpoint` adds one health value per endpoint (`/metrics?endpoints=1`):
        a walk of the whole table, so it is only done when asked.
        """
        now = time.time()
        ctx = self.ctx
        state = ctx.state if ctx is not None else None
        snap = MetricsSnapshot.capture(
            self.observer.stats,
            pool_connections=pool_connections(ctx.pools if ctx else None),
            endpoint_health=self._endpoint_health() if per_endpoint else None,
            backend_endpoints=backend_endpoints,
            active_connections=len(ctx.connections) if ctx is not None else 0,
            tls_expiry=self._tls_expiry(now),
            state_changes=self._state_changes(),
            mirrors=MIRRORS.totals(),
        )
        metrics = snap.to_json()
        if backend_endpoints_json is not None:
            metrics["backend_endpoints"] = backend_endpoints_json
        return {
            "pid": os.getpid(),
            "config_version": ctx.config_version if ctx else "",
            "metrics": metrics,
            "endpoints": {
                "unhealthy": sorted(state.unhealthy) if state else [],
                "ejected": sorted(state.ejected) if state else [],
                "draining": sorted(state.draining) if state else [],
                "in_flight": dict(state.in_flight) if state else {},
                "reasons": dict(self.health.reasons) if self.health is not None else {},
            },
            "tls": [
                status.as_json(now) for tls in self.server_tls.values() for status in tls.status
            ],
        }

    def _state_changes(self) -> dict[tuple[str, str, str], int]:
        """Ejections, health changes and overflows for `/metrics` (`STATE_CHANGE_METRICS`)."""
        out: dict[tuple[str, str, str], int] = {}
        if self.health is not None:
            stats = self.health.stats
            for (backend, reason), n in stats.ejections.items():
                out[("ejection", backend, reason)] = n
            for (backend, to), n in stats.health_changes.items():
                out[("health", backend, to)] = n
        if self.ctx is not None:
            for (backend, limit), n in self.ctx.breakers.overflows.items():
                out[("overflow", backend, limit)] = n
        return out

    def _tls_expiry(self, now: float) -> dict[tuple[str, str], float]:
        if self.ctx is None:
            return {}
        return {
            (status.listener, status.cert_file): status.expires_in_s(now)
            for tls in self.server_tls.values()
            for status in tls.status
        }

    def reload(self) -> None:
        """SIGHUP: re-read the config file and every listener's certificate files."""
        self.reloader.request_reload()
        self.reload_tls()

    def reload_tls(self) -> None:
        for tls in list(self.server_tls.values()):
            tls.reload()

    async def watch_tls_files(self, interval_s: float = TLS_POLL_S) -> None:
        """Reload a listener's certificates, or an auth filter's JWKS, when its file changes.

        Polled (`os.stat`: inode, size, mtime), not inotify: certificate
        rotation replaces files by rename or, in Kubernetes Secrets, by
        swapping a symlinked directory, which a stat of the path follows.
        """
        seen: dict[str, tuple[int, int, int] | None] = {}
        while not self._stop.is_set():
            for tls in list(self.server_tls.values()):
                changed = False
                for name in tls.files:
                    stamp = file_stamp(name)
                    if name in seen and seen[name] != stamp:
                        changed = True
                    seen[name] = stamp
                if changed:
                    tls.reload()
            refresh_jwks()  # JWKS files of auth filters, re-read when they change
            await asyncio.sleep(interval_s)

    async def reports(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> list[dict[str, Any]]:
        report = await self.full_report(
            per_endpoint=per_endpoint, availability=availability, rendered=rendered
        )
        return [report]

    async def full_report(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> dict[str, Any]:
        """`report` with availability per (backend, cluster), counted in a thread.

        The count reads the immutable table and a copy of the few unavailable
        keys, so the event loop keeps serving while it runs (10,000 backends);
        backends shared with the table counted last time are not recounted.
        `availability=False` leaves it out (the admin's /endpoints and /explain
        read only the endpoint state). `rendered` answers it as exposition
        text instead of rows (`metrics.backend_endpoints_text`): what this
        process's own `/metrics` asks, 20,000 pairs with no object per pair.
        Counts are made one at a time (a scrape and the dashboard may ask at once).
        """
        ctx = self.ctx
        counts: list[list[Any]] | None = None
        text: str | None = None
        if availability and ctx is not None and ctx.table is not None:
            async with self._counting:
                table, generation = ctx.table, ctx.state.generation
                key = (table, generation)
                backends = table.backends
                if rendered:
                    (seen, seen_generation), text = self._text_memo
                    # identity: a table's == compares its whole description
                    if seen is not table or seen_generation != generation:
                        unavailable = unavailable_keys(ctx.state)
                        text = await asyncio.to_thread(
                            self._counter.exposition, backends, unavailable
                        )
                        self._text_memo = (key, text)
                else:
                    (seen, seen_generation), counts = self._counts_memo
                    if seen is not table or seen_generation != generation:
                        unavailable = unavailable_keys(ctx.state)
                        counts = await asyncio.to_thread(self._count_json, backends, unavailable)
                        self._counts_memo = (key, counts)
        report = self.report(backend_endpoints_json=counts, per_endpoint=per_endpoint)
        if text is not None:
            report["metrics"]["backend_endpoints_text"] = text
        return report

    async def _warm_counts(self) -> None:
        """Count a table built whole before a scrape asks (a first count of 10,000
        backends indexes each: ~0.1 s, in a thread, now rather than in a scrape)."""
        try:
            await self.full_report(rendered=True)
        except Exception:
            log.exception("counting endpoint availability failed")
        finally:
            self._warming = None

    def _count_json(self, backends: Any, unavailable: frozenset[str]) -> list[list[Any]]:
        """Availability per (backend, cluster) in its JSON form (runs in a thread)."""
        counts = self._counter.count(backends, unavailable)
        return [[b, c, available, total] for (b, c), (available, total) in counts.items()]

    async def _rollout_counters(self) -> Counters:
        """This process's request counters, judged by the rollout driver."""
        stats = self.observer.stats
        return Counters(stats.requests, stats.backend_durations)

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        if self.ctx is not None:
            self.ctx.state.set_draining(key, draining)

    def _endpoint_health(self) -> dict[tuple[str, str], int]:
        ctx = self.ctx
        if ctx is None:
            return {}
        out: dict[tuple[str, str], int] = {}
        for backend in ctx.table.backends.values() if ctx.table is not None else ():
            for ep in backend.endpoints:
                out[(ep.cluster, ep.key)] = int(ctx.state.available(ep.key))
        return out

    # ---- lifecycle -----------------------------------------------------------

    async def start(self) -> None:
        """Load, compile, listen; raises `ConfigError` when the first config is bad."""
        active = await self.reloader.load_initial()
        await self.rollouts.start()  # the first table serves the stored rollout weights
        await self.reloader.apply_pending()
        config = active.config
        self.needs_registry = needs_registry(config)
        self.reloader.debounce_s = config.registry.debounce_s
        telemetry = config.telemetry
        self._tracer_provider = setup_tracing(
            otlp_endpoint=telemetry.otlp_endpoint,
            service_name=telemetry.service_name,
            sample_ratio=telemetry.trace_sample_ratio,
        )
        self.observer.access_log = AccessLog.open(telemetry.access_log)
        if self._tracer_provider is not None:
            self.observer.tracer = self._tracer_provider.get_tracer("portway.gateway")
        from gateway.upstream.pool import PoolSet

        ctx = GatewayContext(
            table=self.reloader.table,
            settings=config.gateway,
            observer=self.observer,
            pools=PoolSet(asyncio.get_running_loop()),
            config_version=active.version,
        )
        self.ctx = ctx
        from gateway.upstream.health_driver import HealthDriver

        self.health = HealthDriver(ctx)
        self.health.start()
        self._started_with = config
        await self._apply_listeners(config, strict=True)  # a port we cannot bind: exit 1
        self._tasks.append(asyncio.create_task(self.reloader.run(), name="reload-pump"))
        self._tasks.append(asyncio.create_task(self.rollouts.run(), name="rollouts"))
        self._tasks.append(
            asyncio.create_task(
                watch_config_file(self.reloader.path, self.reloader.request_reload, self._stop)
            )
        )
        self._tasks.append(asyncio.create_task(self.watch_tls_files(), name="tls-watch"))
        await self._follower.start(config)
        if self.serve_admin:
            RolloutCollector.install(self.rollouts)
            port = self.options.admin_port or config.admin.port
            self._admin = await start_admin(self, config.admin.address, port)
        frozen = freeze_startup_heap()
        log.info(
            "gateway worker serving",
            extra={
                "version": active.version,
                "listeners": sorted(self.servers),
                "pid": os.getpid(),
                "hot_path": compiled.state,
                "frozen_objects": frozen,
            },
        )

    def _swap(self, table: RoutingTable, active: ActiveConfig) -> None:
        ctx = self.ctx
        if ctx is None:
            return
        ctx.table = table
        ctx.settings = active.config.gateway
        if self.reloader.last_swap_full:
            # a whole table is hundreds of thousands of long-lived objects: out of the
            # cyclic collector's sight, so no full collection walks them while serving
            gc.freeze()
            if self.serve_admin and self._warming is None:
                self._warming = asyncio.create_task(self._warm_counts(), name="warm-counts")
        if ctx.config_version != active.version:
            self._warn_restart_only(active.config)
        ctx.config_version = active.version
        if socket_groups(active.config.listeners) != {
            key: group for key, (group, _) in self.servers.items()
        }:
            self._tasks.append(asyncio.create_task(self._apply_listeners(active.config)))

    def _warn_restart_only(self, config: GatewayConfig) -> None:
        """Settings read once at startup: say so instead of silently ignoring them."""
        first = self._started_with
        if first is None:
            self._started_with = config
            return
        sections = (
            ("admin", first.admin, config.admin),
            ("telemetry", first.telemetry, config.telemetry),
            ("registry", first.registry, config.registry),
        )
        for name, before, now in sections:
            if before != now:
                log.warning(
                    "config change needs a restart to take effect",
                    extra={
                        "section": name,
                        "version": self.reloader.active.version if self.reloader.active else "",
                    },
                )

    async def _apply_listeners(self, config: GatewayConfig, *, strict: bool = False) -> None:
        """Start new or changed listeners, stop removed or changed ones.

        Listeners sharing an address:port are one socket: a change to any of
        them restarts it. Connections already accepted on a stopped listener
        finish normally.
        """
        from gateway.runtime.listener import start_listener

        assert self.ctx is not None
        async with self._listener_lock:
            wanted = socket_groups(config.listeners)
            for name, (group, server) in list(self.servers.items()):
                if wanted.get(name) != group:
                    server.close()
                    del self.servers[name]
                    self.server_tls.pop(name, None)
                    log.info("listener stopped", extra={"listener": name})
            for name, group in wanted.items():
                if name in self.servers:
                    continue
                lst, *sharing = group
                try:
                    server = await start_listener(
                        self.ctx,
                        lst,
                        reuse_port=True,
                        certificates=self.server_tls,
                        sharing=tuple(sharing),
                    )
                except OSError as exc:
                    if strict:
                        raise
                    log.error(
                        "listener failed to start",
                        extra={"listener": name, "port": lst.port, "error": str(exc)},
                    )
                    continue
                self.servers[name] = (group, server)
                log.info(
                    "listener started",
                    extra={"listener": name, "port": lst.port, "serves": [g.name for g in group]},
                )

    def _close_idle(self) -> None:
        for conn in list(self.ctx.connections if self.ctx is not None else ()):
            conn.close_idle()

    def request_stop(self) -> None:
        self._stop.set()

    @property
    def draining(self) -> bool:
        """Asked to stop: draining or about to (the admin API's /readyz answers 503)."""
        return self._stop.is_set()

    async def serve(self) -> None:
        """Run until asked to stop, then drain."""
        await self._stop.wait()
        await self.drain(self.options.drain_timeout_s)

    async def drain(self, timeout_s: float) -> None:
        """Stop accepting, let in-flight requests finish (until the deadline), clean up."""
        started = time.monotonic()
        if self.ctx is not None:
            self.ctx.draining = True
        for _, server in self.servers.values():
            server.close()
        log.info("draining", extra={"in_flight": self.observer.in_flight, "pid": os.getpid()})
        deadline = started + timeout_s
        self._close_idle()
        tunnels: set[Tunnel] = self.ctx.tunnels if self.ctx is not None else set()
        while (self.observer.in_flight > 0 or tunnels) and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
            self._close_idle()  # keep-alive connections whose request just finished
        left_tunnels = len(tunnels)
        for tunnel in list(tunnels):  # past the deadline: cut what is still open
            tunnel.abort()
        await asyncio.sleep(DRAIN_GRACE_S)
        log.info(
            "drained",
            extra={
                "left_in_flight": self.observer.in_flight,
                "left_tunnels": left_tunnels,
                "drain_s": round(time.monotonic() - started, 3),
            },
        )
        for task in self._tasks:
            task.cancel()
        if self.health is not None:
            await self.health.stop()
        await self._follower.close()
        await self.rollouts.close()
        if self.ctx is not None and self.ctx.pools is not None:
            self.ctx.pools.close()
        if self.observer.access_log is not None:
            self.observer.access_log.close()
        if self._tracer_provider is not None:
            self._tracer_provider.shutdown()
        if self._admin is not None:
            await self._admin.cleanup()

    async def follow_control(self, fd: int) -> None:
        """Answer the supervisor on the control channel; stop if it goes away."""
        sock = socket.socket(fileno=fd)
        reader, writer = await asyncio.open_unix_connection(sock=sock)
        try:
            while line := await reader.readline():
                message = json.loads(line)
                if message.get("op") == "report":
                    report = await self.full_report(
                        per_endpoint=bool(message.get("endpoints")),
                        availability=bool(message.get("availability", True)),
                    )
                    answer = {**report, "id": message.get("id")}
                    text = await asyncio.to_thread(json.dumps, answer)  # MBs at fleet size
                    writer.write(text.encode() + b"\n")
                    await writer.drain()
                elif message.get("op") == "drain_endpoint":
                    await self.set_endpoint_draining(message["key"], bool(message["draining"]))
        finally:
            self.request_stop()


def install_signals(on_stop: Callable[[], None], on_reload: Callable[[], None]) -> None:
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, on_stop)
    loop.add_signal_handler(signal.SIGINT, on_stop)
    loop.add_signal_handler(signal.SIGHUP, on_reload)


async def run_worker(options: ServerOptions) -> int:
    """A gateway process serving traffic (alone, or as one of a supervisor's workers)."""
    if options.rate_limit_fd is not None:
        attach_shared_buckets(options.rate_limit_fd, options.worker_index)
    worker = Worker(options, serve_admin=options.control_fd is None)
    install_signals(worker.request_stop, worker.reload)
    await worker.start()
    if options.control_fd is not None:
        worker._tasks.append(asyncio.create_task(worker.follow_control(options.control_fd)))
    await worker.serve()
    return 0


def freeze_startup_heap() -> int:
    """Move what startup made (modules, config, the first table) out of the cyclic
    collector's sight; returns how many objects that is.

    They live as long as the worker; left in the oldest generation, every full
    collection would walk them all and stall every connection for tens of
    milliseconds. Objects made later are collected as usual.
    """
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
