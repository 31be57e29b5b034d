"""The controller process: watches -> cache -> derive -> publish, under a Lease.

Theory of operation. Four `KindWatcher` threads feed the loop; each item is
folded into the `ClusterCache` on the loop. Once every kind has been listed
(`/readyz` turns 200 then), any change schedules a derivation: the first
change of a burst waits `debounce_s` for quiet (a rolling update touches
Services, slices and nodes in quick succession), but never longer than
`max_delay_s` after the first change, then `rederive()` derives again the
Services the burst touched (every one after a Node change) and the
`Publisher` diffs the result against what it has written.
Only the replica holding the Lease writes records and Events; the others
derive too (so they are warm) and keep quiet.

The apiserver going away changes nothing that is published: the watchers
retry with backoff, `portway_controller_kube_up` drops to 0 and one line is
logged per change of state; the registry backend keeps renewing the leases of
the records already written. A replica that stops abandons its records
(TTL decides) and hands the Lease back, so the other replica takes over
within one retry period; the registry is opened with the cluster's
publisher identity (controller/publish.py `controller_owner`), so the new
leader, like a restarted process, adopts every record in place when it
writes it: no record is ever absent and no gateway sees the cluster go.

`KUBE_API_CALLS` lists every Kubernetes API call the controller makes; the
RBAC in deploy/ grants exactly these (tests/controller/test_deploy_manifests.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from controller.cache import ClusterCache
from controller.derive import Derivation, derive
from controller.events import EVENT_API_CALLS, EventApi, ViolationReporter
from controller.incremental import rederive
from controller.leader import LEASE_API_CALLS, ElectionSettings, LeaseApi, LeaseElector
from controller.metrics import ControllerMetrics
from controller.objects import ClusterSettings
from controller.publish import Publisher
from controller.watch import (
    WATCH_API_CALLS,
    WATCHED_KINDS,
    Connectivity,
    KindWatcher,
    ObjectEvent,
    Reset,
    WatchItem,
    WatchTiming,
)
from portway.model import DEFAULT_RENEW_S, DEFAULT_TTL_S
from portway.registry.base import Registry

log = logging.getLogger("portway.controller")

KUBE_API_CALLS: tuple[tuple[str, str, str], ...] = (
    *WATCH_API_CALLS,
    *LEASE_API_CALLS,
    *EVENT_API_CALLS,
)
"""(API group, resource, verb) of every call the controller makes."""


@dataclass(frozen=True, slots=True, kw_only=True)
class ControllerOptions:
    """How one controller replica runs (the flags of `portway controller`)."""

    settings: ClusterSettings
    identity: str
    """This replica's Lease holder identity (the pod name)."""
    lease_name: str = "portway-controller"
    """The coordination.k8s.io Lease the replicas of this cluster's controller share."""
    lease_namespace: str = "portway-system"
    """Its namespace (RBAC grants the Lease calls there only)."""
    election: ElectionSettings | None = None
    """Timing of the Lease election; None: client-go's defaults with `identity`."""
    ttl_s: float = DEFAULT_TTL_S
    """Registry record TTL; renewed by the backend every min(5 s, ttl/3)."""
    debounce_s: float = 0.03
    """Quiet time a burst of watch events gets before the cluster is derived."""
    max_delay_s: float = 0.2
    """Longest a change waits for quiet under constant churn."""
    admin_host: str = "127.0.0.1"
    admin_port: int | None = 9902
    """Port of /healthz, /readyz and /metrics; None: no admin server; 0: any free port."""
    watch_timing: WatchTiming = field(default_factory=WatchTiming)
    """Watch timeouts and reconnect backoff."""
    publish_retry_s: float = 1.0
    """How often blocked, failed or lost registry writes are tried again."""

    def takeover_margin_s(self) -> float:
        """How long, at worst, a crashed leader's records outlive the takeover.

        They were renewed every min(5 s, ttl/3), so they live at least the TTL
        minus that after the crash; the next replica leads, and adopts them,
        at most a Lease duration plus a retry period after it. Negative: a
        crashed leader's cluster may drop out of the gateways' tables for that
        long (a stopped leader hands the Lease back, so it never does).
        """
        election = self.election or ElectionSettings(identity=self.identity)
        least_life_s = self.ttl_s - min(DEFAULT_RENEW_S, self.ttl_s / 3)
        return least_life_s - (election.lease_duration_s + election.retry_period_s)


