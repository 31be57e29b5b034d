"""kmock's KubernetesEmulator, extended with what a list+watch client relies on.

kmock serves discovery, errors and streaming; its emulator stores objects
but assigns no resourceVersions, replays every object on each watch, merges
every write and never answers 410. `KubeEmulator` keeps its own store with:

* one cluster-wide resourceVersion counter, stamped on every write
  (`metadata.resourceVersion`, plus uid/creationTimestamp on create);
* lists carrying the current resourceVersion; watches that honour
  `resourceVersion` (events strictly after it; none given: the current
  objects as ADDED first), `timeoutSeconds`, and `allowWatchBookmarks`
  (a BOOKMARK every `bookmark_interval_s`);
* a history window: `compact()` forgets it, so a watch resuming from before
  answers an ERROR event with a 410 Status, as the apiserver does;
  `expire_watches()` sends that 410 into every open watch now;
* PUT (replace) with optimistic concurrency: a stale
  `metadata.resourceVersion` is refused with 409 Conflict (Leases rely on it),
  POST of an existing name is 409 AlreadyExists, PATCH merges.

Tests change the cluster through `put`, `patch` and `remove` (plain calls on
the loop), read it with `get`/`items`, and run the emulator on a real port
through `Apiserver`, which can also go down and come back on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import datetime
import itertools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp.web
import attrs
import kmock
from kmock._internal import enums, k8s, rendering

ResKey = tuple[str, str, str]
ObjKey = tuple[str | None, str]


def res_key(text: str) -> ResKey:
    """'v1/nodes' -> ('', 'v1', 'nodes'); 'discovery.k8s.io/v1/endpointslices' likewise."""
    parts = text.split("/")
    if len(parts) == 2:
        return ("", parts[0], parts[1])
    return (parts[0], parts[1], parts[2])


@dataclass(frozen=True, slots=True)
class _Event:
    revision: int
    res: ResKey
    type: str
    object: dict[str, Any]


@attrs.define(kw_only=True)
class KubeEmulator(kmock.KubernetesEmulator):
    """See the module docstring."""

    bookmark_interval_s: float = 0.5
    revision: int = attrs.field(default=1000, init=False)
    store: dict[ResKey, dict[ObjKey, dict[str, Any]]] = attrs.field(factory=dict, init=False)
    history: list[_Event] = attrs.field(factory=list, init=False)
    compacted: int = attrs.field(default=0, init=False)
    watches_served: int = attrs.field(default=0, init=False)
    _changed: asyncio.Event = attrs.field(factory=asyncio.Event, init=False)
    _expiries: int = attrs.field(default=0, init=False)
    offline: bool = attrs.field(default=False, init=False)

    def declare(self, *resources: str, namespaced: bool = True) -> None:
        for text in resources:
            self.resources[text] = kmock.ResourceInfo(namespaced=namespaced)

    # -- the test's side --------------------------------------------------

    def put(self, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
        """Create or replace an object (no concurrency check), as an admin would."""
        res = res_key(resource)
        meta = obj.setdefault("metadata", {})
        key = (meta.get("namespace"), meta["name"])
        existing = self.store.get(res, {}).get(key)
        return self._write(res, key, copy.deepcopy(obj), "MODIFIED" if existing else "ADDED")

    def patch(self, resource: str, namespace: str | None, name: str, changes: dict[str, Any]):
        res = res_key(resource)
        current = self.store[res][(namespace, name)]
        merged = _merge(copy.deepcopy(current), changes)
        return self._write(res, (namespace, name), merged, "MODIFIED")

    def remove(self, resource: str, namespace: str | None, name: str) -> None:
        res = res_key(resource)
        obj = self.store.get(res, {}).pop((namespace, name))
        self.revision += 1
        obj = copy.deepcopy(obj)
        obj["metadata"]["resourceVersion"] = str(self.revision)
        self._emit(_Event(self.revision, res, "DELETED", obj))

    def get(self, resource: str, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self.store.get(res_key(resource), {}).get((namespace, name))

    def items(self, resource: str) -> list[dict[str, Any]]:
        return list(self.store.get(res_key(resource), {}).values())

    def compact(self) -> None:
        """Forget the history: watches resuming from an older version get 410."""
        self.compacted = self.revision
        self.history.clear()

    def expire_watches(self) -> None:
        """Send 410 Gone into every open watch now (a watch cache reset)."""
        self.compact()
        self._expiries += 1
        self._wake()

    # -- store -------------------------------------------------------------

    def _write(self, res: ResKey, key: ObjKey, obj: dict[str, Any], kind: str) -> dict[str, Any]:
        self.revision += 1
        meta = obj.setdefault("metadata", {})
        existing = self.store.get(res, {}).get(key)
        if existing is None:
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", _now())
        else:
            meta["uid"] = existing["metadata"].get("uid")
            meta["creationTimestamp"] = existing["metadata"].get("creationTimestamp")
        meta["resourceVersion"] = str(self.revision)
        self.store.setdefault(res, {})[key] = obj
        self._emit(_Event(self.revision, res, kind, copy.deepcopy(obj)))
        return obj

    def _emit(self, event: _Event) -> None:
        self.history.append(event)
        self._wake()

    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    # -- the API's side ----------------------------------------------------

    def _declared(self, request: rendering.Request) -> ResKey:
        for resource in self._get_resources():
            if resource == request.resource:
                r = request.resource
                return (r.group or "", r.version or "", r.plural or "")
        raise k8s.KubernetesResourceNotFoundError()

    async def _handle(self, request: rendering.Request) -> aiohttp.web.StreamResponse:
        if self.offline:
            raise ConnectionResetError("the emulated apiserver is going down")
        if request.resource is None or request.subresource:
            return await super()._handle(request)
        method = request.method
        if request.action in (enums.action.LIST, enums.action.WATCH, enums.action.FETCH):
            return await kmock.RawHandler._handle(self, request)
        try:
            res = self._declared(request)
            if request.action == enums.action.CREATE:
                body = self._create(res, request)
            elif method == enums.method.PUT and request.name:
                body = self._replace(res, request)
            elif request.action == enums.action.UPDATE:
                body = self.patch(_text(res), request.namespace, request.name, request.data)
            elif request.action == enums.action.DELETE:
                body = self._delete(res, request)
            else:
                raise k8s.KubernetesError(405, "MethodNotAllowed", f"{method} not emulated")
        except KeyError:
            return await self._render_error(k8s.KubernetesObjectNotFoundError())
        except k8s.KubernetesError as exc:
            return await self._render_error(exc)
        return aiohttp.web.json_response(body)

    def _create(self, res: ResKey, request: rendering.Request) -> dict[str, Any]:
        obj = copy.deepcopy(request.data)
        meta = obj.setdefault("metadata", {})
        if request.namespace:
            meta["namespace"] = request.namespace
        key = (meta.get("namespace"), meta.get("name"))
        if key in self.store.get(res, {}):
            raise k8s.KubernetesError(409, "AlreadyExists", f"{key[1]} already exists")
        return self._write(res, key, obj, "ADDED")

    def _replace(self, res: ResKey, request: rendering.Request) -> dict[str, Any]:
        key = (request.namespace, request.name or "")
        current = self.store.get(res, {})[key]
        obj = copy.deepcopy(request.data)
        wanted = (obj.get("metadata") or {}).get("resourceVersion")
        if wanted and wanted != current["metadata"]["resourceVersion"]:
            raise k8s.KubernetesError(
                409,
                "Conflict",
                "Operation cannot be fulfilled: the object has been modified; "
                "please apply your changes to the latest version and try again",
            )
        return self._write(res, key, obj, "MODIFIED")

    def _delete(self, res: ResKey, request: rendering.Request) -> dict[str, Any]:
        obj = self.store[res][(request.namespace, request.name or "")]
        self.remove(_text(res), request.namespace, request.name or "")
        return obj

    def _selected(self, request: rendering.Request, res: ResKey, obj: dict[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        if request.namespace is not None and meta.get("namespace") != request.namespace:
            return False
        return request.name is None or meta.get("name") == request.name

    async def _serve_list(self, request: rendering.Request) -> rendering.Payload:
        res = self._declared(request)
        items = [o for o in self.store.get(res, {}).values() if self._selected(request, res, o)]
        return {
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": str(self.revision)},
            "items": copy.deepcopy(items),
        }

    async def _serve_fetch(self, request: rendering.Request) -> rendering.Payload:
        res = self._declared(request)
        obj = self.store.get(res, {}).get((request.namespace, request.name or ""))
        if obj is None:
            raise k8s.KubernetesObjectNotFoundError()
        return copy.deepcopy(obj)

    async def _serve_watch(self, request: rendering.Request) -> AsyncIterator[rendering.Payload]:
        res = self._declared(request)
        self.watches_served += 1
        yield b""
        params = request.params
        loop = asyncio.get_running_loop()
        deadline = loop.time() + float(params.get("timeoutSeconds") or 3600)
        bookmarks = params.get("allowWatchBookmarks") == "true"
        since = params.get("resourceVersion")
        if since in (None, "", "0"):
            for obj in list(self.store.get(res, {}).values()):
                if self._selected(request, res, obj):
                    yield {"type": "ADDED", "object": copy.deepcopy(obj)}
            position = self.revision
        else:
            position = int(since)
            if position < self.compacted:
                yield _gone(position)
                return
        expiries = self._expiries
        next_bookmark = loop.time() + self.bookmark_interval_s
        while True:
            if self.offline:
                return
            if self._expiries != expiries:
                yield _gone(position)
                return
            for event in [e for e in self.history if e.revision > position]:
                position = event.revision
                if event.res == res and self._selected(request, res, event.object):
                    yield {"type": event.type, "object": event.object}
            position = max(position, self.revision)
            now = loop.time()
            if now >= deadline:
                return
            if bookmarks and now >= next_bookmark:
                next_bookmark = now + self.bookmark_interval_s
                yield {
                    "type": "BOOKMARK",
                    "object": {"kind": "Bookmark", "metadata": {"resourceVersion": str(position)}},
                }
            wait = min(deadline, next_bookmark if bookmarks else deadline) - now
            changed = self._changed
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(wait, 0.001))


def _gone(position: int) -> dict[str, Any]:
    return {
        "type": "ERROR",
        "object": {
            "kind": "Status",
            "apiVersion": "v1",
            "status": "Failure",
            "reason": "Expired",
            "code": 410,
            "message": f"too old resource version: {position}",
        },
    }


def _text(res: ResKey) -> str:
    return "/".join(p for p in res if p)


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """JSON merge patch (RFC 7386): dicts merge, None deletes, anything else replaces."""
    for key, value in changes.items():
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


class Apiserver:
    """The emulator on a loopback port that can go down and come back on the same port."""

    def __init__(self, emulator: KubeEmulator) -> None:
        self.emulator = emulator
        self.port = 0
        self._server: kmock.Server | None = None
        self._counter = itertools.count()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def up(self) -> None:
        self.emulator.offline = False
        server = kmock.Server(self.emulator, port=self.port or None)
        await server.__aenter__()
        self._server = server
        self.port = server.port

    async def down(self) -> None:
        """Close the port: connections are cut and new ones refused."""
        server, self._server = self._server, None
        self.emulator.offline = True
        self.emulator._wake()
        if server is not None:
            await server.__aexit__(None, None, None)

    def api_client(self) -> Any:
        from kubernetes import client

        configuration = client.Configuration(host=self.url)
        configuration.connection_pool_maxsize = 16
        return client.ApiClient(configuration)
