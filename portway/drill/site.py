"""The drill's site: simulated clusters, their controllers, and the gateway under test.

Each (cluster, service) of the scenario is a `SimulatedCluster` on its
loopback addresses; each cluster's controller is a registry writer (files,
or etcd: then the drill runs its own etcd member, `etcd_member`) that
publishes the cluster's records with the scenario's TTL and renews them until
it is stopped (then the records expire, as when a real controller dies). The
gateway is either started here, a real `portway gateway` process running a
copy of the scenario's gateway config in the drill's working directory, or
one already running, reached through its admin URL, which must read the
files registry the controllers write.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp

from portway.drill.certs import DrillCa, install
from portway.drill.etcd_member import EtcdMember, EtcdUnavailable
from portway.drill.gateway_process import (
    PROBE_TIMEOUT,
    READY_TIMEOUT_S,
    GatewayProcess,
    NotReady,
    until_ready,
)
from portway.drill.loader import LoadedScenario
from portway.registry.base import Registry
from portway.registry.etcd import EtcdRegistry
from portway.registry.files import FilesRegistry
from portway.simcluster import SERVED_BY, SimNode, SimulatedCluster

SimKey = tuple[str, str]  # (cluster, service)


class SiteError(RuntimeError):
    """The site could not be set up (a port taken, the gateway not starting): one line."""


class DrillSite:
    """Owns what the drill runs; see the module docstring."""

    def __init__(
        self,
        loaded: LoadedScenario,
        workdir: Path,
        *,
        admin_url: str | None = None,
        registry_dir: Path | None = None,
        log: Callable[[str], None] = print,
    ) -> None:
        self.loaded = loaded
        self.workdir = workdir
        self.log = log
        scenario = loaded.scenario
        config = loaded.gateway_config
        self.external = admin_url is not None
        self.admin_url = (admin_url or f"http://{config.admin.address}:{config.admin.port}").rstrip(
            "/"
        )
        self.config_path = workdir / "gateway.yaml"
        # Started here, the gateway reads `registry.path` (relative to the
        # workdir), a link to the directory the controllers write, so a
        # registry outage can take it away from the gateway alone.
        self.registry_dir = registry_dir or workdir / "registry-store"
        self._registry_given = registry_dir is not None
        self._registry_path = workdir / (config.registry.path or "registry")
        self.ttl_s = scenario.registry.ttl_s
        self.regions = {c.name: c.region for c in scenario.clusters}
        self.node_regions = {n.name: c.region for c in scenario.clusters for n in c.nodes}
        self.sims: dict[SimKey, SimulatedCluster] = {}
        for cluster in scenario.clusters:
            for service in cluster.services:
                nodes = tuple(
                    SimNode(n.name, n.address, n.zone)
                    for n in cluster.nodes
                    if not service.nodes or n.name in service.nodes
                )
                self.sims[(cluster.name, service.name)] = SimulatedCluster(
                    cluster.name,
                    cluster.region,
                    nodes,
                    service.node_port,
                    namespace=service.namespace,
                    service=service.name,
                    label=service.label,
                )
        self.controllers: dict[str, Registry] = {}
        self.stopped: set[SimKey] = set()  # records whose controller was stopped
        self.etcd: EtcdMember | None = None
        if scenario.registry.type == "etcd":
            self.etcd = EtcdMember(config.registry.endpoints[0], workdir / "etcd-data")
        self.gateway: GatewayProcess | None = None
        """The gateway under test when the drill starts it (None: one already running)."""
        # HTTPS listeners with relative certificate paths get a drill CA's certificates
        self.ca: DrillCa | None = None
        self.ssl_context: ssl.SSLContext | None = None

    def targets(self, cluster: str, service: str | None = None) -> list[SimulatedCluster]:
        return [
            sim
            for (c, s), sim in self.sims.items()
            if c == cluster and (service is None or s == service)
        ]

    async def start(self) -> None:
        if self.external:
            await self.wait_ready()
            await self._find_external_gateway()
        else:
            self._check_gateway_ports()
        if self.etcd is not None:
            if self.external:
                raise SiteError("an etcd drill starts its own gateway (no --gateway-admin)")
            try:
                self.etcd.start()
                await self.etcd.wait_healthy()
            except (EtcdUnavailable, OSError) as exc:
                raise SiteError(f"the drill's etcd: {exc}") from None
            for cluster in self.regions:
                self.controllers[cluster] = EtcdRegistry(
                    [self.etcd.client_url], owner=f"drill-controller-{cluster}"
                )
        else:
            self.registry_dir.mkdir(parents=True, exist_ok=True)
            if not self.external:
                self._registry_path.symlink_to(self.registry_dir, target_is_directory=True)
            for cluster in self.regions:
                self.controllers[cluster] = FilesRegistry(self.registry_dir)
        for key, sim in self.sims.items():
            try:
                await sim.start()
            except OSError as exc:
                raise SiteError(self._bind_failure(key[0], sim, exc)) from None
            await self.publish(sim)
        if not self.external:
            self._start_gateway()
        await self.wait_ready()
        await self.wait_serving()

    @staticmethod
    def _bind_failure(cluster: str, sim: SimulatedCluster, exc: OSError) -> str:
        """One line: which node address is taken and, when /proc tells, by whom."""
        from portway.port_holder import port_taken

        for node in sim.nodes:
            if sim.up(node.name):
                continue  # opened by this drill just before
            with contextlib.suppress(OSError):
                taken = port_taken(node.address, sim.node_port)
                if taken is not None:
                    return f"cluster {cluster}, node {node.name}: {taken} (another run?)"
        return f"cluster {cluster} cannot open its NodePort {sim.node_port}: {exc.strerror or exc}"

    def _check_gateway_ports(self) -> None:
        """The gateway binds with SO_REUSEPORT, so a second drill's gateway would share the
        first one's ports and split its traffic silently: refuse to start instead."""
        from portway.port_holder import port_taken

        config = self.loaded.gateway_config
        wanted = [(lst.address, lst.port, f"listener {lst.name}") for lst in config.listeners]
        wanted.append((config.admin.address, config.admin.port, "the admin API"))
        if self.etcd is not None:
            wanted.append((self.etcd.host, self.etcd.port, "the drill's etcd"))
            wanted.append((self.etcd.host, self.etcd.port + 1, "the drill's etcd (peers)"))
        for address, port, what in wanted:
            taken = port_taken(address, port)
            if taken is not None:
                raise SiteError(f"the drill's gateway needs {address}:{port} for {what}: {taken}")

    async def publish(self, sim: SimulatedCluster) -> None:
        """The cluster's controller publishes (or renews) the service's record."""
        await self.controllers[sim.name].publish(sim.record(), self.ttl_s)
        self.stopped.discard((sim.name, sim.service))

    async def stop_controller(self, sims: list[SimulatedCluster]) -> None:
        """The controller stops renewing these records; they expire after the TTL."""
        for sim in sims:
            await self.controllers[sim.name].abandon(sim.record().key)
            self.stopped.add((sim.name, sim.service))

    async def republish_running(self) -> None:
        """Every controller still running publishes again (after a registry outage)."""
        for key, sim in self.sims.items():
            if key not in self.stopped:
                await self.publish(sim)

    def registry_link(self) -> Path:
        """The path the started gateway reads its registry from (a link)."""
        return self._registry_path

    def certificates(self, listener: str) -> list[tuple[Path, Path, tuple[str, ...]]]:
        """(cert file, key file, names) of a listener's drill-made certificates."""
        return [
            (self.workdir / cert, self.workdir / key, names)
            for cert, key, names in self.loaded.certificates.get(listener, ())
        ]

    def _make_certificates(self) -> None:
        if not self.loaded.certificates:
            return
        self.ca = DrillCa()
        self.ssl_context = self.ca.client_context()
        for listener in self.loaded.certificates:
            for cert_file, key_file, names in self.certificates(listener):
                install(self.ca.issue(names), cert_file, key_file)

    def _start_gateway(self) -> None:
        self.config_path.write_text(
            self.loaded.gateway_config_path.read_text(encoding="utf-8"), encoding="utf-8"
        )
        self._make_certificates()
        self.log(f"gateway: portway gateway --config {self.config_path} (cwd {self.workdir})")
        self.gateway = GatewayProcess(self.workdir, "gateway.yaml")
        self.gateway.start()

    async def _find_external_gateway(self) -> None:
        """The running gateway's config file (faults that rewrite it edit that file) and,
        unless given, the files registry it reads (its config's absolute path)."""
        from gateway.config.errors import ConfigError
        from gateway.config.loader import load_config

        try:
            body = await self.admin_json("/config")
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise SiteError(f"no gateway admin API at {self.admin_url}: {exc}") from None
        self.config_path = Path(str(body["source"]))
        if self._registry_given:
            return
        try:
            path = load_config(self.config_path).registry.path
        except (ConfigError, OSError) as exc:
            raise SiteError(f"cannot read the gateway's config {self.config_path}: {exc}") from None
        if path is None or not Path(path).is_absolute():
            raise SiteError(
                f"the running gateway's files registry ({path!r}) is relative to its "
                "working directory; give --registry DIR"
            )
        self.registry_dir = Path(path)

    async def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        try:
            await until_ready(self.admin_url, timeout_s, self.gateway)
        except NotReady as exc:
            if exc.exited:
                raise SiteError(f"the gateway exited: {exc.last_line}") from None
            where = "" if self.gateway is None else f"; its log: {self.gateway.log_path}"
            raise SiteError(
                f"the gateway at {self.admin_url} was not ready within {timeout_s:g} s{where}: "
                f"{exc.last_line}"
            ) from None

    async def wait_serving(self, timeout_s: float = 10.0, in_a_row: int = 20) -> None:
        """Until `in_a_row` requests, each on a new connection (so every worker of the
        gateway is likely asked), are answered by the drill's clusters: a gateway that
        was ready before the clusters published has to see their records first."""
        url = self.loaded.scenario.traffic.url
        deadline = time.monotonic() + timeout_s
        good = 0
        connector = aiohttp.TCPConnector(force_close=True, ssl=self.ssl_context or True)
        async with aiohttp.ClientSession(connector=connector, timeout=PROBE_TIMEOUT) as session:
            while good < in_a_row:
                if time.monotonic() > deadline:
                    raise SiteError(f"{url} is not answered by the drill's clusters")
                try:
                    async with session.get(url) as resp:
                        await resp.read()
                        answered = resp.status < 500 and SERVED_BY in resp.headers
                except (aiohttp.ClientError, TimeoutError):
                    answered = False
                good = good + 1 if answered else 0
                if not answered:
                    await asyncio.sleep(0.05)

    async def admin_json(self, path: str) -> Any:
        return json.loads(await self.admin_text(path))

    async def admin_text(self, path: str) -> str:
        async with (
            aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session,
            session.get(f"{self.admin_url}{path}") as resp,
        ):
            return await resp.text()

    async def stop(self) -> None:
        if self.gateway is not None:
            await self.gateway.stop()
        for controller in self.controllers.values():
            with contextlib.suppress(Exception):  # an etcd already stopped
                await controller.close()
        for sim in self.sims.values():
            await sim.stop()
        if self.etcd is not None:
            await self.etcd.stop()
