"""The HTTP proxy's own Python cost per request, without sockets or a load generator.

    python benchmarks/proxy_cost.py [--requests N] [--repeats R] [--profile] [--filter NAME]

`benchmarks/http.sh` measures the whole process on a shared machine, where a
few percent is lost in the noise. This drives one `HttpProxy` and one pooled
`UpstreamConnection` with in-memory transports: each request is the bytes wrk
sends (`GET /`, Host only), answered by the bytes nginx sends (200, five
headers, a 2-byte body), through routing (the same table as http.sh: one
PathPrefix rule with a request header set) and the metrics observer. It
prints the best process-CPU microseconds per request over R runs of N (the
minimum filters out other processes), and with `--profile` the functions by
own time (cProfile inflates every figure; use it for shares and call counts).
Compare two trees by running it in each, interleaved.

`--filter NAME` puts one filter of `FILTERS` on the rule instead of the
request header set (`none` for no filter at all), so a filter's own cost is
its figure minus `none`'s, measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import hashlib
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gateway.config.loader import load_config_text
from gateway.context import GatewayContext
from gateway.http.filters.shared_buckets import SharedBucketTable, attach
from gateway.http.plan import compile_http_table
from gateway.http.proxy import HttpProxy
from gateway.ops.observer import GatewayObserver
from gateway.routing.decision import RequestFacts
from gateway.upstream.pool import PoolSet, UpstreamConnection

CONFIG = """
listeners:
  - {{name: web, protocol: HTTP, port: 18103}}
backends:
  - name: app
    endpoints: [{{address: 127.0.0.1, port: 18100}}]
