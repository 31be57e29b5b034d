"""The etcd backend: leases, fencing by owner, state values, snapshots and watches.

The calls themselves, over etcd's v3 JSON gateway with failover between
endpoints, are `portway.registry.etcd_client`'s.

Theory of operation: every published key gets its own lease of `ttl_s`,
kept alive every `min(5 s, ttl/3)`. The stored value names the instance's
`owner` beside the record. Creating a key is a txn "create_revision == 0
then put with my lease, else read it"; if what was read names this owner
(an earlier session of it: the process before a restart, the previous
leader), the key is adopted by "mod_revision == what I read then put with
my lease", which moves it off the old lease in one revision: watchers see a
PUT, and the old lease expires or is revoked holding nothing. Updating a
held key is "lease == mine then put", deleting it "lease == mine then
delete": a writer of another owner is refused, never interleaved, and a
session whose key was adopted can no longer touch it.

A watch streams events from `from_revision + 1`; if that revision was
compacted, it re-lists and yields a `Snapshot`, then carries on after the
snapshot's revision. A broken stream is resumed on the next endpoint from
the last revision seen; only when no endpoint answers does the
watch raise `RegistryUnavailable`, and the caller's next `watch(revision)`
resumes where it stopped (etcd revisions survive restarts).

State values are plain keys under the root with no lease; a state key's
version is its mod_revision, and writes are transactions comparing it
("create_revision == 0" for a key that must be absent).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from typing import Any, NamedTuple

import aiohttp

from portway.model import DEFAULT_RENEW_S, DEFAULT_TTL_S, KEY_PREFIX, ServiceKey, ServiceRecord
from portway.registry.base import (
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
from portway.registry.decode import (
    DECODE_INLINE_BYTES,
    decode_change,
    decode_record,
    stored_owner,
    stored_value,
)
from portway.registry.etcd_client import (
    EtcdClient,
    EtcdError,
    b64,
    prefix_end,
    range_items,
    unb64,
    version_compare,
)

log = logging.getLogger(__name__)

SNAPSHOT_PAGE_KEYS = 1000
"""Keys per range request of a snapshot. 20,000 records in one answer are ~50 MB of
JSON, held while they are decoded (a startup peak of a full second copy of the
registry); a page of 1,000 is ~2.5 MB."""
SNAPSHOT_ATTEMPTS = 3
"""Snapshots started afresh when the revision they read at is compacted meanwhile."""
COMPACTED = "required revision has been compacted"
"""etcd's answer to a read at a compacted revision."""
CLAIM_ATTEMPTS = 4
"""Create-or-adopt rounds before a key that keeps changing under us counts as held."""


class _Page(NamedTuple):
    revision: int
    more: bool
    last_key: bytes
    records: dict[ServiceKey, ServiceRecord]


def _relative(key: bytes, root: bytes) -> str:
    """A stored key without the root prefix, as text (`EtcdRegistry._rel` for raw keys)."""
    return (key[len(root) :] if key.startswith(root) else key).decode(errors="replace")


