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
`/rollouts/NAME/pause|resume|promote|abort`, mounted by the process that
serves the API (`AdminRoutes`): the rollouts judge the counters ops keeps, so
they sit above ops, and ops does not import them.

`/readyz` is also 503 from the moment the gateway is asked to stop, in
every mode, so a load balancer stops sending before the listeners close.
Errors are JSON `{"error": ...}`: 404 for a path the API does not have, an
endpoint key or a backend name the active table does not have (never a 200
that acted on nothing; `/endpoints?backend=NAME` asks for one backend); 400
for a malformed request (a parameter the route does not take, a value it
cannot read), naming what was wrong (`gateway.ops.admin_requests`). What
`/endpoints` and `/explain` say of an endpoint is the workers' reports merged
(`gateway.ops.endpoint_view`).
"""

from __future__ import annotations

import asyncio
import datetime
from bisect import bisect_right
from collections.abc import Sequence
from typing import Any, Protocol

from aiohttp import web
from prometheus_client import REGISTRY, generate_latest
from pydantic import TypeAdapter

from gateway import compiled
from gateway.config.model import Route
from gateway.ops.admin_requests import (
    error,
    flag,
    json_errors,
    parse_explain_query,
    unknown_name,
)
from gateway.ops.dashboard import DashboardSite
from gateway.ops.endpoint_view import backend_rows, merged_reasons, merged_state
from gateway.ops.metrics import MetricsSnapshot, merge, render
from gateway.ops.source import AdminSource
from gateway.routing.explain import explain_http

_ROUTE = TypeAdapter(Route)
DEFAULT_PAGE = 100
MAX_PAGE = 1000


def _iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).isoformat(timespec="seconds")


class AdminRoutes(Protocol):
    """More routes of the admin API, from a part of the gateway above ops, given by the
    process that serves the API (`gateway.rollout.api.RolloutApi`)."""

    def add_routes(self, app: web.Application) -> None: ...


class AdminApi:
    """Builds the aiohttp application over an `AdminSource`, with the routes `mounted`."""

    def __init__(self, source: AdminSource, mounted: Sequence[AdminRoutes] = ()) -> None:
        self.source = source
        self.mounted = tuple(mounted)
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
        for routes in self.mounted:
            routes.add_routes(app)
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
                return error(404, unknown_name("backend", only, names))
            names = [only]
        start = bisect_right(names, request.query["after"]) if "after" in request.query else 0
        page = names[start : start + limit]
        reports = await self.source.reports(availability=False)
        state, in_flight = merged_state(reports)
        reasons = merged_reasons(reports)
        all_backends = getattr(table, "backends", None) or {}
        backends = {
            name: backend_rows(all_backends[name], state, in_flight, reasons) for name in page
        }
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
            return error(400, "give endpoint=KEY (as /endpoints lists them)")
        draining = not flag(request.query, "undo")
        table = self.source.reloader.table
        backends = (getattr(table, "backends", None) or {}).values()
        if not any(backend.endpoint(key) is not None for backend in backends):
            return error(404, f"no endpoint {key!r} in the active routing table (see /endpoints)")
        await self.source.set_endpoint_draining(key, draining)
        return web.json_response({"endpoint": key, "draining": draining})


async def start_admin(
    source: AdminSource, address: str, port: int, *, mounted: Sequence[AdminRoutes] = ()
) -> web.AppRunner:
    """Serve the admin API; the caller keeps the runner and calls `cleanup()` to stop."""
    runner = web.AppRunner(AdminApi(source, mounted).app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, address, port).start()
    return runner
