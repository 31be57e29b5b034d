"""Run the bare data plane for benchmarks and memory tests: one process, no admin, no registry.

    python benchmarks/gateway_launcher.py CONFIG.yaml [--observer metrics|null]

Loads the config, compiles the routing table with the real compiler (static
endpoints only), and serves every listener with `gateway.runtime.listener.start_listener`
on uvloop when installed. `--observer metrics` wires the runtime's observer
(Prometheus metrics on) when `gateway.ops.observer` provides one; default null.
Prints `ready <pid>` on stdout once listening.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.loader import load_config
from gateway.context import GatewayContext
from gateway.http.plan import compile_http_table
from gateway.runtime.listener import start_listener
from gateway.runtime.server import freeze_startup_heap


def _observer(kind: str) -> object | None:
    if kind != "metrics":
        return None
    try:
        from gateway.ops.observer import GatewayObserver  # type: ignore[attr-defined]
    except ImportError:
        return None
    return GatewayObserver()


async def serve(path: str, observer: str) -> None:
    config = load_config(path)
    table = compile_http_table(config, [], version="bench", seed=1)
    ctx = GatewayContext(table=table, settings=config.gateway)
    chosen = _observer(observer)
    if chosen is not None:
        ctx.observer = chosen  # type: ignore[assignment]
    servers = [await start_listener(ctx, lst, reuse_port=False) for lst in config.listeners]
    freeze_startup_heap()  # as a `portway gateway` worker does
    print(f"ready {os.getpid()}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        for server in servers:
            server.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("config")
    parser.add_argument("--observer", default="null", choices=["null", "metrics"])
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        asyncio.run(serve(args.config, args.observer))
    else:
        uvloop.run(serve(args.config, args.observer))


if __name__ == "__main__":
    main()
