"""A `portway gateway` child process, as the drill and the demo run it.

Started in a working directory with the config it names, its standard error
(the gateway's JSON log) in `gateway.log` there, and dying with the process
that started it (`child.dies_with_parent`), so a killed drill or demo leaves
no gateway holding the ports its next run needs. Stopped with SIGTERM, which
drains, and killed if it has not exited within `STOP_TIMEOUT_S`. Ready when
its admin API answers `/readyz` with 200 (`wait_ready`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Final

import aiohttp

from portway.drill.child import dies_with_parent

STOP_TIMEOUT_S: Final = 15.0
LOG_NAME: Final = "gateway.log"
READY_TIMEOUT_S: Final = 20.0
PROBE_TIMEOUT: Final = aiohttp.ClientTimeout(total=2.0)  # a server that accepts and never answers


class NotReady(Exception):
    """The gateway did not become ready: its process `exited`, or the time ran out;
    `last_line` is the last line it logged (callers word their own error from these)."""

    def __init__(self, message: str, *, exited: bool, last_line: str) -> None:
        super().__init__(message)
        self.exited = exited
        self.last_line = last_line


class GatewayProcess:
    """One gateway child process (module docstring); `options` follow `--config CONFIG`."""

    def __init__(self, workdir: Path, config: str | Path, *options: str) -> None:
        self.workdir = workdir
        self.log_path = workdir / LOG_NAME
        self.args = [sys.executable, "-m", "portway", "gateway", "--config", str(config), *options]
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.args,
                cwd=self.workdir,
                stdout=subprocess.DEVNULL,
                stderr=log,
                preexec_fn=dies_with_parent(),
            )

    @property
    def exited(self) -> bool:
        """Started, and no longer running."""
        return self.proc is not None and self.proc.poll() is not None

    def log_lines(self) -> list[str] | None:
        """The lines the gateway logged so far; None when it wrote no log."""
        try:
            return self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return None

    def last_line(self) -> str:
        """The last line the gateway logged, or why there is none, for an error message."""
        lines = self.log_lines()
        if lines is None:
            return "(no log)"
        return lines[-1] if lines else "(empty log)"

    async def wait_ready(self, admin_url: str, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Until `admin_url`/readyz answers 200; `NotReady` as soon as the process exits,
        or after `timeout_s`."""
        await until_ready(admin_url, timeout_s, self)

    async def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM (the gateway drains), then SIGKILL after `timeout_s`; nothing if not running."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(proc.wait, timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            await asyncio.to_thread(proc.wait)


async def until_ready(
    admin_url: str, timeout_s: float = READY_TIMEOUT_S, gateway: GatewayProcess | None = None
) -> None:
    """`GatewayProcess.wait_ready`; with `gateway` None, for a gateway someone else runs
    (no process to watch, no log: only the timeout ends the wait)."""
    deadline = time.monotonic() + timeout_s
    async with aiohttp.ClientSession(timeout=PROBE_TIMEOUT) as session:
        while time.monotonic() < deadline:
            if gateway is not None and gateway.exited:
                line = gateway.last_line()
                raise NotReady(f"the gateway exited: {line}", exited=True, last_line=line)
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                async with session.get(f"{admin_url}/readyz") as resp:
                    if resp.status == 200:
                        return
            await asyncio.sleep(0.05)
    line = "(no log)" if gateway is None else gateway.last_line()
    raise NotReady(
        f"the gateway at {admin_url} was not ready within {timeout_s:g} s: {line}",
        exited=False,
        last_line=line,
    )
