"""Fault injectors: each scenario fault as something done to the site, and undone.

Each `Injection` is built from one `Fault` and the `DrillSite`; `inject()`
runs at the fault's `at`, `recover()` at its `until` (or when the drill ends,
so a drill never leaves a fault behind). What each kind does, for real:

- kill-endpoints: the nodes' NodePorts close (connections refused); the
  controller keeps publishing them Ready unless `publishNotReady`, since a
  real one notices a dead node only after the node-monitor grace period.
  Recovery: the ports reopen and the controller publishes them Ready.
- stop-controller: the cluster's controller stops renewing its records; the
  nodes keep serving; the records expire after the TTL. Recovery: it
  publishes again.
- black-hole: the nodes' ports are held by sockets that never accept (see
  `portway.simcluster`): requests hang, connects time out. Recovery: the
  nodes serve again.
- slow: every answer of the nodes waits `delay` first.
- registry-outage: files: the registry path the gateway reads vanishes (it
  is a link to the directory the controllers write, and the link is
  removed); the controllers keep publishing. Recovery: the link is back.
  etcd: the drill's etcd member is killed (every client's calls fail);
  recovery starts it again on its data, and the controllers publish again.
  A probe reads the gateway's /metrics until it says its registry is down
  (`portway_registry_up` 0): `took_effect_at`, the proof the outage was real.
- rotate-certificate: the listener's certificates (made by the drill's CA)
  are replaced by new ones, files swapped atomically; the gateway polls its
  certificate files. A probe makes fresh TLS handshakes until one presents
  the new certificate: `took_effect_at`. Not undone.
- shift-weights: the gateway's config file is rewritten with the rule's new
  backend weights and/or canary percent (the gateway reloads it on change).
  Recovery: the original text is written back (a weight shift back, which is
  a canary rollback without the rollout engine).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from portway.drill.certs import install, serial_of
from portway.drill.gateway_checks import shifted_config
from portway.drill.scenario import Fault, FaultKind
from portway.drill.site import DrillSite, SiteError
from portway.registry.record_files import write_atomic
from portway.simcluster import SimulatedCluster

REGISTRY_UP = "portway_registry_up"


def registry_down(exposition: str) -> bool:
    """Whether a gateway's /metrics text says a registry feed is down: a
    `portway_registry_up` sample at 0. Raises ValueError when one of that
    gauge's lines is not exposition text.

    Only the lines starting with the gauge's name go to the parser: the probe
    shares the event loop with the drill's traffic, and parsing a whole
    /metrics (8 ms at 600 lines) 20 times a second would be measured as slow
    requests."""
    lines = "".join(f"{line}\n" for line in exposition.split("\n") if line.startswith(REGISTRY_UP))
    return any(
        sample.value == 0
        for family in text_string_to_metric_families(lines)
        if family.name == REGISTRY_UP
        for sample in family.samples
    )


@dataclass(slots=True)
class Injection:
    """One fault, bound to the site; `served_by` names the answers its target gives."""

    fault: Fault
    site: DrillSite
    sims: list[SimulatedCluster] = field(default_factory=list)
    served_by: frozenset[str] = frozenset()
    injected_at: float | None = None
    recovered_at: float | None = None
    took_effect_at: float | None = None
    _saved_config: str | None = None
    _probe: asyncio.Task[None] | None = None

    @property
    def kind(self) -> FaultKind:
        return self.fault.kind

    def describe(self) -> str:
        f = self.fault
        target = f.cluster or f.route or f.listener or ""
        if f.nodes:
            target += f" nodes {', '.join(f.nodes)}"
        if f.service:
            target += f" service {f.service}"
        extra = ""
        if f.delay_s:
            extra = f" +{f.delay_s * 1000:g} ms"
        if f.weights:
            extra = " weights " + ", ".join(f"{k}={v}" for k, v in f.weights.items())
        if f.canary_percent is not None:
            extra += f" canary {f.canary_percent:g}%"
        return f"{f.kind.value} {target}{extra}".strip()

    def _nodes(self, sim: SimulatedCluster) -> list[str]:
        own = [n.name for n in sim.nodes]
        return [n for n in own if not self.fault.nodes or n in self.fault.nodes]

    async def inject(self) -> None:
        kind = self.fault.kind
        if kind is FaultKind.KILL_ENDPOINTS:
            for sim in self.sims:
                for node in self._nodes(sim):
                    await sim.stop_node(node)
                if self.fault.publish_not_ready:
                    await self.site.publish(sim)
        elif kind is FaultKind.STOP_CONTROLLER:
            await self.site.stop_controller(self.sims)
        elif kind is FaultKind.BLACK_HOLE:
            for sim in self.sims:
                for node in self._nodes(sim):
                    await sim.black_hole_node(node)
        elif kind is FaultKind.SLOW:
            for sim in self.sims:
                for node in self._nodes(sim):
                    sim.slow_node(node, self.fault.delay_s or 0.0)
        elif kind is FaultKind.REGISTRY_OUTAGE:
            if self.site.etcd is not None:
                await self.site.etcd.stop()
            else:
                self.site.registry_link().unlink()
            self._probe = asyncio.create_task(self._watch_registry_down())
        elif kind is FaultKind.SHIFT_WEIGHTS:
            text = self.site.config_path.read_text(encoding="utf-8")
            self._saved_config = text
            write_atomic(self.site.config_path, shifted_config(text, self.fault).encode())
        elif kind is FaultKind.ROTATE_CERTIFICATE:
            await self._rotate()
        else:
            raise AssertionError(f"no injector for {kind.value}")

    async def _rotate(self) -> None:
        ca = self.site.ca
        if ca is None:
            raise SiteError("rotate-certificate needs the drill to make the certificates")
        files = self.site.certificates(self.fault.listener or "")
        serials = set()
        for cert_file, key_file, names in files:
            issued = ca.issue(names)
            install(issued, cert_file, key_file)
            serials.add(issued.serial)
        listener = next(
            lst
            for lst in self.site.loaded.gateway_config.listeners
            if lst.name == self.fault.listener
        )
        sni = files[0][2][0] if files else None
        self._probe = asyncio.create_task(
            self._watch(listener.address, listener.port, sni, serials)
        )

    async def _watch(self, address: str, port: int, sni: str | None, serials: set[int]) -> None:
        """Fresh handshakes every 20 ms until one presents a new certificate."""
        ctx = self.site.ssl_context
        while True:
            with contextlib.suppress(OSError, asyncio.TimeoutError):
                async with asyncio.timeout(1.0):
                    _, writer = await asyncio.open_connection(
                        address, port, ssl=ctx, server_hostname=sni
                    )
                der = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
                writer.close()
                if der and serial_of(der) in serials:
                    self.took_effect_at = time.monotonic()
                    return
            await asyncio.sleep(0.02)

    async def _watch_registry_down(self) -> None:
        """The gateway's /metrics every 50 ms until its registry feed says it is down."""
        while True:
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError, ValueError):
                if registry_down(await self.site.admin_text("/metrics")):
                    self.took_effect_at = time.monotonic()
                    return
            await asyncio.sleep(0.05)

    async def stop_probe(self) -> None:
        if self._probe is not None and not self._probe.done():
            self._probe.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._probe

    async def recover(self) -> None:
        kind = self.fault.kind
        if kind in (FaultKind.KILL_ENDPOINTS, FaultKind.BLACK_HOLE):
            for sim in self.sims:
                for node in self._nodes(sim):
                    await sim.start_node(node)
                await self.site.publish(sim)
        elif kind is FaultKind.STOP_CONTROLLER:
            for sim in self.sims:
                await self.site.publish(sim)
        elif kind is FaultKind.SLOW:
            for sim in self.sims:
                for node in self._nodes(sim):
                    sim.slow_node(node, 0.0)
        elif kind is FaultKind.REGISTRY_OUTAGE and self.site.etcd is not None:
            self.site.etcd.start()
            await self.site.etcd.wait_healthy()
            await self.site.republish_running()  # controllers whose leases ran out
        elif kind is FaultKind.REGISTRY_OUTAGE:
            link = self.site.registry_link()
            link.symlink_to(self.site.registry_dir, target_is_directory=True)
        elif kind is FaultKind.SHIFT_WEIGHTS and self._saved_config is not None:
            write_atomic(self.site.config_path, self._saved_config.encode())


def bind(fault: Fault, site: DrillSite) -> Injection:
    """The injection of `fault` on `site`, with the answers its target would give."""
    if fault.kind is FaultKind.REGISTRY_OUTAGE and site.external:
        raise SiteError("registry-outage needs the drill to start the gateway (no --gateway-admin)")
    sims = site.targets(fault.cluster, fault.service) if fault.cluster else []
    served_by = frozenset(
        f"{sim.label or sim.name}/{node.name}"
        for sim in sims
        for node in sim.nodes
        if not fault.nodes or node.name in fault.nodes
    )
    return Injection(fault, site, sims, served_by)
