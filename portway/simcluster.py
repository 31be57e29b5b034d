"""Simulated clusters on loopback: the stand-in for Kubernetes in demos and drills.

A `SimulatedCluster` is what the gateway would see of a real cluster: a set of
nodes, each an address on 127.0.0.0/8 with the service's NodePort open, and
the record its controller would publish. Every node runs a tiny HTTP server
that answers with who it is (`x-served-by: label/node`, the label being
the cluster name unless set), so a client can
count where traffic went. Faults are the ones a drill injects: a node goes
down (its port closes), the whole cluster goes down, the cluster comes back,
a node answers slowly (`slow_node`), or a node is black-holed
(`black_hole_node`): its port is held by a socket that never accepts, so the
first connections hang unanswered in the accept queue and, once that is
full, the kernel drops further SYNs and connects time out, as with a
firewall that silently drops packets.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
from dataclasses import dataclass, field

from aiohttp import web

from portway.model import Node, ServicePort, ServiceRecord

SERVED_BY = "x-served-by"


@dataclass(frozen=True, slots=True)
class SimNode:
    """One node: name, loopback address, zone."""

    name: str
    address: str
    zone: str


@dataclass(slots=True)
class SimulatedCluster:
    """Nodes serving one Service's NodePort; see the module docstring."""

    name: str
    region: str
    nodes: tuple[SimNode, ...]
    node_port: int
    namespace: str = "shop"
    service: str = "web"
    label: str = ""
    _runners: dict[str, web.AppRunner] = field(default_factory=dict)
    _ready: dict[str, bool] = field(default_factory=dict)
    _delay_s: dict[str, float] = field(default_factory=dict)
    _holes: dict[str, socket.socket] = field(default_factory=dict)

    async def start(self) -> None:
        """Open the NodePort on every node that is not already up."""
        for node in self.nodes:
            await self.start_node(node.name)

    async def start_node(self, name: str) -> None:
        if name in self._runners:
            return
        hole = self._holes.pop(name, None)
        if hole is not None:
            hole.close()
        node = self._node(name)
        runner = web.AppRunner(self._app(node), access_log=None, handle_signals=False)
        await runner.setup()
        await web.TCPSite(runner, node.address, self.node_port, reuse_address=True).start()
        self._runners[name] = runner
        self._ready[name] = True

    async def stop_node(self, name: str) -> None:
        """The node dies: its port closes and open connections are cut."""
        runner = self._runners.pop(name, None)
        self._ready[name] = False
        if runner is not None:
            await runner.cleanup()

    async def stop(self) -> None:
        for name in list(self._runners):
            await self.stop_node(name)
        for hole in self._holes.values():
            hole.close()
        self._holes.clear()

    def slow_node(self, name: str, delay_s: float) -> None:
        """Every answer of the node waits `delay_s` first (0 restores it)."""
        self._node(name)
        self._delay_s[name] = delay_s

    async def black_hole_node(self, name: str) -> None:
        """The node stops answering without closing its port (see module docstring).

        Its published readiness is unchanged: a black hole is what a
        controller does not see. `start_node` lifts it.
        """
        node = self._node(name)
        runner = self._runners.pop(name, None)
        if runner is not None:
            await runner.cleanup()
        hole = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        hole.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        hole.bind((node.address, self.node_port))
        hole.listen(0)
        self._holes[name] = hole

    def up(self, name: str) -> bool:
        return name in self._runners

    def record(self, *, published_at: float | None = None) -> ServiceRecord:
        """What this cluster's controller publishes: every node with its readiness."""
        return ServiceRecord(
            cluster=self.name,
            namespace=self.namespace,
            service=self.service,
            region=self.region,
            zones=tuple(sorted({n.zone for n in self.nodes})),
            ports=(ServicePort("http", 80, self.node_port),),
            nodes=tuple(
                Node(n.name, n.address, n.zone, self._ready.get(n.name, True), 1)
                for n in self.nodes
            ),
            published_at=time.time() if published_at is None else published_at,
        )

    def _node(self, name: str) -> SimNode:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(f"cluster {self.name} has no node {name!r}")

    def _app(self, node: SimNode) -> web.Application:
        served_by = f"{self.label or self.name}/{node.name}"
        body = json.dumps({"cluster": self.name, "node": node.name, "zone": node.zone})

        async def answer(request: web.Request) -> web.Response:
            delay_s = self._delay_s.get(node.name, 0.0)
            if delay_s:
                await asyncio.sleep(delay_s)
            if request.can_read_body:
                await request.read()
            return web.Response(
                text=body, content_type="application/json", headers={SERVED_BY: served_by}
            )

        async def slow(request: web.Request) -> web.Response:
            await asyncio.sleep(float(request.query.get("s", "1")))
            return await answer(request)

        app = web.Application()
        app.router.add_route("GET", "/slow", slow)
        app.router.add_route("*", "/{tail:.*}", answer)
        return app
