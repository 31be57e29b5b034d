"""The control channel between the supervisor and each of its workers: the worker's end.

Each worker started by the supervisor (`gateway.runtime.supervisor.
WorkerProcess`) is given one end of a socketpair (`--control-fd`).
Newline-delimited JSON. Supervisor → worker: `{"op": "report", "id": N,
"endpoints": bool, "availability": bool}`, answered by one report line
(`gateway.runtime.worker_report`) carrying the same `id`, so a late answer to
a timed-out request is recognised and skipped; and `{"op": "drain_endpoint",
"key": K, "draining": bool}`, not answered. A worker whose control channel
closes (the supervisor died) drains and exits.
"""

from __future__ import annotations

import asyncio
import json
import socket
from typing import Any, Protocol


class ControlledWorker(Protocol):
    """What the channel asks of a worker (`gateway.runtime.server.Worker`)."""

    async def reports(
        self, *, per_endpoint: bool = False, availability: bool = True, rendered: bool = False
    ) -> list[dict[str, Any]]: ...

    async def set_endpoint_draining(self, key: str, draining: bool) -> None: ...

    def request_stop(self) -> None: ...


async def follow_control(fd: int, worker: ControlledWorker) -> None:
    """Answer the supervisor on the channel `fd`; stop the worker when it goes away."""
    sock = socket.socket(fileno=fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)
    try:
        while line := await reader.readline():
            message = json.loads(line)
            if message.get("op") == "report":
                [report] = await worker.reports(
                    per_endpoint=bool(message.get("endpoints")),
                    availability=bool(message.get("availability", True)),
                )
                answer = {**report, "id": message.get("id")}
                text = await asyncio.to_thread(json.dumps, answer)  # MBs at fleet size
                writer.write(text.encode() + b"\n")
                await writer.drain()
            elif message.get("op") == "drain_endpoint":
                await worker.set_endpoint_draining(message["key"], bool(message["draining"]))
    finally:
        worker.request_stop()