class Controller:
    """One replica: see the module docstring."""

    def __init__(
        self,
        options: ControllerOptions,
        api_client: Any,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.options = options
        self.api_client = api_client
        self.registry = registry
        self.clock = clock
        self.metrics = ControllerMetrics(options.settings.cluster)
        self.cache = ClusterCache()
        self.publisher = Publisher(
            registry, self.metrics, ttl_s=options.ttl_s, retry_s=options.publish_retry_s
        )
        self.reporter = ViolationReporter(
            EventApi(api_client), self.metrics, instance=options.identity
        )
        election = options.election or ElectionSettings(identity=options.identity)
        self.elector = LeaseElector(
            LeaseApi(api_client, options.lease_name, options.lease_namespace),
            election,
            self._leadership_changed,
        )
        self.watchers = [
            KindWatcher(api_client, kind, self._from_thread, options.watch_timing)
            for kind in WATCHED_KINDS
        ]
        self.derivation: Derivation | None = None
        self.admin_port: int | None = None
        self._kube_up: dict[str, bool] = {}
        self._dirty = asyncio.Event()
        self._deriving = asyncio.Lock()
        self._leadership = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._runner: web.AppRunner | None = None
        self.metrics.kube_up.set(0)

    @property
    def leading(self) -> bool:
        return self.elector.leading

    @property
    def running(self) -> bool:
        return bool(self._tasks)

    @property
    def kube_up(self) -> bool:
        return len(self._kube_up) == len(self.watchers) and all(self._kube_up.values())

    async def start(self) -> None:
        """Start the admin server, the watchers, the election and the publisher."""
        self._loop = asyncio.get_running_loop()
        if self.options.admin_port is not None:
            await self._start_admin()
        for watcher in self.watchers:
            watcher.start()
        self._tasks = [
            asyncio.create_task(self._derive_loop(), name="controller-derive"),
            asyncio.create_task(self.elector.run(), name="controller-lease"),
            asyncio.create_task(self.publisher.run(), name="controller-publish"),
            asyncio.create_task(self._follow_leadership(), name="controller-leadership"),
        ]
        margin = self.options.takeover_margin_s()
        if margin <= 0:
            log.warning(
                "record TTL too short for a takeover: a crashed leader's records may expire "
                "before the next replica adopts them (raise --ttl or lower --lease-duration)",
                extra={"ttl_s": self.options.ttl_s, "short_by_s": round(-margin, 3)},
            )
        log.info(
            "controller started",
            extra={
                "cluster": self.options.settings.cluster,
                "identity": self.options.identity,
                "owner": self.registry.owner,
                "admin_port": self.admin_port,
            },
        )

    async def stop(self) -> None:
        """Hand the Lease back, abandon records to their TTL, stop everything."""
        for watcher in self.watchers:
            watcher.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        await self.publisher.deactivate(abandon=True)
        await asyncio.to_thread(self._join_watchers)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("controller stopped", extra={"cluster": self.options.settings.cluster})

    def _join_watchers(self) -> None:
        for watcher in self.watchers:
            watcher.join(2.0)

    async def run(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()

    # -- watch items -------------------------------------------------------

    def _from_thread(self, item: WatchItem) -> None:
        assert self._loop is not None
        self._loop.call_soon_threadsafe(self.take, item)

    def take(self, item: WatchItem) -> None:
        """Fold one watch item in (on the loop)."""
        if isinstance(item, Connectivity):
            self._connectivity(item)
            return
        event_type = item.type if isinstance(item, ObjectEvent) else "RESET"
        self.metrics.watch_events.labels(kind=item.kind.plural, type=event_type).inc()
        if self.cache.apply(item) and self.cache.synced:
            self._dirty.set()
        self.metrics.synced.set(1 if self.cache.synced else 0)

    def _connectivity(self, item: Connectivity) -> None:
        was = self.kube_up
        self._kube_up[item.kind.plural] = item.up
        now = self.kube_up
        self.metrics.kube_up.set(1 if now else 0)
        if now != was:
            if now:
                log.info(
                    "kubernetes apiserver reachable",
                    extra={"cluster": self.options.settings.cluster},
                )
            else:
                log.warning(
                    "kubernetes apiserver unreachable; keeping the published records alive",
                    extra={"cluster": self.options.settings.cluster, "error": item.error},
                )

    async def _derive_loop(self) -> None:
        o = self.options
        while True:
            await self._dirty.wait()
            first = asyncio.get_running_loop().time()
            while True:
                self._dirty.clear()
                await asyncio.sleep(o.debounce_s)
                waited = asyncio.get_running_loop().time() - first
                if not self._dirty.is_set() or waited >= o.max_delay_s:
                    break
            self._dirty.clear()
            await self.derive_and_publish()

    async def derive_and_publish(self) -> Derivation:
        """Bring the derivation up to date with the cache as it is now, then publish.

        The snapshot and the Services touched since the last derivation are
        taken on the loop (the cache is only touched there); the pure
        derivation runs in a worker thread, so a Node change on a large
        cluster does not stall the admin server or the registry's lease
        renewals. Derivations and their publishing run one at a time, each
        from the last one's result, so a slower one never overwrites a newer.
        """
        async with self._deriving:
            touched = self.cache.take_touched()
            snap = self.cache.snapshot()
            started = time.perf_counter()
            try:
                derivation = await asyncio.to_thread(
                    rederive,
                    self.derivation,
                    self.options.settings,
                    snap.services,
                    snap.nodes,
                    snap.slices,
                    touched,
                    self.clock(),
                )
            except BaseException:
                self.cache.touch_everything()
                raise
            self.metrics.derive_seconds.observe(time.perf_counter() - started)
            self.metrics.derivations.inc()
            self.derivation = derivation
            await self.publisher.set_desired(derivation.records())
            await self.reporter.report(derivation.violations(), emit=self.leading)
        return derivation

    # -- leadership --------------------------------------------------------

    def _leadership_changed(self, leading: bool) -> None:
        self.metrics.leader.set(1 if leading else 0)
        self._leadership.set()

    async def _follow_leadership(self) -> None:
        """Make the publisher follow the Lease: write while leading, hold still otherwise.

        A follower still holding records (it lost the Lease while the apiserver
        was unreachable) keeps renewing them until it sees another replica hold
        the Lease; then it abandons them to their TTL. The new leader adopts
        them in place as it writes them, so neither step leaves a key absent.
        """
        me = self.options.identity
        period = self.elector.election.settings.retry_period_s
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._leadership.wait(), period)
            self._leadership.clear()
            if self.leading and not self.publisher.active:
                await self.publisher.activate()
                if self.derivation is not None:
                    await self.reporter.report(self.derivation.violations(), emit=True)
            elif not self.leading and self.publisher.active:
                await self.publisher.deactivate(abandon=False)
            observed = self.elector.election.observed
            others = observed is not None and observed.holder not in ("", me)
            if not self.leading and others and self.publisher.published:
                log.info("another replica leads; abandoning records to their TTL")
                await self.publisher.deactivate(abandon=True)

    # -- admin -------------------------------------------------------------

    async def _start_admin(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        app.router.add_get("/metrics", self._metrics)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.options.admin_host, self.options.admin_port)
        await site.start()
        self.admin_port = int(self._runner.addresses[0][1])

    async def _healthz(self, request: web.Request) -> web.Response:
        dead = [w.kind.plural for w in self.watchers if not w.alive]
        if dead or any(t.done() for t in self._tasks):
            return web.json_response({"ok": False, "dead_watchers": dead}, status=503)
        return web.json_response({"ok": True})

    async def _readyz(self, request: web.Request) -> web.Response:
        body = {
            "synced": self.cache.synced,
            "kube_up": self.kube_up,
            "leader": self.leading,
            "records": len(self.publisher.published),
            "blocked": len(self.publisher.blocked),
        }
        return web.json_response(body, status=200 if self.cache.synced else 503)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.metrics.registry),
            headers={"Content-Type": CONTENT_TYPE_LATEST},
        )


async def list_once(api_client: Any, settings: ClusterSettings, now: float) -> Derivation:
    """List every kind once and derive (what `portway controller --print` shows)."""
    cache = ClusterCache()
    for kind in WATCHED_KINDS:
        items: list[WatchItem] = []
        await asyncio.to_thread(KindWatcher(api_client, kind, items.append).list_once)
        for item in items:
            if isinstance(item, Reset):
                cache.apply(item)
    snap = cache.snapshot()
    return derive(settings, snap.services, snap.nodes, snap.slices, now)
