"""Headless Debian chromium driven over the DevTools protocol, with aiohttp's websocket client.

Enough of CDP for page tests: open a page, evaluate JavaScript, and collect
what the browser reports as errors (console.error/assert calls, uncaught
exceptions, and Log entries such as failed resource loads). Chromium runs
with a fresh profile in a temporary directory, no network but loopback use,
and is killed by `close()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--remote-debugging-address=127.0.0.1",
    "--remote-debugging-port=0",
)


class Page:
    """One tab's CDP session: commands with ids, events collected."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: list[str] = []
        self._loaded = asyncio.Event()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self._ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self._pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
                continue
            self._on_event(data.get("method", ""), data.get("params", {}))

    def _on_event(self, method: str, params: dict[str, Any]) -> None:
        if method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
            args = [str(a.get("value", a.get("description", ""))) for a in params.get("args", [])]
            self.errors.append("console: " + " ".join(args))
        elif method == "Runtime.exceptionThrown":
            details = params.get("exceptionDetails", {})
            exc = details.get("exception", {})
            self.errors.append("exception: " + str(exc.get("description") or details.get("text")))
        elif method == "Log.entryAdded" and params.get("entry", {}).get("level") == "error":
            entry = params["entry"]
            self.errors.append(f"log: {entry.get('text')} {entry.get('url', '')}".strip())
        elif method == "Page.loadEventFired":
            self._loaded.set()

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        msg_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = future
        await self._ws.send_str(json.dumps({"id": msg_id, "method": method, "params": params}))
        answer = await asyncio.wait_for(future, 10)
        if "error" in answer:
            raise RuntimeError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer.get("result", {})
        return result

    async def open(self, url: str) -> None:
        for domain in ("Runtime", "Log", "Page"):
            await self.send(f"{domain}.enable")
        self._loaded.clear()
        await self.send("Page.navigate", url=url)
        await asyncio.wait_for(self._loaded.wait(), 10)

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout_s: float = 10.0) -> Any:
        """Evaluate until the value is truthy; return it (fails with the last value)."""
        deadline = time.monotonic() + timeout_s
        value = None
        while time.monotonic() < deadline:
            value = await self.evaluate(expression)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"{expression!r} still {value!r} after {timeout_s} s")

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        await self._ws.close()


class Chromium:
    """A chromium process with its DevTools endpoint; see the module docstring."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int, profile: Path) -> None:
        self.proc = proc
        self.port = port
        self.profile = profile
        self._session = aiohttp.ClientSession()
        self._pages: list[Page] = []

    @classmethod
    async def launch(cls, profile: Path, *, timeout_s: float = 15.0) -> Chromium:
        if not os.access(CHROMIUM, os.X_OK):
            raise AssertionError(
                f"{CHROMIUM} is missing: scripts/test.sh installs it (apt-get install chromium)"
            )
        profile.mkdir(parents=True, exist_ok=True)
        log = (profile.parent / "chromium.log").open("wb")
        proc = await asyncio.create_subprocess_exec(
            CHROMIUM,
            *FLAGS,
            f"--user-data-dir={profile}",
            "about:blank",
            stdin=asyncio.subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
        log.close()
        active = profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout_s
        while not active.exists() or not active.read_text().strip():
            if proc.returncode is not None or time.monotonic() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    proc.kill()
                raise AssertionError(
                    "chromium did not start: " + (profile.parent / "chromium.log").read_text()
                )
            await asyncio.sleep(0.05)
        port = int(active.read_text().split()[0])
        return cls(proc, port, profile)

    async def new_page(self) -> Page:
        base = f"http://127.0.0.1:{self.port}"
        async with self._session.get(base + "/json/list") as resp:
            targets = await resp.json()
        page_target = next(t for t in targets if t.get("type") == "page")
        ws = await self._session.ws_connect(page_target["webSocketDebuggerUrl"], max_msg_size=0)
        page = Page(ws)
        self._pages.append(page)
        return page

    async def close(self) -> None:
        for page in self._pages:
            await page.close()
        await self._session.close()
        if self.proc.returncode is None:
            self.proc.kill()
        await self.proc.wait()
