"""The demo's site: simulated clusters alpha and beta, their controllers, the gateway.

`portway demo` (`portway.demo`) walks its phases against this site. Each
simulated cluster (`portway.simcluster`) opens its NodePort on its nodes'
loopback addresses; each cluster's controller is a files registry writer
that publishes its records with a `RECORD_TTL_S` lease; the gateway is a
real `portway gateway` process running the embedded demo config in the
site's working directory, on fixed loopback ports (its listener on
`GATEWAY_PORT`, its admin API on `ADMIN_PORT`), which are checked free
before anything starts (`DemoError` names the first one taken and its
holder).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp

from portway.drill.gateway_process import GatewayProcess, NotReady
from portway.port_holder import port_taken
from portway.registry.files import FilesRegistry
from portway.simcluster import SimNode, SimulatedCluster

GATEWAY_ADDRESS, GATEWAY_PORT, ADMIN_PORT = "127.0.0.1", 18080, 19901
GATEWAY_URL = f"http://{GATEWAY_ADDRESS}:{GATEWAY_PORT}/"
ADMIN_URL = f"http://{GATEWAY_ADDRESS}:{ADMIN_PORT}"
RECORD_TTL_S = 2.0


class DemoError(Exception):
    """The demo cannot run here; the message is one line saying what is in the way."""


def clusters() -> dict[str, SimulatedCluster]:
    """alpha (the gateway's own zone) and beta, each with the service and its canary."""
    alpha = (
        SimNode("alpha-1", "127.0.0.11", "demo-1a"),
        SimNode("alpha-2", "127.0.0.12", "demo-1a"),
    )
    beta = (SimNode("beta-1", "127.0.0.21", "demo-1b"), SimNode("beta-2", "127.0.0.22", "demo-1b"))
    return {
        "alpha": SimulatedCluster("alpha", "demo", alpha, 30080),
        "beta": SimulatedCluster("beta", "demo", beta, 30080),
        "alpha-canary": SimulatedCluster(
            "alpha", "demo", alpha[:1], 30081, service="web-canary", label="canary"
        ),
        "beta-canary": SimulatedCluster(
            "beta", "demo", beta[:1], 30081, service="web-canary", label="canary"
        ),
    }


def demo_slow_start_s() -> float:
    """How long a level takes to get its whole share once its endpoints are (back) in
    rotation: the demo backends' locality.slowStart."""
    from gateway.config.loader import demo_config_text, load_config_text

    config = load_config_text(demo_config_text())
    return max(b.locality.slow_start_s for b in config.backends)


class DemoSite:
    """Owns the simulated clusters, their registry writers and the gateway process."""

    def __init__(self, workdir: Path, *, log: Callable[[str], None]) -> None:
        self.workdir = workdir
        self.log = log
        self.clusters = clusters()
        registry_dir = workdir / "demo-registry"
        self.writers = {
            "alpha": FilesRegistry(registry_dir),
            "beta": FilesRegistry(registry_dir),
        }
        self.gateway = GatewayProcess(workdir, workdir / "demo.yaml", "--workers", "1")

    async def publish(self, name: str) -> None:
        cluster = self.clusters[name]
        await self.writers[cluster.name].publish(cluster.record(), RECORD_TTL_S)

    def wanted_ports(self) -> list[tuple[str, int, str]]:
        """Every (address, port) the demo binds, with what it is for."""
        wanted = [
            (GATEWAY_ADDRESS, GATEWAY_PORT, "the demo gateway's listener"),
            (GATEWAY_ADDRESS, ADMIN_PORT, "the demo gateway's admin API"),
        ]
        for cluster in self.clusters.values():
            for node in cluster.nodes:
                wanted.append((node.address, cluster.node_port, f"simulated node {node.name}"))
        return list(dict.fromkeys(wanted))

    def check_ports(self) -> None:
        """Raise `DemoError` naming the first port the demo wants that is taken."""
        for address, port, purpose in self.wanted_ports():
            try:
                taken = port_taken(address, port)
            except OSError as exc:
                raise DemoError(
                    f"cannot bind {address}:{port} for {purpose}: {exc.strerror or exc}"
                ) from None
            if taken is not None:
                raise DemoError(
                    f"{taken} and the demo needs it for {purpose}; stop that program and retry"
                )

    async def start(self) -> None:
        self.check_ports()
        for name, cluster in self.clusters.items():
            await cluster.start()
            await self.publish(name)
        config = self.workdir / "demo.yaml"
        from gateway.config.loader import demo_config_text

        config.write_text(demo_config_text(), encoding="utf-8")
        self.log(f"gateway: portway gateway --config {config} (cwd {self.workdir})")
        self.gateway.start()
        await self._wait_ready()

    async def _wait_ready(self, timeout_s: float = 20.0) -> None:
        """Ready (its admin API says so), then serving the demo's route."""
        deadline = time.monotonic() + timeout_s
        try:
            await self.gateway.wait_ready(ADMIN_URL, timeout_s)
        except NotReady as exc:
            if exc.exited:
                raise DemoError(f"the demo gateway exited at startup: {self.last_log()}") from None
            raise DemoError(f"the demo gateway was not ready within {timeout_s:g} s") from None
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                if self.gateway.exited:
                    raise DemoError(f"the demo gateway exited at startup: {self.last_log()}")
                with contextlib.suppress(TimeoutError):
                    if await self._serves(session):
                        return
                await asyncio.sleep(0.1)
        raise DemoError(f"the demo gateway was not ready within {timeout_s:g} s")

    def last_log(self) -> str:
        """The gateway's last log message, for the one line the user reads."""
        lines = self.gateway.log_lines()
        if not lines:
            return "no log written"
        for line in reversed(lines):
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict) and entry.get("level") in ("error", "critical"):
                    detail = entry.get("error") or ""
                    return f"{entry.get('msg', '')}{': ' + str(detail) if detail else ''}"
        return lines[-1]

    async def _serves(self, session: aiohttp.ClientSession) -> bool:
        with contextlib.suppress(aiohttp.ClientError):
            async with session.get(GATEWAY_URL) as resp:
                return resp.status == 200
        return False

    async def explain(self) -> list[str]:
        query = {"request": f"GET {GATEWAY_URL}", "from": "127.0.0.1"}
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{ADMIN_URL}/explain", params=query) as resp,
        ):
            body = await resp.json()
        return [str(step) for step in body.get("steps", [])]

    async def endpoints_of(self, backend: str) -> set[str]:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"{ADMIN_URL}/endpoints") as resp,
        ):
            body = await resp.json()
        return {ep["cluster"] for ep in body["backends"].get(backend, [])}

    async def stop(self) -> None:
        await self.gateway.stop()
        for writer in self.writers.values():
            await writer.close()
        for cluster in self.clusters.values():
            await cluster.stop()
