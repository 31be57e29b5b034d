"""The admin API (aiohttp, its own port): health, config, routes, endpoints, explain, metrics.

Every answer is JSON except `/metrics` (Prometheus text). The API reads a
`AdminSource`: the process's `Reloader` (active config, table, last reload
failure) and the workers' reports. In a single-process gateway the source is
the worker itself; with several workers it is the supervisor, which asks every
worker over its control pipe, so `/metrics` and `/endpoints` show totals for
the whole gateway whichever process answers.

Routes: GET `/healthz`, `/readyz` (503 until the first config load and
until a table built from the first registry sync serves), `/config`,
`/routes`, `/endpoints[?limit=N&after=BACKEND]`,
`/explain?request=GET%20https://host/path&from=IP[&header=name:value]`,
`/metrics[?endpoints=1]`, `/dashboard` (the live page and its event stream:
`gateway.ops.dashboard`); POST `/drain?endpoint=KEY[&undo=1]`. With several
workers, `/readyz` also waits until every worker answers (its listeners are open).

At fleet size (10,000 services × 50 endpoints) nothing here walks the fleet
on the event loop: `/healthz` and a single process's `/readyz` read a few
attributes; `/endpoints` answers one page of backends (`limit`, default
100, by name after `after`; the answer's `next` is the cursor of the next
page); `/metrics` reports endpoint availability per backend and cluster
(per endpoint only with `?endpoints=1`, as Envoy makes per-host stats
opt-in), counted and rendered in threads.

Progressive rollouts (`gateway.rollout.api`): GET `/rollouts[/NAME]`, POST
`/rollouts/NAME/pause|resume|promote|abort`.

`/readyz` is also 503 from the moment the gateway is asked to stop, in
every mode, so a load balancer stops sending before the listeners close.
Errors are JSON `{"error": ...}`: 404 for a path the API does not have, an
endpoint key or a backend name the active table does not have (never a 200
that acted on nothing; `/endpoints?backend=NAME` asks for one backend); 400
for a malformed request (a parameter the route does not take, a value it
cannot read), naming what was wrong.
"""

from __future__ import annotations

import asyncio
import datetime
import difflib
import ipaddress
import re
from bisect import bisect_right
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from pydantic import TypeAdapter

from gateway import compiled
from gateway.config.model import Route
from gateway.ops.dashboard import DashboardSite
from gateway.ops.metrics import MetricsSnapshot, merge, render
from gateway.ops.source import AdminSource
from gateway.rollout.api import RolloutApi
from gateway.routing.decision import RequestFacts
from gateway.routing.endpoints import EndpointState
from gateway.routing.explain import explain_http

_ROUTE = TypeAdapter(Route)
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


def merged_state(reports: list[dict[str, Any]]) -> tuple[EndpointState, dict[str, int]]:
    """Endpoint state as the whole gateway sees it: down anywhere = down; in-flight summed."""
    state = EndpointState()
    in_flight: dict[str, int] = {}
    for report in reports:
        eps = report.get("endpoints", {})
        state.unhealthy.update(eps.get("unhealthy", ()))
        for key in eps.get("ejected", ()):
            state.ejected[key] = float("inf")
        state.draining.update(eps.get("draining", ()))
        for key, n in eps.get("in_flight", {}).items():
            in_flight[key] = in_flight.get(key, 0) + n
    return state, in_flight


def merged_reasons(reports: list[dict[str, Any]]) -> dict[str, str]:
    """Why each endpoint is out of rotation (health check, ejection), as workers said it."""
    out: dict[str, str] = {}
    for report in reports:
        for key, why in report.get("endpoints", {}).get("reasons", {}).items():
            out.setdefault(key, why)
    return out


def endpoint_levels(backend: Any) -> dict[str, int]:
    """Locality level index of each endpoint key in a compiled backend (0 = preferred)."""
    out: dict[str, int] = {}
    for index, level in enumerate(getattr(backend, "levels", ()) or ()):
        members = getattr(level, "endpoints", level)
        for endpoint in members:
            out.setdefault(getattr(endpoint, "key", str(endpoint)), index)
    return out


def _level_name(names: tuple[str, ...], index: int | None) -> str | None:
    return names[index] if index is not None and index < len(names) else None


class BadRequest(Exception):
    """A request the API cannot act on; the message says what is wrong (answered 400)."""


_METHOD = re.compile(r"^[A-Za-z]+$")
_FLAG_VALUES = frozenset({"", "0", "1", "true", "false"})
QUERY_KEYS: dict[str, tuple[str, ...]] = {
    "/healthz": (),
    "/readyz": (),
    "/config": (),
    "/routes": (),
    "/tls": (),
    "/drain": ("endpoint", "undo"),
    "/endpoints": ("limit", "after", "backend"),
    "/explain": ("request", "from", "header", "listener"),
    "/metrics": ("endpoints",),
}
"""The parameters each route of this module takes; anything else is a 400."""


