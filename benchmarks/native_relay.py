"""A native relay calling Python once per request: what the next data plane could reach.

    python benchmarks/native_relay.py LISTEN_PORT UPSTREAM_PORT [--decide none|route]

`benchmarks/native_relay.c` is a measurement probe, not product code: an epoll
loop in C that accepts client connections, frames request heads, adds the
header every proxy in `http.sh` adds, and relays response bytes, holding the
GIL only outside `epoll_wait`. With `--decide route` it calls the real routing
core once per request (`RoutingTable.route_http` on the http.sh table, the
decision portway makes per request); with `none` it calls nothing (the C upper
bound). `http.sh` runs it as the targets `native` and `nativepy`, side by side
with HAProxy and portway. Built here with the system C compiler into a temporary
directory (gcc and the Python headers: both come with the Debian Python this
project targets). Prints `ready <pid>` once listening.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import sysconfig
import tempfile
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CONFIG = """
listeners:
  - {name: web, protocol: HTTP, port: 18103}
backends:
  - name: app
    endpoints: [{address: 127.0.0.1, port: 18100}]
routes:
  - name: bench
    rules:
      - matches: [{path: {type: PathPrefix, value: /}}]
        backendRefs: [{name: app}]
"""


def build(work: Path) -> ModuleType:
    """Compile the probe and import it."""
    target = work / f"native_relay_probe{sysconfig.get_config_var('EXT_SUFFIX')}"
    include = sysconfig.get_paths()["include"]
    source = ROOT / "benchmarks" / "native_relay.c"
    cmd = ["cc", "-O2", "-shared", "-fPIC", f"-I{include}", str(source), "-o", str(target)]
    subprocess.run(cmd, check=True)
    spec = importlib.util.spec_from_file_location("native_relay_probe", target)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def route_decider() -> Callable[[bytes], int]:
    """The routing core's decision for a path, on the table http.sh's portway runs."""
    from gateway.config.loader import load_config_text
    from gateway.context import GatewayContext
    from gateway.http.plan import compile_http_table
    from gateway.routing.decision import RequestFacts

    config = load_config_text(CONFIG)
    table = compile_http_table(config, [], version="probe", seed=1)
    state = GatewayContext(table=table, settings=config.gateway).state
    facts = RequestFacts("GET", "127.0.0.1", "/", listener="web")
    route = table.route_http

    def decide(path: bytes) -> int:
        facts.path = path.decode("latin-1")
        return 0 if route(facts, state).endpoint is not None else 1

    return decide


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("port", type=int)
    parser.add_argument("upstream_port", type=int)
    parser.add_argument("--decide", choices=["none", "route"], default="route")
    args = parser.parse_args()
    decide = route_decider() if args.decide == "route" else None
    with tempfile.TemporaryDirectory() as work:
        probe = build(Path(work))
        probe.serve(args.port, args.upstream_port, decide)


if __name__ == "__main__":
    main()