class EtcdRegistry:
    """A session on an etcd cluster given by its client URLs."""

    backend = "etcd"

    def __init__(
        self,
        endpoints: Sequence[str],
        *,
        root: str = "",
        owner: str = "",
        request_timeout_s: float = 3.0,
        failover_s: float = 2.0,
    ) -> None:
        self.client = EtcdClient(
            endpoints, request_timeout_s=request_timeout_s, failover_s=failover_s
        )
        self.root = root
        self.owner = owner or f"etcd-session-{uuid.uuid4().hex}"
        self._prefix = (root + KEY_PREFIX).encode()
        self._leases: dict[ServiceKey, Lease] = {}
        self._keepalives: dict[ServiceKey, asyncio.Task[None]] = {}

    def _full(self, key: ServiceKey | str) -> str:
        return self.root + (key.path() if isinstance(key, ServiceKey) else key)

    def _rel(self, raw_key: str) -> str:
        key = unb64(raw_key).decode(errors="replace")
        return key[len(self.root) :] if key.startswith(self.root) else key

    async def publish(self, record: ServiceRecord, ttl_s: float | None = DEFAULT_TTL_S) -> Lease:
        key, full = record.key, b64(self._full(record.key))
        value = b64(stored_value(record, self.owner))
        lease = self._leases.get(key)
        if lease is not None and not lease.lost:
            lease_id = lease.lease_id if ttl_s is not None else "0"
            ok, _ = await self.client.txn(
                [{"target": "LEASE", "key": full, "lease": lease_id}],
                [{"request_put": {"key": full, "value": value, "lease": lease_id}}],
            )
            if ok:
                return lease
            self._forget(key)
        lease_id = await self.client.grant(ttl_s) if ttl_s is not None else "0"
        try:
            await self._claim(key, full, value, lease_id)
        except BaseException:
            if ttl_s is not None:
                await self.client.revoke(lease_id)
            raise
        lease = Lease(key, ttl_s or 0.0, lease_id, time.monotonic())
        self._leases[key] = lease
        if ttl_s is not None:
            self._keepalives[key] = asyncio.create_task(
                self._keep_alive(lease), name=f"etcd-keepalive-{key.path()}"
            )
        return lease

    async def _claim(self, key: ServiceKey, full: str, value: str, lease_id: str) -> None:
        """Put the key under `lease_id` if it is absent or this owner's; else OwnershipError.

        Each round is one txn that writes if the key is as last seen (absent,
        then at the mod_revision read) and otherwise reads it, so a key that
        changes between the read and the write is judged again, never
        overwritten blind.
        """
        compare: dict[str, Any] = {"target": "CREATE", "key": full, "create_revision": "0"}
        holder = ""
        for _ in range(CLAIM_ATTEMPTS):
            out = await self.client.call(
                "/v3/kv/txn",
                {
                    "compare": [compare],
                    "success": [{"request_put": {"key": full, "value": value, "lease": lease_id}}],
                    "failure": [{"request_range": {"key": full}}],
                },
            )
            if out.get("succeeded"):
                return
            responses = out.get("responses") or [{}]
            kvs = responses[0].get("response_range", {}).get("kvs", [])
            if not kvs:
                compare = {"target": "CREATE", "key": full, "create_revision": "0"}
                continue
            holder = stored_owner(unb64(kvs[0].get("value", "")))
            if holder != self.owner:
                raise OwnershipError(key, holder)
            compare = {"target": "MOD", "key": full, "mod_revision": kvs[0]["mod_revision"]}
        raise OwnershipError(key, holder)

    def _forget(self, key: ServiceKey) -> Lease | None:
        task = self._keepalives.pop(key, None)
        if task is not None:
            task.cancel()
        return self._leases.pop(key, None)

    async def _keep_alive(self, lease: Lease) -> None:
        period = min(DEFAULT_RENEW_S, lease.ttl_s / 3)
        while True:
            await asyncio.sleep(period)
            try:
                ttl_s = await self.client.keep_alive(lease.lease_id)
            except RegistryError as exc:
                log.warning(
                    "etcd lease renewal failed; retrying",
                    extra={"key": lease.key.path(), "error": str(exc), "backend": "etcd"},
                )
                continue
            if ttl_s <= 0:
                lease.lost = True
                log.warning(
                    "etcd lease expired before renewal",
                    extra={"key": lease.key.path(), "lease": lease.lease_id, "backend": "etcd"},
                )
                return
            lease.last_renewal = time.monotonic()

    async def withdraw(self, key: ServiceKey) -> None:
        lease = self._forget(key)
        if lease is None:
            return
        full = b64(self._full(key))
        lease_id = lease.lease_id if lease.ttl_s else "0"
        await self.client.txn(
            [{"target": "LEASE", "key": full, "lease": lease_id}],
            [{"request_delete_range": {"key": full}}],
        )
        if lease.ttl_s:
            await self.client.revoke(lease.lease_id)

    async def abandon(self, key: ServiceKey) -> None:
        lease = self._forget(key)
        if lease is not None:
            lease.renewing = False

    async def put_raw(self, key: str, data: bytes) -> None:
        """Write bytes under `key` (relative to the root) without a lease or checks."""
        await self.client.call("/v3/kv/put", {"key": b64(self._full(key)), "value": b64(data)})

    async def read_state(self, key: str) -> StateEntry | None:
        out = await self.client.call("/v3/kv/range", {"key": b64(self._full(check_state_key(key)))})
        kvs = out.get("kvs", [])
        if not kvs:
            return None
        return StateEntry(unb64(kvs[0].get("value", "")).decode(), int(kvs[0]["mod_revision"]))

    async def list_state(self, prefix: str) -> dict[str, StateEntry]:
        start = self._full(check_state_prefix(prefix)).encode()
        out = await self.client.call(
            "/v3/kv/range", {"key": b64(start), "range_end": b64(prefix_end(start))}
        )
        return {
            self._rel(kv["key"]): StateEntry(
                unb64(kv.get("value", "")).decode(), int(kv["mod_revision"])
            )
            for kv in out.get("kvs", [])
        }

    async def write_state(self, key: str, value: str, *, version: int) -> None:
        full = b64(self._full(check_state_key(key)))
        ok, _ = await self.client.txn(
            [version_compare(full, version)],
            [{"request_put": {"key": full, "value": b64(value)}}],
        )
        if not ok:
            raise VersionConflict(key, version)

    async def delete_state(self, key: str, *, version: int) -> None:
        full = b64(self._full(check_state_key(key)))
        ok, _ = await self.client.txn(
            [version_compare(full, version)],
            [{"request_delete_range": {"key": full}}],
        )
        if not ok:
            raise VersionConflict(key, version)

    async def snapshot(self) -> Snapshot:
        """Every record, in pages of `SNAPSHOT_PAGE_KEYS` keys, all read at the revision
        the first page saw: one consistent cut, as a single range would give. A page
        longer than `DECODE_INLINE_BYTES` is decoded in a thread. If that revision is
        compacted before the last page (a compaction running meanwhile), the snapshot
        starts again at the newest one."""
        attempt = 1
        while True:
            try:
                return await self._paged_snapshot()
            except EtcdError as exc:
                if COMPACTED not in str(exc) or attempt >= SNAPSHOT_ATTEMPTS:
                    raise
            attempt += 1
            log.info("etcd compacted a snapshot's revision while it was read; reading again")

    async def _paged_snapshot(self) -> Snapshot:
        end = b64(prefix_end(self._prefix))
        start = self._prefix
        revision = 0
        records: dict[ServiceKey, ServiceRecord] = {}
        while True:
            body: dict[str, Any] = {
                "key": b64(start),
                "range_end": end,
                "limit": SNAPSHOT_PAGE_KEYS,
            }
            if revision:
                body["revision"] = str(revision)
            data = await self.client.call("/v3/kv/range", body, raw=True)
            if len(data) <= DECODE_INLINE_BYTES:
                page = self._decode_page(data)
            else:
                page = await asyncio.to_thread(self._decode_page, data)
            del data
            revision = revision or page.revision
            records.update(page.records)
            if not page.more:
                return Snapshot(records, revision)
            start = page.last_key + b"\0"

    def _decode_page(self, data: bytes) -> _Page:
        """A range answer's records, decoded one key-value at a time."""
        revision, more, pairs = range_items(data)
        root = self.root.encode()
        records: dict[ServiceKey, ServiceRecord] = {}
        last_key = b""
        for last_key, value in pairs:
            record = decode_record(_relative(last_key, root), value, backend=self.backend)
            if record is not None:
                records[record.key] = record
        return _Page(revision, more, last_key, records)

    async def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        revision = from_revision
        failures = 0
        while True:
            index = self.client.current
            url = self.client.endpoints[index] + "/v3/watch"
            body = {
                "create_request": {
                    "key": b64(self._prefix),
                    "range_end": b64(prefix_end(self._prefix)),
                    "start_revision": str(revision + 1),
                    "progress_notify": True,
                }
            }
            try:
                async for result in self.client.stream(url, body):
                    failures = 0
                    if int(result.get("compact_revision", 0)) > 0:
                        snap = await self.snapshot()
                        log.info(
                            "etcd watch revision compacted; re-listed",
                            extra={"from_revision": revision, "revision": snap.revision},
                        )
                        revision = snap.revision
                        yield snap
                        break
                    for event in result.get("events", []):
                        revision = int(event["kv"]["mod_revision"])
                        change = self._change(event, revision)
                        if change is not None:
                            yield change
                else:
                    raise aiohttp.ServerDisconnectedError("watch stream ended")
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                failures += 1
                self.client.skip(index)
                if failures >= len(self.client.endpoints):
                    raise RegistryUnavailable(f"etcd watch lost: {describe_error(exc)}") from exc
                log.warning(
                    "etcd watch stream broke; resuming on the next endpoint",
                    extra={"endpoint": url, "revision": revision, "error": describe_error(exc)},
                )

    def _change(self, event: dict[str, Any], revision: int) -> Change | None:
        kv = event["kv"]
        value = None if event.get("type") == "DELETE" else unb64(kv.get("value", ""))
        return decode_change(self._rel(kv["key"]), value, revision, backend=self.backend)

    async def close(self) -> None:
        for key in list(self._leases):
            try:
                await self.withdraw(key)
            except RegistryError as exc:
                log.warning("etcd withdraw on close failed", extra={"error": str(exc)})
        for task in self._keepalives.values():
            task.cancel()
        await self.client.close()