def check_query(path: str, query: Mapping[str, str]) -> None:
    """`BadRequest` for a parameter `path` does not take (with the closest it does)."""
    allowed = QUERY_KEYS.get(path)
    if allowed is None:
        return  # not a route of this module (the dashboard checks its own)
    for key in query:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            takes = ", ".join(allowed) or "no parameters"
            raise BadRequest(f"unknown parameter {key!r}{hint} ({path} takes: {takes})")


def flag(query: Mapping[str, str], key: str) -> bool:
    """A yes/no parameter: absent, 0 or false is no; 1 or true is yes; else `BadRequest`."""
    value = query.get(key, "")
    if value not in _FLAG_VALUES:
        raise BadRequest(f"{key}={value!r}: write {key}=1 or {key}=0")
    return value in ("1", "true")


def parse_explain_query(query: Mapping[str, str]) -> RequestFacts:
    """`request=GET https://host/path?q`, `from=IP`, `header=name:value` (repeatable).

    Raises `BadRequest` for a request that is not `METHOD URL` with an absolute
    http(s) URL, an address that is not one, or a header without a colon.
    """
    words = query.get("request", "").split()
    if len(words) != 2 or not _METHOD.match(words[0]):
        raise BadRequest("request is 'METHOD URL', e.g. request=GET%20http://shop.example/")
    method, url = words
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadRequest(f"request URL {url!r} is not absolute (http:// or https:// and a host)")
    client_ip = query.get("from", "127.0.0.1")
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        raise BadRequest(f"from={client_ip!r} is not an IP address") from None
    host = parts.hostname.lower()
    headers = {"host": host}
    getall = getattr(query, "getall", None)
    for raw in getall("header", []) if getall else []:
        name, colon, value = raw.partition(":")
        if not colon or not name.strip():
            raise BadRequest(f"header={raw!r}: write header=name:value")
        headers[name.strip().lower()] = value.strip()
    return RequestFacts(
        method=method.upper(),
        host=host,
        path=parts.path or "/",
        query=parts.query,
        headers=headers,
        client_ip=client_ip,
        listener=query.get("listener", ""),
    )


