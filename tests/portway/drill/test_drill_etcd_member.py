"""The drill's etcd member: really gone while stopped, back on its data when started."""

from __future__ import annotations

import base64
import random
import socket
from pathlib import Path

import aiohttp

from portway.drill.etcd_member import EtcdMember


def free_port() -> int:
    """A free client port whose peer port (+1) is free too, below the ephemeral range.

    The member is killed and started again on the same ports: a port the kernel
    hands out for outgoing connections (as bind(0) does) can be taken by some
    client in between, and the restart then fails with "address in use".
    """
    for _ in range(200):
        port = random.randrange(20000, 32000, 2)
        with socket.socket() as a, socket.socket() as b:
            try:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port pair below 32000")


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def test_an_outage_closes_the_port_and_the_return_keeps_the_data(tmp_path: Path) -> None:
    member = EtcdMember(f"http://127.0.0.1:{free_port()}", tmp_path / "data")
    member.start()
    try:
        await member.wait_healthy()
        async with aiohttp.ClientSession() as session:
            put = {"key": b64("drill/k"), "value": b64("v1")}
            async with session.post(f"{member.client_url}/v3/kv/put", json=put) as resp:
                assert resp.status == 200
            await member.stop()
            try:
                async with session.get(f"{member.client_url}/health") as resp:
                    raise AssertionError(f"etcd still answers: {resp.status}")
            except aiohttp.ClientConnectorError:
                pass
            member.start()
            await member.wait_healthy()
            got = {"key": b64("drill/k")}
            async with session.post(f"{member.client_url}/v3/kv/range", json=got) as resp:
                body = await resp.json()
        assert base64.b64decode(body["kvs"][0]["value"]) == b"v1"
    finally:
        await member.stop()
