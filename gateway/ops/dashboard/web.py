"""The dashboard's HTTP endpoints on the admin API: the page, its assets and the event stream.

GET `/dashboard` is a static page (`index.html`, `dashboard.js`,
`dashboard.css`, shipped in this package: no CDN, no build step). The page
reads `/routes` and `/endpoints` for what is configured, and listens to GET
`/dashboard/events` (`text/event-stream`) for what happens: first a `hello`
event (the recent events kept, whether the admin API serves `/rollouts`),
then the last snapshot and one `snapshot` event per tick (see `stream`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from importlib.resources import files
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from gateway.ops.dashboard.stream import DashboardFeed, sse

if TYPE_CHECKING:
    from gateway.ops.source import AdminSource

ASSETS: Final = {
    "index.html": "text/html",
    "dashboard.js": "text/javascript",
    "dashboard.css": "text/css",
}
ROLLOUTS_PATH: Final = "/rollouts"
KEEPALIVE_S: Final = 15.0
"""A comment line on a quiet stream, so proxies in between keep it open."""


def read_assets() -> dict[str, bytes]:
    """The page's files, read once from the installed package."""
    here = files(__package__ or "gateway.ops.dashboard")
    return {name: here.joinpath(name).read_bytes() for name in ASSETS}


def serves_get(app: web.Application, path: str) -> bool:
    """Whether `app` answers GET `path` (a feature another part of the admin API adds)."""
    for resource in app.router.resources():
        if resource.canonical == path:
            return any(route.method in ("GET", "*") for route in resource)
    return False


class DashboardSite:
    """Registers the dashboard on an admin application (see the module docstring)."""

    def __init__(self, source: AdminSource, *, tick_s: float | None = None) -> None:
        self.feed = (
            DashboardFeed(source) if tick_s is None else DashboardFeed(source, tick_s=tick_s)
        )
        self._assets = read_assets()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/dashboard", self.page)
        app.router.add_get("/dashboard/", self.page)
        app.router.add_get("/dashboard/events", self.events)
        for name in ASSETS:
            if name != "index.html":
                app.router.add_get(f"/dashboard/{name}", self.asset)
        app.cleanup_ctx.append(self._watch_reloads)
        app.on_shutdown.append(self.feed.close)

    async def _watch_reloads(self, app: web.Application) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(self.feed.watch_reloads())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def page(self, request: web.Request) -> web.Response:
        return self._file("index.html")

    async def asset(self, request: web.Request) -> web.Response:
        return self._file(request.path.rsplit("/", 1)[-1])

    def _file(self, name: str) -> web.Response:
        return web.Response(
            body=self._assets[name],
            content_type=ASSETS[name],
            charset="utf-8",
            headers={"Cache-Control": "no-cache"},
        )

    async def events(self, request: web.Request) -> web.StreamResponse:
        feed = self.feed
        sub = feed.subscribe()
        if sub is None:
            return web.json_response(
                {"error": f"{feed.max_subscribers} dashboards already open"}, status=503
            )
        try:
            response = web.StreamResponse(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-Accel-Buffering": "no",
                }
            )
            await response.prepare(request)
            await response.write(b"retry: 2000\n\n" + sse("hello", self._hello(request.app)))
            if feed.latest is not None:
                await response.write(feed.latest)
            while True:
                try:
                    data = await asyncio.wait_for(sub.queue.get(), KEEPALIVE_S)
                except TimeoutError:
                    data = b": keepalive\n\n"
                if data is None:  # the admin API is shutting down
                    break
                await response.write(data)
        except ConnectionError:  # the page went away
            pass
        finally:
            feed.unsubscribe(sub)
        return response

    def _hello(self, app: web.Application) -> dict[str, Any]:
        return {
            "tick_s": self.feed.tick_s,
            "rollouts": ROLLOUTS_PATH if serves_get(app, ROLLOUTS_PATH) else None,
            "events": [e.to_json() for e in self.feed.events.since(0)],
        }
