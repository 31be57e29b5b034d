"""The Consul backend: KV + sessions + blocking queries via py-consul's asyncio client.

Theory of operation: each published key is held by its own Consul session
(`Behavior: delete`, `LockDelay: 0`, `TTL` = the record's TTL, at least
`min_ttl_s`, 10 s on a real agent) and written with `?acquire=<session>`, so
a second writer's acquire fails while the session lives. The stored value
names the instance's `owner` beside the record: when the acquire fails and
the value read names this owner (an earlier session of it: the process
before a restart, the previous leader), the key is adopted by one
transaction, "unlock with the old session, lock with mine", which never
deletes it (a session expiring deletes only the keys it still holds);
otherwise `OwnershipError`.
A renew task keeps the session alive every `min(5 s, ttl/3)`; when the
writer stops renewing, Consul invalidates the session and deletes the key:
"cluster gone". Withdrawing destroys the session, which deletes the key.

Readers use blocking queries on the prefix (`?recurse&index=N&wait=...`).
Consul returns whole state, not a log, so changes are the difference between
consecutive results, all stamped with the new `X-Consul-Index`; several
writes to one key between two results coalesce. Every answer holds every
record (tens of megabytes at 10,000 services), so it is read as bytes and
walked by msgspec with each value left as raw text: only a key whose
`ModifyIndex` moved has its value base64-decoded and its record decoded,
the others keep the record decoded before; a large answer is walked, and
diffed against the previous state, in a thread. A watch can resume from a
revision whose state this instance still remembers; from any other it
starts with a `Snapshot`. An index that goes backwards (agent restored,
leader change) also means a `Snapshot`, as Consul's docs ask.

With `mirror_catalog=True` published endpoints are also registered with the
local agent as catalog services for other Consul users (`consul_catalog`);
portway itself only reads KV.

State values are KV entries under the root without a session; a state
key's version is its ModifyIndex and writes use Consul's `?cas=` (0: create
only).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import math
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import consul
import consul.aio
from consul.callback import CB

from portway.model import DEFAULT_RENEW_S, DEFAULT_TTL_S, KEY_PREFIX, ServiceKey, ServiceRecord
from portway.registry.base import (
    DIFF_INLINE_RECORDS,
    Change,
    Lease,
    OwnershipError,
    RegistryError,
    RegistryUnavailable,
    Snapshot,
    StateEntry,
    VersionConflict,
    check_state_key,
    check_state_prefix,
    describe_error,
)
from portway.registry.consul_catalog import CatalogMirror
from portway.registry.consul_listing import (
    Decoded,
    Records,
    RememberedStates,
    Undo,
    diff,
    fold,
    raw_listing,
    undo_of,
)
from portway.registry.decode import DECODE_INLINE_BYTES, stored_owner, stored_value

log = logging.getLogger(__name__)

REMEMBERED_STATES = 32
"""Revisions a watch can resume from without a snapshot (as undo entries, see
`consul_listing.RememberedStates`)."""
CLAIM_ATTEMPTS = 4
"""Acquire-or-adopt rounds before a key that keeps changing under us counts as held."""
_TRANSPORT_ERRORS = (aiohttp.ClientError, TimeoutError, OSError, consul.ConsulException)


class ConsulRegistry:
    """A client of one Consul agent (`host:port` or `http://host:port`, as CONSUL_HTTP_ADDR)."""

    backend = "consul"

    def __init__(
        self,
        address: str = "127.0.0.1:8500",
        *,
        root: str = "",
        owner: str = "",
        token: str | None = None,
        min_ttl_s: float = 10.0,
        wait_s: float = 30.0,
        mirror_catalog: bool = False,
    ) -> None:
        parts = urlsplit(address if "://" in address else f"http://{address}")
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 8500
        self._scheme = parts.scheme
        self._token = token
        self.root = root
        self.owner = owner or f"consul-session-{uuid.uuid4().hex}"
        self._prefix = root + KEY_PREFIX
        self.min_ttl_s = min_ttl_s
        self.wait_s = wait_s
        self.mirror_catalog = mirror_catalog
        self._client: consul.aio.Consul | None = None
        self._leases: dict[ServiceKey, Lease] = {}
        self._renewers: dict[ServiceKey, asyncio.Task[None]] = {}
        self._catalog = CatalogMirror(self._consul, self._guard) if mirror_catalog else None
        self._states = RememberedStates(REMEMBERED_STATES)
        self._decoded: Decoded = ({}, {})

    def _consul(self) -> consul.aio.Consul:
        if self._client is None:
            self._client = consul.aio.Consul(
                host=self._host,
                port=self._port,
                scheme=self._scheme,
                token=self._token,
                connections_timeout=self.wait_s + 15,
            )
        return self._client

    async def _guard(self, call: Any) -> Any:
        try:
            return await call
        except _TRANSPORT_ERRORS as exc:
            raise RegistryUnavailable(
                f"consul at {self._host}:{self._port}: {describe_error(exc)}"
            ) from exc

    async def _create_session(self, key: ServiceKey, ttl_s: float | None) -> str:
        body: dict[str, Any] = {
            "Name": f"portway {self.owner} {key.path()}",
            "Behavior": "delete",
            "LockDelay": "0s",
        }
        if ttl_s is not None:
            body["TTL"] = f"{max(self.min_ttl_s, math.ceil(ttl_s))}s"
        c = self._consul()
        sid: str = await self._guard(
            c.http.put(CB.json(is_id=True), "/v1/session/create", data=json.dumps(body))
        )
        return sid

    async def _destroy(self, sid: str) -> None:
        with contextlib.suppress(RegistryError):
            await self._guard(self._consul().session.destroy(sid))

    async def _acquire(self, key: ServiceKey, value: str, sid: str) -> bool:
        try:
            ok = await self._consul().kv.put(self.root + key.path(), value, acquire=sid)
        except consul.ConsulException as exc:
            if "session" in str(exc).lower():
                return False
            raise RegistryUnavailable(str(exc)) from exc
        except _TRANSPORT_ERRORS as exc:
            raise RegistryUnavailable(f"consul: {describe_error(exc)}") from exc
        return bool(ok)

    async def publish(self, record: ServiceRecord, ttl_s: float | None = DEFAULT_TTL_S) -> Lease:
        key, value = record.key, stored_value(record, self.owner)
        lease = self._leases.get(key)
        if lease is not None and not lease.lost:
            if await self._acquire(key, value, lease.lease_id):
                if self._catalog is not None:
                    await self._catalog.register(record)
                return lease
            self._forget(key)
        sid = await self._create_session(key, ttl_s)
        try:
            await self._claim(key, value, sid)
        except BaseException:
            await self._destroy(sid)
            raise
        lease = Lease(key, ttl_s or 0.0, sid, time.monotonic())
        self._leases[key] = lease
        if ttl_s is not None:
            self._renewers[key] = asyncio.create_task(self._renew_forever(lease))
        if self._catalog is not None:
            await self._catalog.register(record)
        return lease

    async def _claim(self, key: ServiceKey, value: str, sid: str) -> None:
        """Acquire the key with `sid` if it is free or this owner's; else OwnershipError."""
        holder = ""
        for _ in range(CLAIM_ATTEMPTS):
            if await self._acquire(key, value, sid):
                return
            _, entry = await self._guard(self._consul().kv.get(self.root + key.path()))
            if entry is None:
                continue
            holder = stored_owner(entry.get("Value") or b"")
            if holder != self.owner:
                raise OwnershipError(key, holder)
            held_by = entry.get("Session")
            if held_by and await self._adopt(key, value, held_by, sid):
                return
        raise OwnershipError(key, holder)

    async def _adopt(self, key: ServiceKey, value: str, old: str, sid: str) -> bool:
        """Move the key from session `old` to `sid` in one transaction (False: rolled back,
        `old` no longer holds it)."""
        full = self.root + key.path()
        data = base64.b64encode(value.encode()).decode()
        ops = [
            {"KV": {"Verb": "unlock", "Key": full, "Value": data, "Session": old}},
            {"KV": {"Verb": "lock", "Key": full, "Value": data, "Session": sid}},
        ]
        status: int = await self._guard(
            self._consul().http.put(_status_code, "/v1/txn", data=json.dumps(ops))
        )
        if status not in (200, 409):
            raise RegistryUnavailable(f"consul txn answered {status}")
        return status == 200

    def _forget(self, key: ServiceKey) -> Lease | None:
        task = self._renewers.pop(key, None)
        if task is not None:
            task.cancel()
        return self._leases.pop(key, None)

    async def _renew_forever(self, lease: Lease) -> None:
        period = min(DEFAULT_RENEW_S, max(self.min_ttl_s, lease.ttl_s) / 3)
        while True:
            await asyncio.sleep(period)
            try:
                await self._consul().session.renew(lease.lease_id)
            except consul.NotFound:
                lease.lost = True
                log.warning(
                    "consul session expired before renewal",
                    extra={"key": lease.key.path(), "session": lease.lease_id},
                )
                return
            except _TRANSPORT_ERRORS as exc:
                log.warning(
                    "consul session renewal failed; retrying",
                    extra={
                        "key": lease.key.path(),
                        "error": describe_error(exc),
                        "backend": "consul",
                    },
                )
                continue
            lease.last_renewal = time.monotonic()

    async def withdraw(self, key: ServiceKey) -> None:
        lease = self._forget(key)
        if lease is not None:
            await self._guard(self._consul().session.destroy(lease.lease_id))
            if self._catalog is not None:
                await self._catalog.deregister(key)

    async def abandon(self, key: ServiceKey) -> None:
        lease = self._forget(key)
        if lease is not None:
            lease.renewing = False

    async def put_raw(self, key: str, data: bytes) -> None:
        """Write bytes under `key` (relative to the root) without a session."""
        await self._guard(self._consul().kv.put(self.root + key, data))

    async def read_state(self, key: str) -> StateEntry | None:
        _, entry = await self._guard(self._consul().kv.get(self.root + check_state_key(key)))
        return None if entry is None else _state_entry(entry)

    async def list_state(self, prefix: str) -> dict[str, StateEntry]:
        _, entries = await self._guard(
            self._consul().kv.get(self.root + check_state_prefix(prefix), recurse=True)
        )
        return {e["Key"][len(self.root) :]: _state_entry(e) for e in entries or []}

    async def write_state(self, key: str, value: str, *, version: int) -> None:
        full = self.root + check_state_key(key)
        if not await self._guard(self._consul().kv.put(full, value, cas=version)):
            raise VersionConflict(key, version)

    async def delete_state(self, key: str, *, version: int) -> None:
        full = self.root + check_state_key(key)
        if version == 0:
            if await self.read_state(key) is not None:
                raise VersionConflict(key, version)
            return
        if not await self._guard(self._consul().kv.delete(full, cas=version)):
            raise VersionConflict(key, version)

    async def _list(self, index: int | None = None) -> tuple[int, dict[ServiceKey, ServiceRecord]]:
        c = self._consul()
        params: list[tuple[str, Any]] = [("recurse", "1")]
        if index is not None:
            params += [("index", index), ("wait", f"{max(1, int(self.wait_s))}s")]
        got_index, body = await self._guard(
            c.http.get(
                raw_listing,
                f"/v1/kv/{self._prefix}",
                params=params,
                headers=c.prepare_headers(None),
                raw=True,
            )
        )
        latest = self._states.state
        if len(body) > DECODE_INLINE_BYTES:
            seen, state, undo = await asyncio.to_thread(self._fold, body, self._decoded, latest)
        else:
            seen, state, undo = self._fold(body, self._decoded, latest)
        self._decoded = seen
        revision = int(got_index)
        self._states.remember(revision, state, undo, latest)
        return revision, state

    def _fold(self, body: bytes, before: Decoded, latest: Records) -> tuple[Decoded, Records, Undo]:
        """The listing's records (`consul_listing.fold`) and their undo against `latest`;
        in a thread when large."""
        seen, state = fold(body, before, root=self.root, backend=self.backend)
        return seen, state, undo_of(latest, state)

    async def snapshot(self) -> Snapshot:
        revision, state = await self._list()
        return Snapshot(dict(state), revision)

    async def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        revision = from_revision
        known = self._states.get(revision)
        if known is None:
            snap = await self.snapshot()
            revision, known = snap.revision, dict(snap.records)
            yield snap
        while True:
            index, state = await self._list(index=revision)
            if index < revision:
                revision, known = index, state
                yield Snapshot(dict(state), index)
                continue
            if index == revision:
                continue
            if len(state) > DIFF_INLINE_RECORDS:
                changes = await asyncio.to_thread(diff, known, state, index)
            else:
                changes = diff(known, state, index)
            for change in changes:
                yield change
            revision, known = index, state

    async def close(self) -> None:
        for key in list(self._leases):
            try:
                await self.withdraw(key)
            except RegistryError as exc:
                log.warning("consul withdraw on close failed", extra={"error": str(exc)})
        if self._client is not None:
            await self._client.close()
            self._client = None


def _status_code(response: Any) -> int:
    """The HTTP status of a py-consul response (a txn answers 409 when rolled back)."""
    return int(response.code)


def _state_entry(entry: dict[str, Any]) -> StateEntry:
    raw = entry.get("Value") or b""
    return StateEntry(
        raw.decode() if isinstance(raw, bytes) else str(raw), int(entry["ModifyIndex"])
    )
