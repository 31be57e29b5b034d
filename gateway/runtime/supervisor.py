"""The multi-worker supervisor: spawn, watch, restart and signal `portway gateway --worker`s.

`Supervisor` runs when `--workers N` > 1: it spawns N `portway gateway
--worker` processes (fresh interpreters, no fork of a running loop; they
share the listener ports through SO_REUSEPORT), each given one end of a
socketpair as its control channel (`gateway.runtime.control`), restarts a
worker that dies, forwards SIGHUP and SIGTERM, and serves the admin API
itself. Metrics design: the supervisor asks every worker for a JSON report
over the control channel at scrape time and sums them
(`gateway.ops.metrics.merge`); workers keep plain counters, so nothing on the
request path knows about processes, and there is no shared directory of
mmapped files to clean up after a crash (prometheus_client's multiprocess
mode), at the price of one round trip per worker per scrape. The admin API
is served by exactly one process, so its answers do not depend on which
worker a connection lands on.

The supervisor also loads the config itself (for the admin API's `/config`,
`/routes` and `/explain`) and follows the same file and SIGHUPs, so its view
and the workers' agree once a reload settles. It creates the table of shared
rate limit buckets (`gateway.http.filters.shared_buckets`) before the first
worker starts and passes it to each, restarted ones too, so their buckets
outlive any one worker; and, the same way, the table of health verdicts
(`gateway.upstream.shared_verdicts`) through which worker 0's active checks
serve every worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import sys
from typing import Any

from gateway.config.active import ActiveConfig
from gateway.config.model import GatewayConfig
from gateway.http.filters.shared_buckets import SharedBucketTable, table_slots
from gateway.ops.admin import start_admin
from gateway.ops.metrics import MetricsSnapshot, merge
from gateway.rollout.api import RolloutApi
from gateway.rollout.metrics import RolloutCollector
from gateway.rollout.runner import RolloutRunner
from gateway.rollout.window import Counters
from gateway.runtime.file_watch import watch_config_file
from gateway.runtime.process import ServerOptions, install_signals
from gateway.runtime.registry_follower import RegistryFollower, needs_registry
from gateway.runtime.reload import Reloader
from gateway.upstream.shared_verdicts import SharedVerdicts, slots_for

log = logging.getLogger("portway.gateway.runtime.supervisor")

RESTART_BACKOFF_S = 0.5
REPORT_TIMEOUT_S = 5.0
REPORT_LIMIT_BYTES = 64 << 20  # a report lists every endpoint's health


class WorkerProcess:
    """One child process and the supervisor's end of its control channel."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.lock = asyncio.Lock()
        self._next_id = 0

    async def spawn(
        self, options: ServerOptions, rate_limits: SharedBucketTable, verdicts: SharedVerdicts
    ) -> None:
        parent, child = socket.socketpair()
        args = [
            sys.executable,
            "-m",
            "portway",
            "gateway",
            "--config",
            options.config_path,
            "--worker",
            "--control-fd",
            str(child.fileno()),
            "--drain-timeout",
            str(options.drain_timeout_s),
            "--rate-limit-fd",
            str(rate_limits.fd),
            "--worker-index",
            str(self.index),
            "--health-fd",
            str(verdicts.fd),
        ]
        self.proc = await asyncio.create_subprocess_exec(
            *args,
            pass_fds=(child.fileno(), rate_limits.fd, verdicts.fd),
            start_new_session=False,
        )
        child.close()
        self.reader, self.writer = await asyncio.open_unix_connection(
            sock=parent, limit=REPORT_LIMIT_BYTES
        )
        log.info("worker started", extra={"worker": self.index, "pid": self.proc.pid})

    async def ask(self, message: dict[str, Any]) -> dict[str, Any] | None:
        """Send one message; for `report`, wait for the answer line."""
        if self.writer is None or self.reader is None:
            return None
        async with self.lock:
            self._next_id += 1
            request_id = self._next_id
            try:
                self.writer.write(json.dumps({**message, "id": request_id}).encode() + b"\n")
                await self.writer.drain()
                if message.get("op") != "report":
                    return None
                async with asyncio.timeout(REPORT_TIMEOUT_S):
                    while line := await self.reader.readline():
                        answer: dict[str, Any] = json.loads(line)
                        if answer.get("id") == request_id:
                            return answer
                        # a late answer to a request that timed out: skip it
            except (OSError, TimeoutError, ConnectionError, ValueError) as exc:
                log.warning(
                    "worker did not answer",
                    extra={"worker": self.index, "op": message.get("op"), "error": repr(exc)},
                )
                return None
        return None

    def signal(self, signum: int) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signum)

    def close_channel(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


class Supervisor:
    """Runs N workers and the admin API; see the module docstring."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options
        self.reloader = Reloader(options.config_path, self._swapped)
        self.needs_registry = False
        self.workers = [WorkerProcess(i) for i in range(options.workers)]
        self.expected_workers = options.workers
        self._stopping = asyncio.Event()
        self._follower = RegistryFollower(self.reloader)
        self.rollouts = RolloutRunner(self.reloader, measure=self._rollout_counters)
        self.rate_limits: SharedBucketTable | None = None
        """The workers' shared rate limit buckets, made once the first config is read."""
        self.verdicts: SharedVerdicts | None = None
        """The workers' shared health verdicts, made once the first table is built."""
        self._sized_for: GatewayConfig | None = None

    def _swapped(self, table: Any, active: ActiveConfig) -> None:
        if self.rate_limits is None or active.config is self._sized_for:
            return  # registry updates swap tables too: judge each config once
        self._sized_for = active.config
        wanted = table_slots(active.config)
        if wanted > self.rate_limits.slots:
            log.warning(
                "shared rate limits need a bigger table than startup made; restart to grow it",
                extra={"slots": self.rate_limits.slots, "wanted": wanted},
            )

    async def reports(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> list[dict[str, Any]]:
        """Every worker's report; counts come as rows (`rendered` is for a lone process:
        the workers' availability is merged here, which text cannot be)."""
        message = {"op": "report", "endpoints": per_endpoint, "availability": availability}
        answers = await asyncio.gather(*(w.ask(message) for w in self.workers))
        return [a for a in answers if a is not None]

    async def _rollout_counters(self) -> Counters:
        """The workers' request counters summed, judged by the rollout driver."""
        total = merge(MetricsSnapshot.from_json(r["metrics"]) for r in await self.reports())
        return Counters(total.requests, total.backend_durations)

    async def set_endpoint_draining(self, key: str, draining: bool) -> None:
        message = {"op": "drain_endpoint", "key": key, "draining": draining}
        await asyncio.gather(*(w.ask(message) for w in self.workers))

    def reload(self) -> None:
        self.reloader.request_reload()
        for w in self.workers:
            w.signal(1)  # SIGHUP

    def stop(self) -> None:
        self._stopping.set()

    @property
    def draining(self) -> bool:
        """Asked to stop: the workers drain (the admin API's /readyz answers 503)."""
        return self._stopping.is_set()

    async def _keep_alive(self, worker: WorkerProcess) -> None:
        """Wait for the worker to exit; restart it unless the gateway is stopping."""
        while True:
            assert worker.proc is not None
            code = await worker.proc.wait()
            worker.close_channel()
            if self._stopping.is_set():
                return
            log.error(
                "worker exited; restarting",
                extra={"worker": worker.index, "pid": worker.proc.pid, "returncode": code},
            )
            await asyncio.sleep(RESTART_BACKOFF_S)
            if self._stopping.is_set():
                return
            assert self.rate_limits is not None and self.verdicts is not None
            await worker.spawn(self.options, self.rate_limits, self.verdicts)

    async def run(self) -> int:
        active = await self.reloader.load_initial()
        self.rate_limits = SharedBucketTable.create(table_slots(active.config), len(self.workers))
        table = self.reloader.table
        backends = table.backends.values() if table is not None else ()
        self.verdicts = SharedVerdicts.create(slots_for(backends))
        await self.rollouts.start()
        await self.reloader.apply_pending()
        RolloutCollector.install(self.rollouts)
        rollouts = asyncio.create_task(self.rollouts.run(), name="rollouts")
        self.needs_registry = needs_registry(active.config)
        install_signals(self.stop, self.reload)
        pump = asyncio.create_task(self.reloader.run())
        watch_stop = asyncio.Event()
        watcher = asyncio.create_task(
            watch_config_file(self.reloader.path, self.reloader.request_reload, watch_stop)
        )
        await self._follower.start(active.config)
        for worker in self.workers:
            await worker.spawn(self.options, self.rate_limits, self.verdicts)
        keepers = [asyncio.create_task(self._keep_alive(w)) for w in self.workers]
        port = self.options.admin_port or active.config.admin.port
        admin = await start_admin(
            self, active.config.admin.address, port, mounted=(RolloutApi(self),)
        )
        log.info(
            "gateway supervisor serving",
            extra={"workers": len(self.workers), "pid": os.getpid(), "admin_port": port},
        )
        await self._stopping.wait()
        log.info("stopping workers", extra={"drain_timeout_s": self.options.drain_timeout_s})
        for worker in self.workers:
            worker.signal(15)  # SIGTERM: each worker drains
        done = asyncio.gather(*keepers)
        try:
            await asyncio.wait_for(done, self.options.drain_timeout_s + 5.0)
        except TimeoutError:
            for worker in self.workers:
                worker.signal(9)
        watch_stop.set()
        pump.cancel()
        watcher.cancel()
        await self._follower.close()
        rollouts.cancel()
        await self.rollouts.close()
        await admin.cleanup()
        return 0
