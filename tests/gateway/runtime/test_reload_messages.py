"""One bad reload is one log line, whatever the number of workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(60)]
ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_rejected_reload_is_logged_once_by_a_supervisor_with_two_workers(
    tmp_path: Path,
) -> None:
    port, admin = free_port(), free_port()
    config = tmp_path / "gw.yaml"
    config.write_text(
        f"""\
version: 1
listeners: [{{name: web, protocol: HTTP, address: 127.0.0.1, port: {port}}}]
routes: [{{name: r, rules: [{{backendRefs: [{{name: b}}]}}]}}]
backends: [{{name: b, endpoints: [{{address: 127.0.0.1, port: {free_port()}}}]}}]
admin: {{address: 127.0.0.1, port: {admin}}}
"""
    )
    log_path = tmp_path / "gw.log"
    args = [sys.executable, "-m", "portway", "gateway", "--config", str(config)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*args, "--workers", "2", "--drain-timeout", "1"],
            stderr=log,
            stdout=log,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
        )
    try:

        def lines(msg: str) -> list[dict[str, object]]:
            out = []
            for line in log_path.read_text().splitlines():
                entry = json.loads(line)
                if str(entry.get("msg", "")).startswith(msg):
                    out.append(entry)
            return out

        deadline = time.monotonic() + 20
        while len(lines("gateway worker serving")) < 2:
            assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        with config.open("a") as handle:
            handle.write("routes: [oops\n")
        while not lines("config rejected"):
            assert time.monotonic() < deadline, log_path.read_text()
            time.sleep(0.1)
        time.sleep(1.5)  # the workers saw the same change by now
        (rejected,) = lines("config rejected")
        assert rejected["level"] == "error"
        assert str(rejected["issues"]).count("YAML syntax error") == 1
    finally:
        proc.terminate()
        proc.wait(15)
