"""An emulation of the Consul HTTP API subset portway uses, for tests.

No Consul binary ships on PyPI, so the consul backend is tested against this
aiohttp server on loopback. It keeps Consul's semantics where portway relies
on them:

- KV with base64 values, `cas` (0 = create only), `acquire`/`release` with a
  session (acquire fails while another session holds the key), `recurse`;
- transactions (`/v1/txn`) of KV `lock`/`unlock`/`set`/`check-session`
  operations, applied all at one index or not at all (409 and `Errors`);
- blocking queries: `?index=N&wait=Ds` returns as soon as the KV index moves
  past N, or after the wait with the same index; `X-Consul-Index` is the
  index of the last KV write (coarser than Consul's per-prefix index, which
  clients must tolerate anyway);
- sessions with `TTL`, `Behavior` (`delete` removes the keys a session holds
  when it is destroyed or expires) and renew; an unrenewed session expires
  exactly `TTL` after its last renewal (Consul allows up to twice that);
- agent service register/deregister and the catalog service listing;
- JSON body field names matched case-insensitively, as Consul does.

It runs on its own event loop in a background thread so one instance can
serve a whole test session; `set_reachable(False)` makes it refuse requests
(503) to stand in for an unreachable agent.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web


def _duration_s(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)?", text)
    if not m:
        raise web.HTTPBadRequest(text=f"bad duration {text!r}")
    unit = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}[m.group(2)]
    return float(m.group(1)) * unit


@dataclass
class _Session:
    id: str
    ttl_s: float | None
    behavior: str
    deadline: float = 0.0


@dataclass
class _Entry:
    value: bytes
    create_index: int
    modify_index: int
    lock_index: int = 0
    session: str | None = None
    flags: int = 0

    def as_json(self, key: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "Key": key,
            "CreateIndex": self.create_index,
            "ModifyIndex": self.modify_index,
            "LockIndex": self.lock_index,
            "Flags": self.flags,
            "Value": base64.b64encode(self.value).decode() if self.value else None,
        }
        if self.session:
            out["Session"] = self.session
        return out


@dataclass
class _State:
    index: int = 1
    kv: dict[str, _Entry] = field(default_factory=dict)
    sessions: dict[str, _Session] = field(default_factory=dict)
    services: dict[str, dict[str, Any]] = field(default_factory=dict)


class ConsulEmulator:
    """Start with `start()`; `address` is `127.0.0.1:port`."""

    def __init__(self) -> None:
        self.state = _State()
        self.reachable = True
        self.address = ""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._changed: asyncio.Condition | None = None
        self._runner: web.AppRunner | None = None
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> ConsulEmulator:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def set_reachable(self, reachable: bool) -> None:
        self.reachable = reachable

    async def _start(self) -> None:
        self._changed = asyncio.Condition()
        app = web.Application(middlewares=[self._gate])
        app.router.add_route("GET", "/v1/kv/{key:.*}", self._kv_get)
        app.router.add_route("PUT", "/v1/kv/{key:.*}", self._kv_put)
        app.router.add_route("DELETE", "/v1/kv/{key:.*}", self._kv_delete)
        app.router.add_route("PUT", "/v1/txn", self._txn)
        app.router.add_route("PUT", "/v1/session/create", self._session_create)
        app.router.add_route("PUT", "/v1/session/renew/{id}", self._session_renew)
        app.router.add_route("PUT", "/v1/session/destroy/{id}", self._session_destroy)
        app.router.add_route("PUT", "/v1/agent/service/register", self._service_register)
        app.router.add_route("PUT", "/v1/agent/service/deregister/{id}", self._service_deregister)
        app.router.add_route("GET", "/v1/catalog/service/{name}", self._catalog_service)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        self.address = f"127.0.0.1:{port}"
        self._reaper = asyncio.create_task(self._reap_forever())

    async def _stop(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    @web.middleware
    async def _gate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if not self.reachable:
            raise web.HTTPServiceUnavailable(text="emulated outage")
        response: web.StreamResponse = await handler(request)
        return response

    async def _bump(self) -> int:
        assert self._changed is not None
        self.state.index += 1
        async with self._changed:
            self._changed.notify_all()
        return self.state.index

    async def _kv_get(self, request: web.Request) -> web.Response:
        assert self._changed is not None
        key = request.match_info["key"]
        recurse = "recurse" in request.query
        if "index" in request.query:
            index = int(request.query["index"])
            wait_s = _duration_s(request.query.get("wait", "300s"))
            async with self._changed:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(
                        self._changed.wait_for(lambda: self.state.index > index), wait_s
                    )
        found = sorted(
            (k, e) for k, e in self.state.kv.items() if (k.startswith(key) if recurse else k == key)
        )
        headers = {"X-Consul-Index": str(self.state.index)}
        if not found:
            return web.Response(status=404, headers=headers)
        body = [e.as_json(k) for k, e in found]
        return web.json_response(body, headers=headers)

    async def _kv_put(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        value = await request.read()
        q = request.query
        entry = self.state.kv.get(key)
        if "cas" in q:
            cas = int(q["cas"])
            if (cas == 0 and entry is not None) or (
                cas != 0 and (entry is None or entry.modify_index != cas)
            ):
                return web.json_response(False)
        if "acquire" in q:
            sid = q["acquire"]
            if sid not in self.state.sessions:
                raise web.HTTPInternalServerError(text=f"invalid session {sid!r}")
            if entry is not None and entry.session not in (None, sid):
                return web.json_response(False)
        if "release" in q and (entry is None or entry.session != q["release"]):
            return web.json_response(False)
        index = self.state.index + 1  # the write is applied before a blocked reader wakes
        if entry is None:
            entry = self.state.kv[key] = _Entry(value, index, index)
        entry.value, entry.modify_index = value, index
        if "acquire" in q and entry.session != q["acquire"]:
            entry.session, entry.lock_index = q["acquire"], entry.lock_index + 1
        if "release" in q:
            entry.session = None
        await self._bump()
        return web.json_response(True)

    async def _kv_delete(self, request: web.Request) -> web.Response:
        key = request.match_info["key"]
        q = request.query
        if "recurse" in q:
            doomed = [k for k in self.state.kv if k.startswith(key)]
        else:
            entry = self.state.kv.get(key)
            if entry is not None and "cas" in q and entry.modify_index != int(q["cas"]):
                return web.json_response(False)
            doomed = [key] if entry is not None else []
        for k in doomed:
            del self.state.kv[k]
        if doomed:
            await self._bump()
        return web.json_response(True)

    async def _txn(self, request: web.Request) -> web.Response:
        body = json.loads(await request.read())
        ops = [{k.lower(): v for k, v in op["KV"].items()} for op in body]
        kv = {k: dataclasses.replace(e) for k, e in self.state.kv.items()}
        index = self.state.index + 1
        for i, op in enumerate(ops):
            verb, key, sid = op["verb"], op["key"], op.get("session")
            entry = kv.get(key)
            value = base64.b64decode(op.get("value") or "")
            if verb in ("lock", "unlock", "check-session") and sid not in self.state.sessions:
                return self._txn_failed(i, f"invalid session {sid!r}")
            if verb == "check-session" and (entry is None or entry.session != sid):
                return self._txn_failed(i, f"key {key!r} is not locked by {sid!r}")
            if verb == "lock" and entry is not None and entry.session not in (None, sid):
                return self._txn_failed(i, f"key {key!r} is locked by another session")
            if verb == "unlock" and (entry is None or entry.session != sid):
                return self._txn_failed(i, f"key {key!r} is not locked by {sid!r}")
            if verb not in ("lock", "unlock", "set", "check-session"):
                raise web.HTTPBadRequest(text=f"verb {verb!r} is not emulated")
            if verb == "check-session":
                continue
            if entry is None:
                entry = kv[key] = _Entry(value, index, index)
            entry.value, entry.modify_index = value, index
            if verb == "lock" and entry.session != sid:
                entry.session, entry.lock_index = sid, entry.lock_index + 1
            if verb == "unlock":
                entry.session = None
        self.state.kv = kv
        await self._bump()
        return web.json_response({"Results": [{"KV": None} for _ in ops], "Errors": None})

    def _txn_failed(self, op_index: int, what: str) -> web.Response:
        body = {"Results": None, "Errors": [{"OpIndex": op_index, "What": what}]}
        return web.json_response(body, status=409)

    async def _session_create(self, request: web.Request) -> web.Response:
        raw = await request.read()
        body = json.loads(raw) if raw else {}
        body = {k.lower(): v for k, v in body.items()}
        ttl = body.get("ttl")
        sid = str(uuid.uuid4())
        session = _Session(
            sid,
            _duration_s(ttl) if ttl else None,
            body.get("behavior") or "release",
        )
        if session.ttl_s is not None:
            session.deadline = time.monotonic() + session.ttl_s
        self.state.sessions[sid] = session
        return web.json_response({"ID": sid})

    async def _session_renew(self, request: web.Request) -> web.Response:
        session = self.state.sessions.get(request.match_info["id"])
        if session is None:
            return web.Response(status=404, text="session not found")
        if session.ttl_s is not None:
            session.deadline = time.monotonic() + session.ttl_s
        ttl = f"{session.ttl_s}s" if session.ttl_s else ""
        return web.json_response([{"ID": session.id, "TTL": ttl, "Behavior": session.behavior}])

    async def _session_destroy(self, request: web.Request) -> web.Response:
        await self._invalidate(request.match_info["id"])
        return web.json_response(True)

    async def _invalidate(self, sid: str) -> None:
        session = self.state.sessions.pop(sid, None)
        if session is None:
            return
        held = [k for k, e in self.state.kv.items() if e.session == sid]
        for k in held:
            if session.behavior == "delete":
                del self.state.kv[k]
            else:
                self.state.kv[k].session = None
        if held:
            await self._bump()

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(0.02)
            now = time.monotonic()
            for sid, s in list(self.state.sessions.items()):
                if s.ttl_s is not None and now >= s.deadline:
                    await self._invalidate(sid)

    async def _service_register(self, request: web.Request) -> web.Response:
        raw = {k.lower(): v for k, v in json.loads(await request.read()).items()}
        body = {
            "Name": raw["name"],
            "Address": raw.get("address", ""),
            "Port": raw.get("port", 0),
            "Tags": raw.get("tags") or [],
            "Meta": raw.get("meta") or {},
        }
        self.state.services[raw.get("id") or raw["name"]] = body
        return web.Response()

    async def _service_deregister(self, request: web.Request) -> web.Response:
        self.state.services.pop(request.match_info["id"], None)
        return web.Response()

    async def _catalog_service(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        out = [
            {
                "ServiceID": sid,
                "ServiceName": s["Name"],
                "ServiceAddress": s.get("Address", ""),
                "ServicePort": s.get("Port", 0),
                "ServiceTags": s.get("Tags", []),
                "ServiceMeta": s.get("Meta", {}),
            }
            for sid, s in sorted(self.state.services.items())
            if s["Name"] == name
        ]
        return web.json_response(out, headers={"X-Consul-Index": str(self.state.index)})
