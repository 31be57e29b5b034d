"""The optional mirror of published endpoints into Consul's catalog, for other Consul users.

With `ConsulRegistry(mirror_catalog=True)` every published record is also
registered with the local agent as catalog services: service
`<namespace>-<service>`, one instance per (node, port), tagged `cluster=`,
`zone=` and `region=`. A republish deregisters the instances the record no
longer has; a withdraw deregisters all of the key's. portway itself never
reads the catalog: KV stays the source of truth, so the mirror is best kept
out of the backend's session and listing logic.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import consul.aio

from portway.model import ServiceKey, ServiceRecord


class CatalogMirror:
    """Registers a record's endpoints as catalog instances and remembers them per key.

    `client` gives the backend's client (made lazily); `guard` awaits a call and
    turns transport errors into `RegistryUnavailable`.
    """

    __slots__ = ("_client", "_guard", "_mirrored")

    def __init__(
        self,
        client: Callable[[], consul.aio.Consul],
        guard: Callable[[Awaitable[Any]], Awaitable[Any]],
    ) -> None:
        self._client = client
        self._guard = guard
        self._mirrored: dict[ServiceKey, list[str]] = {}

    async def register(self, record: ServiceRecord) -> None:
        """Register one instance per node and port of `record`; drop the key's stale ones."""
        agent = self._client().agent
        ids = []
        for node in record.nodes:
            for port in record.ports:
                sid = f"portway-{record.cluster}-{record.namespace}-{record.service}-{node.name}"
                sid += f"-{port.name or port.port}"
                tags = [f"cluster={record.cluster}", f"zone={node.zone}"]
                tags.append(f"region={record.region}")
                await self._guard(
                    agent.service.register(
                        f"{record.namespace}-{record.service}",
                        service_id=sid,
                        address=node.address,
                        port=port.node_port,
                        tags=tags,
                    )
                )
                ids.append(sid)
        for stale in set(self._mirrored.get(record.key, [])) - set(ids):
            await self._guard(agent.service.deregister(stale))
        self._mirrored[record.key] = ids

    async def deregister(self, key: ServiceKey) -> None:
        """Deregister every instance registered for `key`."""
        for sid in self._mirrored.pop(key, []):
            await self._guard(self._client().agent.service.deregister(sid))
