"""A `portway gateway` child process, as the drill and the demo run it.

Started in a working directory with the config it names, its standard error
(the gateway's JSON log) in `gateway.log` there, and dying with the process
that started it (`child.dies_with_parent`), so a killed drill or demo leaves
no gateway holding the ports its next run needs. Stopped with SIGTERM, which
drains, and killed if it has not exited within `STOP_TIMEOUT_S`.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path
from typing import Final

from portway.drill.child import dies_with_parent

STOP_TIMEOUT_S: Final = 15.0
LOG_NAME: Final = "gateway.log"


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
