"""An in-memory registry for tests: the contract without a server.

`MemoryStore` is the shared "server" (revisions, history, stored JSON text);
each `MemoryRegistry(store)` is one client session, so two of them on one
store behave like two controllers on one etcd: the second writer of a key is
refused while the first one's lease lives, unless both were opened with the
same `owner`, in which case the second adopts the key (a PUT, no DELETE) and
the first one's lease no longer reaches it. A held lease never lapses (the
renewal is implicit); `abandon` starts the TTL clock on the event loop's
timers. Values are kept as text and parsed on read, so `put_raw` can plant a
bad record the way a foreign writer would. `compact(revision)` drops history
so watchers resuming from older revisions get a `Snapshot`, as with etcd.
State values (`read_state` ...) live beside the entries, versioned by their
own counter, and are refused like everything else while the store is
unavailable.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from portway.model import DEFAULT_TTL_S, ServiceKey, ServiceRecord
from portway.registry.base import (
    Change,
    Lease,
    OwnershipError,
    RegistryUnavailable,
    Snapshot,
    StateEntry,
    VersionConflict,
    check_state_key,
    check_state_prefix,
)
from portway.registry.decode import decode_change, decode_records


@dataclass(slots=True)
class _Entry:
    value: str
    owner: str
    """The publisher identity holding the key; a session of another one is refused."""
    session: str
    """The session whose lease the key lives by (it alone may withdraw or lapse it)."""
    expiry: asyncio.TimerHandle | None = None


@dataclass(frozen=True, slots=True)
class _Event:
    key: str
    revision: int
    value: str | None


class MemoryStore:
    """The shared state several `MemoryRegistry` sessions talk to."""

    def __init__(self) -> None:
        self.revision = 0
        self.compacted = 0
        self.entries: dict[str, _Entry] = {}
        self.history: list[_Event] = []
        self.available = True
        self.state: dict[str, StateEntry] = {}
        self.state_version = 0
        self._changed = asyncio.Event()

    def _emit(self, key: str, value: str | None) -> None:
        self.revision += 1
        self.history.append(_Event(key, self.revision, value))
        self._changed.set()
        self._changed = asyncio.Event()

    async def wait_beyond(self, revision: int) -> None:
        while self.revision <= revision and self.available:
            await self._changed.wait()

    def put(self, key: str, value: str, owner: str, session: str) -> None:
        """Write as `session` of `owner`: refused if another owner holds the key, else the
        key lives by this session's lease from now on (adopted, if another session held it)."""
        entry = self.entries.get(key)
        if entry is not None and entry.owner != owner:
            raise OwnershipError(ServiceKey.parse(key), entry.owner)
        if entry is not None and entry.expiry is not None:
            entry.expiry.cancel()
        self.entries[key] = _Entry(value, owner, session)
        self._emit(key, value)

    def put_raw(self, key: str, value: str) -> None:
        """Write bytes no portway writer would (tests of bad-record handling)."""
        self.entries[key] = _Entry(value, "foreign", "foreign")
        self._emit(key, value)

    def holds(self, key: str, session: str) -> bool:
        """Whether the key lives by `session`'s lease."""
        entry = self.entries.get(key)
        return entry is not None and entry.session == session

    def delete(self, key: str, session: str) -> None:
        entry = self.entries.get(key)
        if entry is None or entry.session != session:
            return
        if entry.expiry is not None:
            entry.expiry.cancel()
        del self.entries[key]
        self._emit(key, None)

    def lapse(self, key: str, session: str, ttl_s: float) -> None:
        """The session stopped renewing: the entry expires `ttl_s` from now."""
        entry = self.entries.get(key)
        if entry is not None and entry.session == session:
            entry.expiry = asyncio.get_running_loop().call_later(ttl_s, self.delete, key, session)

    def write_state(self, key: str, value: str | None, version: int) -> None:
        """Compare-and-set `key` (None deletes it)."""
        entry = self.state.get(key)
        if (entry.version if entry is not None else 0) != version:
            raise VersionConflict(key, version)
        if value is None:
            self.state.pop(key, None)
            return
        self.state_version += 1
        self.state[key] = StateEntry(value, self.state_version)

    def compact(self, revision: int) -> None:
        self.compacted = max(self.compacted, revision)
        self.history = [e for e in self.history if e.revision > self.compacted]

    def set_available(self, available: bool) -> None:
        """Simulate the server going away (watchers raise RegistryUnavailable)."""
        self.available = available
        self._changed.set()
        self._changed = asyncio.Event()

    def snapshot(self) -> Snapshot:
        items = [(k, e.value) for k, e in self.entries.items()]
        return Snapshot(decode_records(items, backend="memory"), self.revision)


_sessions = itertools.count(1)


class MemoryRegistry:
    """One client session on a `MemoryStore`."""

    backend = "memory"

    def __init__(self, store: MemoryStore | None = None, *, owner: str = "") -> None:
        self.store = store if store is not None else MemoryStore()
        self.session = f"memory-session-{next(_sessions)}"
        self.owner = owner or self.session
        self._leases: dict[ServiceKey, Lease] = {}

    def _check(self) -> None:
        if not self.store.available:
            raise RegistryUnavailable("memory store is unavailable")

    async def publish(self, record: ServiceRecord, ttl_s: float | None = DEFAULT_TTL_S) -> Lease:
        self._check()
        self.store.put(record.key.path(), record.to_json(), self.owner, self.session)
        lease = self._leases.get(record.key)
        if lease is None:
            lease = Lease(record.key, ttl_s or 0.0, self.session)
            self._leases[record.key] = lease
        lease.last_renewal = time.monotonic()
        return lease

    async def withdraw(self, key: ServiceKey) -> None:
        self._check()
        if self._leases.pop(key, None) is not None:
            self.store.delete(key.path(), self.session)

    async def abandon(self, key: ServiceKey) -> None:
        lease = self._leases.pop(key, None)
        if lease is not None:
            lease.renewing = False
            if lease.ttl_s:
                self.store.lapse(key.path(), self.session, lease.ttl_s)

    async def snapshot(self) -> Snapshot:
        self._check()
        return self.store.snapshot()

    async def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        self._check()
        revision = from_revision
        if revision < self.store.compacted:
            snap = self.store.snapshot()
            revision = snap.revision
            yield snap
        while True:
            for event in [e for e in self.store.history if e.revision > revision]:
                revision = event.revision
                change = decode_change(event.key, event.value, event.revision, backend="memory")
                if change is not None:
                    yield change
            await self.store.wait_beyond(revision)
            self._check()

    async def read_state(self, key: str) -> StateEntry | None:
        self._check()
        return self.store.state.get(check_state_key(key))

    async def list_state(self, prefix: str) -> dict[str, StateEntry]:
        self._check()
        check_state_prefix(prefix)
        return {k: e for k, e in self.store.state.items() if k.startswith(prefix)}

    async def write_state(self, key: str, value: str, *, version: int) -> None:
        self._check()
        self.store.write_state(check_state_key(key), value, version)

    async def delete_state(self, key: str, *, version: int) -> None:
        self._check()
        self.store.write_state(check_state_key(key), None, version)

    async def close(self) -> None:
        for key in list(self._leases):
            if self.store.available:
                self.store.delete(key.path(), self.session)
        self._leases.clear()
