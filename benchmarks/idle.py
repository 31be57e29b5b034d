"""Memory per idle keep-alive client connection: portway vs nginx vs HAProxy.

    .venv/bin/python benchmarks/idle.py [--connections 10000] [--waves 1]

For each proxy (each in front of the same nginx `return 200` upstream): start
it, make one warm-up request, read its RSS, open N client connections that
each send one keep-alive request and read the answer (100 at a time, so the
upstream pools stay small), then read the RSS again while all N sit idle
(`IDLE_S` after the last one). `--waves K` opens them in K waves `IDLE_S`
apart, as connections arrive over time at a long-lived gateway: what an idle
connection frees (portway drops its parser 0.1-0.2 s into an idle period) is then reused by later
ones, which a single burst cannot show (RSS keeps its peak). Reports
(RSS after - RSS before) / N. Proxies missing from PATH are skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UP, PW, NGX, HAP = 18200, 18201, 18202, 18203
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
IDLE_S = 2.5
"""How long the connections sit idle before RSS is read: well past the 0.1-0.2 s after
which an idle portway connection drops its parser (`DeadlineWatch.shed_s`); nginx and
HAProxy free a keep-alive connection's request buffers as soon as it is idle."""


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def raise_nofile() -> None:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 65536), hard))


def wait_port(port: int) -> None:
    for _ in range(200):
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} never opened")


async def open_idle(port: int, count: int) -> list[asyncio.StreamWriter]:
    writers: list[asyncio.StreamWriter] = []
    sem = asyncio.Semaphore(100)

    async def one() -> None:
        async with sem:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(REQUEST)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            writers.append(writer)

    await asyncio.gather(*(one() for _ in range(count)))
    return writers


async def measure(name: str, pid: int, port: int, count: int, waves: int = 1) -> float:
    await open_idle(port, 1)
    await asyncio.sleep(0.3)
    before = rss_kib(pid)
    writers: list[asyncio.StreamWriter] = []
    for wave in range(waves):
        writers += await open_idle(port, count // waves + (wave < count % waves))
        await asyncio.sleep(IDLE_S)
    after = rss_kib(pid)
    per_conn = (after - before) / count
    print(f"{name:8} rss {before:7d} KiB → {after:7d} KiB: {per_conn:5.2f} KiB per idle connection")
    for writer in writers:
        writer.close()
    await asyncio.sleep(0.5)
    return per_conn


def start(cmd: list[str], work: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, cwd=work, preexec_fn=raise_nofile, stdout=subprocess.DEVNULL)


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=10_000)
    parser.add_argument("--waves", type=int, default=1)
    args = parser.parse_args()
    raise_nofile()
    nginx, haproxy = shutil.which("nginx"), shutil.which("haproxy")
    if nginx is None:
        print("nginx is needed for the upstream: apt-get install -y nginx", file=sys.stderr)
        return 2
    procs: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        common = "daemon off; master_process off; worker_processes 1; error_log /dev/null;"
        (work / "up.conf").write_text(
            f"{common} pid {work}/up.pid; worker_rlimit_nofile 60000;"
            " events { worker_connections 30000; } http { access_log off;"
            f' server {{ listen 127.0.0.1:{UP}; location / {{ return 200 "ok"; }} }} }}'
        )
        (work / "ngx.conf").write_text(
            f"{common} pid {work}/ngx.pid; worker_rlimit_nofile 60000;"
            " events { worker_connections 30000; } http { access_log off;"
            f" upstream app {{ server 127.0.0.1:{UP}; keepalive 64; }}"
            f" server {{ listen 127.0.0.1:{NGX}; keepalive_timeout 600s; keepalive_requests 100000;"
            " location / { proxy_pass http://app; proxy_http_version 1.1;"
            ' proxy_set_header Connection ""; } } }'
        )
        (work / "hap.cfg").write_text(
            "global\n  nbthread 1\n  maxconn 10500\n  no strict-limits\n"
            "defaults\n  mode http\n  timeout connect 2s\n  timeout client 600s\n"
            "  timeout server 30s\n  timeout http-keep-alive 600s\n  http-reuse always\n"
            f"frontend fe\n  bind 127.0.0.1:{HAP}\n  default_backend be\n"
            f"backend be\n  server s1 127.0.0.1:{UP}\n"
        )
        (work / "pw.yaml").write_text(
            f"listeners: [{{name: web, protocol: HTTP, port: {PW}}}]\n"
            f"backends: [{{name: app, endpoints: [{{address: 127.0.0.1, port: {UP}}}]}}]\n"
            "routes: [{name: r, rules: [{backendRefs: [{name: app}]}]}]\n"
        )
        try:
            procs.append(start([nginx, "-c", str(work / "up.conf")], work))
            wait_port(UP)
            launcher = str(ROOT / "benchmarks" / "gateway_launcher.py")
            targets = [("portway", [sys.executable, launcher, str(work / "pw.yaml")], PW)]
            targets.append(("nginx", [nginx, "-c", str(work / "ngx.conf")], NGX))
            if haproxy:
                targets.append(("haproxy", [haproxy, "-db", "-f", str(work / "hap.cfg")], HAP))
            print(f"{args.connections} idle keep-alive connections per proxy, {args.waves} wave(s)")
            for name, cmd, port in targets:
                proc = start(cmd, work)
                procs.append(proc)
                wait_port(port)
                await measure(name, proc.pid, port, args.connections, args.waves)
                proc.terminate()
                proc.wait()
        finally:
            for proc in procs:
                proc.terminate()
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
