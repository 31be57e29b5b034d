"""One gateway worker: the event loop that serves the listeners.

`Worker` is what serves traffic: it loads the config (`Reloader`), builds the
`GatewayContext` (table, endpoint state, observer, upstream pools), follows the
registry (`RegistryFollower`: `EndpointFeed` → `Reloader.on_changes`), starts
one server per listener with SO_REUSEPORT, and applies listener changes on
reload (listeners added, removed or changed are started/stopped). The `admin`,
`telemetry` and `registry` sections are read at startup: a reload that changes
them logs a warning that a restart is needed. SIGHUP reloads the config and
every listener's certificates; certificate and JWKS files are also polled
(`file_watch`). SIGTERM/SIGINT drain: stop accepting, set `ctx.draining`,
close idle keep-alive client connections (and each busy one as soon as its
response is done: `HttpProxy.close_idle`, swept every 20 ms), wait for
in-flight requests up to the drain deadline, then flush the access log and
traces and exit. Open TCP/TLS passthrough connections (`ctx.tunnels`) are
waited for like requests and cut at the deadline.

A worker alone is also the admin API's source (`ops.source.AdminSource`),
its reports made by `worker_report.WorkerReports`. With `--workers N` > 1
each worker is one of the supervisor's (`gateway.runtime.supervisor`), which
serves the admin API and reaches the worker over its control channel
(`gateway.runtime.control`). Rate limits of `scope: shared` live in a table
of shared memory the supervisor creates and hands to every worker as a
second descriptor (`--rate-limit-fd`, with `--worker-index` naming the
worker's count in it; `gateway.http.filters.shared_buckets`).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from aiohttp import web

from gateway import compiled
from gateway.config.active import ActiveConfig
from gateway.config.model import GatewayConfig, Listener
from gateway.config.ports import socket_groups
from gateway.context import GatewayContext, Tunnel
from gateway.http.filters.shared_buckets import attach as attach_shared_buckets
from gateway.http.plan import build_plan
from gateway.ops.accesslog import AccessLog
from gateway.ops.admin import start_admin
from gateway.ops.observer import GatewayObserver
from gateway.rollout.api import RolloutApi
from gateway.rollout.metrics import RolloutCollector
from gateway.rollout.runner import RolloutRunner
from gateway.rollout.window import Counters
from gateway.runtime.control import follow_control
from gateway.runtime.file_watch import poll_credential_files, watch_config_file
from gateway.runtime.native_listener import LaneServer
from gateway.runtime.process import ServerOptions, install_signals
from gateway.runtime.registry_follower import RegistryFollower, needs_registry
from gateway.runtime.reload import Reloader
from gateway.runtime.worker_report import WorkerReports
from portway.telemetry import setup_tracing

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

    from gateway.routing.table import RoutingTable
    from gateway.runtime.tls import ServerTls
    from gateway.upstream.health_driver import HealthDriver

log = logging.getLogger("portway.gateway.runtime.server")

DRAIN_GRACE_S = 0.1


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
        self.servers: dict[
            str, tuple[tuple[Listener, ...], asyncio.AbstractServer | LaneServer]
        ] = {}
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
        self.reporting = WorkerReports(self)
        """This worker's reports: to the admin API when alone, else to its supervisor."""
        self._started_with: GatewayConfig | None = None

    # ---- admin source and SIGHUP ---------------------------------------------

    def reload(self) -> None:
        """SIGHUP: re-read the config file and every listener's certificate files."""
        self.reloader.request_reload()
        self.reload_tls()

    def reload_tls(self) -> None:
        for tls in list(self.server_tls.values()):
            tls.reload()

    async def reports(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> list[dict[str, Any]]:
        report = await self.reporting.full(
            per_endpoint=per_endpoint, availability=availability, rendered=rendered
        )
        return [report]

    async def _rollout_counters(self) -> Counters:
        """This process's request counters, judged by the rollout driver."""
        stats = self.observer.stats
        return Counters(stats.requests, stats.backend_durations)

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        if self.ctx is not None:
            self.ctx.state.set_draining(key, draining)

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
        from gateway.upstream.shared_verdicts import attach as attach_verdicts

        self.health = HealthDriver(
            ctx, verdicts=attach_verdicts(self.options.health_fd, self.options.worker_index)
        )
        self.health.start()
        self._started_with = config
        await self._apply_listeners(config, strict=True)  # a port we cannot bind: exit 1
        self._tasks.append(asyncio.create_task(self.reloader.run(), name="reload-pump"))
        self._tasks.append(asyncio.create_task(self.rollouts.run(), name="rollouts"))
        self._tasks.append(
            asyncio.create_task(
                watch_config_file(self.reloader.path, self.reloader.request_reload, self._stop),
                name="config-watch",
            )
        )
        self._tasks.append(
            asyncio.create_task(
                poll_credential_files(self.server_tls, self._stop), name="credentials-watch"
            )
        )
        await self._follower.start(config)
        if self.serve_admin:
            RolloutCollector.install(self.rollouts)
            port = self.options.admin_port or config.admin.port
            self._admin = await start_admin(
                self, config.admin.address, port, mounted=(RolloutApi(self),)
            )
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
            if self.serve_admin:
                self.reporting.warm()
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
                    extra={
                        "listener": name,
                        "port": lst.port,
                        "serves": [g.name for g in group],
                        "sockets": "native" if isinstance(server, LaneServer) else "loop",
                    },
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


async def run_worker(options: ServerOptions) -> int:
    """A gateway process serving traffic (alone, or as one of a supervisor's workers)."""
    if options.rate_limit_fd is not None:
        attach_shared_buckets(options.rate_limit_fd, options.worker_index)
    worker = Worker(options, serve_admin=options.control_fd is None)
    install_signals(worker.request_stop, worker.reload)
    await worker.start()
    if options.control_fd is not None:
        worker._tasks.append(asyncio.create_task(follow_control(options.control_fd, worker)))
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