def _error(status: int, message: str, **extra: Any) -> web.Response:
    return web.json_response({"error": message, **extra}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every error as JSON: unknown paths (404) and methods (405), bad requests (400)."""
    try:
        check_query(request.path, request.query)
        return await handler(request)
    except BadRequest as exc:
        return _error(400, str(exc))
    except web.HTTPNotFound:
        paths = sorted({r.canonical for r in request.app.router.resources()})
        return _error(404, f"no such admin path {request.path!r}", paths=paths)
    except web.HTTPMethodNotAllowed as exc:
        allowed = sorted(exc.allowed_methods)
        return _error(405, f"{request.method} is not allowed on {request.path}", allowed=allowed)


class AdminApi:
    """Builds the aiohttp application over an `AdminSource`."""

    def __init__(self, source: AdminSource) -> None:
        self.source = source
        self._names: tuple[Any, list[str]] = (None, [])

    def app(self) -> web.Application:
        app = web.Application(middlewares=[json_errors])
        app.router.add_get("/healthz", self.healthz)
        app.router.add_get("/readyz", self.readyz)
        app.router.add_get("/config", self.config)
        app.router.add_get("/routes", self.routes)
        app.router.add_get("/endpoints", self.endpoints)
        app.router.add_get("/explain", self.explain)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_get("/tls", self.tls)
        app.router.add_post("/drain", self.drain)
        DashboardSite(self.source).register(app)
        RolloutApi(self.source).add_routes(app)
        return app

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        reloader = self.source.reloader
        expected = self.source.expected_workers
        # a single process answering is itself the serving worker: no report needed
        serving = 1 if expected <= 1 else len(await self.source.reports())
        checks = {
            "not_draining": not self.source.draining,
            "config_loaded": reloader.active is not None,
            "registry_synced": reloader.registry_synced or not self.source.needs_registry,
            "workers_serving": serving >= self.source.expected_workers,
        }
        ready = all(checks.values())
        return web.json_response({"ready": ready, **checks}, status=200 if ready else 503)

    async def config(self, request: web.Request) -> web.Response:
        reloader = self.source.reloader
        active, failure = reloader.active, reloader.last_failure
        return web.json_response(
            {
                "version": active.version if active else None,
                "source": str(reloader.path),
                "loaded_at": _iso(active.loaded_at) if active else None,
                "table_version": active.table_version if active else None,
                "last_compile_ms": round(reloader.last_compile_s * 1000, 3),
                "hot_path": compiled.state,
                "reloads": {"success": reloader.stats.success, "failure": reloader.stats.failure},
                "last_reload_error": None
                if failure is None
                else {"at": _iso(failure.at), "issues": list(failure.issues)},
            }
        )

    async def routes(self, request: web.Request) -> web.Response:
        active = self.source.reloader.active
        routes = active.config.routes if active else ()
        return web.json_response(
            {
                "version": active.version if active else None,
                "routes": [_ROUTE.dump_python(r, mode="json", by_alias=True) for r in routes],
            }
        )

    async def endpoints(self, request: web.Request) -> web.Response:
        table = self.source.reloader.table
        try:
            limit = int(request.query.get("limit", DEFAULT_PAGE))
        except ValueError:
            return web.json_response({"error": "limit must be a whole number"}, status=400)
        if not 1 <= limit <= MAX_PAGE:
            return web.json_response({"error": f"limit must be 1..{MAX_PAGE}"}, status=400)
        names = self._backend_names(table)
        only = request.query.get("backend")
        if only is not None:
            if only not in (getattr(table, "backends", None) or {}):
                return _error(404, _unknown("backend", only, names))
            names = [only]
        start = bisect_right(names, request.query["after"]) if "after" in request.query else 0
        page = names[start : start + limit]
        reports = await self.source.reports(availability=False)
        state, in_flight = merged_state(reports)
        reasons = merged_reasons(reports)
        all_backends = getattr(table, "backends", None) or {}
        backends: dict[str, Any] = {}
        for name in page:
            backend = all_backends[name]
            levels = endpoint_levels(backend)
            level_names = tuple(getattr(backend, "level_names", ()))
            backends[name] = [
                {
                    **ep.to_dict(),
                    "locality_level": levels.get(ep.key),
                    "locality": _level_name(level_names, levels.get(ep.key)),
                    "healthy": ep.key not in state.unhealthy,
                    "ejected": ep.key in state.ejected,
                    "draining": ep.key in state.draining,
                    "available": ep.ready and state.available(ep.key),
                    "in_flight": in_flight.get(ep.key, 0),
                    "reason": reasons.get(ep.key),
                }
                for ep in getattr(backend, "endpoints", ())
            ]
        more = start + limit < len(names)
        return web.json_response({"backends": backends, "next": page[-1] if more else None})

    def _backend_names(self, table: Any) -> list[str]:
        """The table's backend names, sorted once per config (a cursor is a name).

        Tables updated from the registry share their config's layout, and so
        this list; only a config change sorts again.
        """
        layout = getattr(table, "layout", table)
        cached, names = self._names
        if cached is not layout:
            names = sorted(getattr(table, "backends", None) or ())
            self._names = (layout, names)
        return names

    async def explain(self, request: web.Request) -> web.Response:
        table = self.source.reloader.table
        if "request" not in request.query:
            return web.json_response(
                {"error": "give request=METHOD%20URL (and optionally from=IP)"}, status=400
            )
        facts = parse_explain_query(request.query)
        if table is None:
            return web.json_response({"error": "no config loaded"}, status=503)
        state, _ = merged_state(await self.source.reports(availability=False))
        decision = explain_http(table, facts, state)
        return web.json_response(
            {
                "request": {
                    "method": facts.method,
                    "host": facts.host,
                    "path": facts.path,
                    "query": facts.query,
                    "from": facts.client_ip,
                },
                **decision.to_dict(),
            }
        )

    async def metrics(self, request: web.Request) -> web.Response:
        per_endpoint = flag(request.query, "endpoints")
        reports = await (
            self.source.reports(per_endpoint=True)
            if per_endpoint
            else self.source.reports(rendered=True)
        )
        reloads = self.source.reloader.stats

        def exposition() -> bytes:
            total = merge(MetricsSnapshot.from_json(r["metrics"]) for r in reports)
            total.reloads = reloads
            return render(total) + generate_latest(REGISTRY)  # + feed and process metrics

        body = await asyncio.to_thread(exposition)
        return web.Response(body=body, headers={"Content-Type": "text/plain; version=0.0.4"})

    async def tls(self, request: web.Request) -> web.Response:
        """Served certificates per worker: file, names, subject, expiry and days left."""
        certificates = [
            {**cert, "pid": report.get("pid")}
            for report in await self.source.reports()
            for cert in report.get("tls", ())
        ]
        return web.json_response({"certificates": certificates})

    async def drain(self, request: web.Request) -> web.Response:
        key = request.query.get("endpoint", "")
        if not key:
            return _error(400, "give endpoint=KEY (as /endpoints lists them)")
        draining = not flag(request.query, "undo")
        table = self.source.reloader.table
        backends = (getattr(table, "backends", None) or {}).values()
        if not any(backend.endpoint(key) is not None for backend in backends):
            return _error(404, f"no endpoint {key!r} in the active routing table (see /endpoints)")
        await self.source.set_endpoint_draining(key, draining)
        return web.json_response({"endpoint": key, "draining": draining})


def _unknown(kind: str, name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"no {kind} {name!r} in the active routing table{hint}"


async def start_admin(source: AdminSource, address: str, port: int) -> web.AppRunner:
    """Serve the admin API; the caller keeps the runner and calls `cleanup()` to stop."""
    runner = web.AppRunner(AdminApi(source).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