routes:
  - name: bench
{route}    rules:
      - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
        backendRefs: [{{name: app}}]
{filters}"""

API_KEY_SHA256 = hashlib.sha256(b"bench-key").hexdigest()
JWT_SECRET = b"bench-hmac-secret-of-32-bytes-ok"
JWKS_FILE = Path(tempfile.gettempdir()) / f"proxy-cost-jwks-{os.getpid()}.json"
JWT_TOKEN = jwt.encode(
    {"iss": "bench", "sub": "alice", "exp": int(time.time()) + 3600}, JWT_SECRET, "HS256"
)

FILTERS = {
    "none": "",
    "request-header-set": "requestHeaders: {set: [{name: X-Bench, value: '1'}]}",
    "response-header-set": "responseHeaders: {set: [{name: X-Bench, value: '1'}]}",
    "cors": "cors: {allowOrigins: ['https://app.example.com']}",
    "mirror-0": "mirrors: [{backend: app, percent: 0}]",
    "rewrite-prefix": "urlRewrite: {replacePrefixMatch: /v2}",
    "rate-limit-worker": "rateLimit: {requests: 1000000000, scope: worker}",
    "rate-limit-shared": "rateLimit: {requests: 1000000000, scope: shared}",
    "access": "access: {default: deny, rules: [{action: allow, cidrs: [10.0.0.0/8, 127.0.0.0/8]}]}",
    "auth-api-key": f"auth: {{apiKey: {{keys: [{{id: bench, sha256: '{API_KEY_SHA256}'}}]}}}}",
    "auth-jwt": f"auth: {{jwt: {{issuer: bench, jwksFile: '{JWKS_FILE}', algorithms: [HS256]}}}}",
}
"""Filters `--filter` can put on the rule (the request carries no Origin, so CORS
only looks; the mirror at 0 % never copies; the rewrite matches PathPrefix /api;
the rate limits never refuse, `shared` in a table made here as a supervisor would)
or on the route (`access` admits the client, 127.0.0.1, by its second CIDR;
`auth-api-key` finds the request's key, `auth-jwt` its HS256 token (same every
request, as a client sends it), strips it and passes the identity on)."""
ROUTE_SETTINGS = frozenset({"access", "auth-api-key", "auth-jwt"})


def config_text(name: str) -> str:
    body = FILTERS[name]
    if name in ROUTE_SETTINGS:
        return CONFIG.format(route=f"    {body}\n", prefix="/", filters="")
    if name.startswith("rate-limit"):  # a rule setting, not one of its filters
        return CONFIG.format(route="", prefix="/", filters=f"        {body}\n")
    filters = f"        filters:\n          {body}\n" if body else ""
    prefix = "/api" if name == "rewrite-prefix" else "/"
    return CONFIG.format(route="", prefix=prefix, filters=filters)


REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18103\r\n\r\n"
REWRITE_REQUEST = b"GET /api/x HTTP/1.1\r\nHost: 127.0.0.1:18103\r\n\r\n"
KEYED_REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18103\r\nX-Api-Key: bench-key\r\n\r\n"
TOKEN_REQUEST = (
    b"GET / HTTP/1.1\r\nHost: 127.0.0.1:18103\r\nAuthorization: Bearer "
    + JWT_TOKEN.encode()
    + b"\r\n\r\n"
)
RESPONSE = (
    b"HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Wed, 25 Nov 2026 14:00:00 GMT\r\n"
    b"Content-Type: application/octet-stream\r\nContent-Length: 2\r\n"
    b"Connection: keep-alive\r\n\r\nok"
)


class MemoryTransport:
    """Counts writes; closing means the exchange went wrong, so it stops the run."""

    def __init__(self) -> None:
        self.writes = 0

    def write(self, data: bytes) -> None:
        self.writes += 1

    def writelines(self, data: Any) -> None:
        self.writes += 1

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def pause_reading(self) -> None:
        return None

    def resume_reading(self) -> None:
        return None

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        raise SystemExit("the proxy closed a connection: the exchange failed")

    abort = close


async def measure(requests: int, repeats: int, profile: bool, filter_name: str) -> None:
    if filter_name == "rate-limit-shared":
        attach(SharedBucketTable.create(1 << 16, 2).fd, 0)
    if filter_name == "auth-jwt":
        secret = base64.urlsafe_b64encode(JWT_SECRET).rstrip(b"=").decode()
        JWKS_FILE.write_text(json.dumps({"keys": [{"kty": "oct", "k": secret, "alg": "HS256"}]}))
    config = load_config_text(config_text(filter_name))
    request = {
        "rewrite-prefix": REWRITE_REQUEST,
        "auth-api-key": KEYED_REQUEST,
        "auth-jwt": TOKEN_REQUEST,
    }.get(filter_name, REQUEST)
    table = compile_http_table(config, [], version="bench", seed=1)
    ctx = GatewayContext(table=table, settings=config.gateway)
    ctx.observer = GatewayObserver()
    ctx.pools = PoolSet(asyncio.get_running_loop())
    path = "/api/x" if filter_name == "rewrite-prefix" else "/"
    decision = table.route_http(RequestFacts("GET", "127.0.0.1", path, listener="web"), ctx.state)
    pool = ctx.pools.pool(decision.endpoint, decision.backend)
    upstream = UpstreamConnection(pool)
    upstream.connection_made(MemoryTransport())  # type: ignore[arg-type]
    pool.total += 1
    pool.idle.append(upstream)
    proxy = HttpProxy(ctx, "web")
    client = MemoryTransport()
    proxy.connection_made(client)  # type: ignore[arg-type]

    def run(n: int) -> None:
        for _ in range(n):
            proxy.data_received(request)
            upstream.data_received(RESPONSE)

    run(1000)
    if client.writes != 1000 or pool.idle != [upstream]:
        raise SystemExit("warm-up did not answer every request on the pooled connection")
    best = min(_timed(run, requests) for _ in range(repeats))
    print(f"{best * 1e6:.3f} us/request (best of {repeats} x {requests}, filter {filter_name})")
    if profile:
        prof = cProfile.Profile()
        prof.runcall(run, requests)
        rows = [
            (own, calls, f"{os.path.basename(file)}:{line}:{name}")
            for (file, line, name), (_, calls, own, _, _) in pstats.Stats(prof).stats.items()  # type: ignore[attr-defined]
        ]
        rows.sort(reverse=True)
        print(f"calls/request {sum(r[1] for r in rows) / requests:.1f} (profiled, inflated)")
        for own, calls, where in rows[:40]:
            print(f"{own / requests * 1e6:7.3f} us {calls / requests:5.2f}/req  {where}")


def _timed(run: Any, n: int) -> float:
    start = time.process_time()
    run(n)
    return (time.process_time() - start) / n


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=25)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--filter", choices=sorted(FILTERS), default="request-header-set")
    args = parser.parse_args()
    try:
        import uvloop
    except ImportError:
        run: Any = asyncio.run
    else:
        run = uvloop.run
    try:
        run(measure(args.requests, args.repeats, args.profile, args.filter))
    finally:
        JWKS_FILE.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
