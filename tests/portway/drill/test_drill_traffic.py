"""The drill's traffic profile, against a real loopback server: mix, pacing, sticky clients."""

from __future__ import annotations

import asyncio
from collections import Counter

from aiohttp import web

from portway.traffic import TrafficGenerator


async def serve(seen: list[tuple[str, str]]) -> tuple[web.AppRunner, str]:
    async def answer(request: web.Request) -> web.Response:
        seen.append((request.method, request.path))
        kept = "kept" if request.cookies.get("side") else "fresh"
        resp = web.Response(text="ok", headers={"x-served-by": f"{kept}/n1"})
        resp.set_cookie("side", "canary")
        return resp

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/"


async def test_methods_paths_pacing_and_sticky_clients_follow_the_profile() -> None:
    seen: list[tuple[str, str]] = []
    runner, url = await serve(seen)
    gen = TrafficGenerator(
        url,
        concurrency=4,
        methods=("GET", "POST"),
        paths=("/a", "/b"),
        rate_per_s=100,
        sticky_share=0.5,
        seed=7,
    )
    try:
        await gen.start()
        await asyncio.sleep(1.5)
    finally:
        await gen.stop()
        await runner.cleanup()
    assert 110 <= len(gen.samples) <= 170, len(gen.samples)  # 100/s, not as fast as possible
    assert set(seen) == {("GET", "/a"), ("GET", "/b"), ("POST", "/a"), ("POST", "/b")}
    by_client: dict[int, Counter[str]] = {}
    for s in gen.samples:
        by_client.setdefault(s.client, Counter())[s.served_by.partition("/")[0]] += 1
    assert gen.sticky_clients == 2
    for client, kinds in by_client.items():
        if client < 2:
            assert kinds["fresh"] == 1 and kinds["kept"] > 10, (client, kinds)
        else:
            assert kinds["kept"] == 0, (client, kinds)
