"""The files registry: a directory of record files, the embedded default backend.

Theory of operation: each record is one file (see `record_files` for the
format, TTL and owner fields). Writers take a directory-wide `flock` around
check-then-write so two writers never both believe they own a key; a key is
free when no live file claims it (absent, or expired). A writer renews its
leases by touching its files every `renew_s`. Readers rescan the directory
when watchfiles reports a change (polling every `poll_interval_s` when
inotify is unavailable or `force_polling` is set) and at the next TTL
deadline, diff the result against what they saw, and number the differences
with their own revision counter. Revisions are per reader instance: a watch
resumes exactly from any revision this instance still has in its history,
and from anything else gets a `Snapshot`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import fcntl
import logging
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import watchfiles

from portway.model import DEFAULT_RENEW_S, DEFAULT_TTL_S, ServiceKey, ServiceRecord
from portway.registry.base import Change, ChangeKind, Lease, OwnershipError, Snapshot
from portway.registry.record_files import (
    RecordFile,
    file_name,
    load_record_file,
    read_records,
    record_file_bytes,
    scan,
    write_atomic,
)

__all__ = ["FilesRegistry", "read_records"]

log = logging.getLogger(__name__)

LOCK_NAME = ".portway.lock"
HISTORY_LIMIT = 10_000


class FilesRegistry:
    """A registry kept in `directory`; several instances may share it."""

    backend = "files"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        force_polling: bool = False,
        poll_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.session = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._force_polling = force_polling
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._leases: dict[ServiceKey, Lease] = {}
        self._renewer: asyncio.Task[None] | None = None
        self._state: dict[ServiceKey, RecordFile] = {}
        self._revision = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=HISTORY_LIMIT)
        self._reported: set[tuple[str, float]] = set()
        self._scanner: asyncio.Task[None] | None = None
        self._dirty = asyncio.Event()
        self._synced = asyncio.Event()
        self._stop = asyncio.Event()
        self._renew_wake = asyncio.Event()

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        fd = os.open(self.directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _holder(self, key: ServiceKey) -> RecordFile | None:
        return scan(self.directory, self._clock(), self._reported).get(key)

    async def publish(self, record: ServiceRecord, ttl_s: float | None = DEFAULT_TTL_S) -> Lease:
        key = record.key
        with self._locked():
            holder = self._holder(key)
            if holder is not None and holder.owner != self.session:
                raise OwnershipError(key, holder.owner or f"hand-written {holder.path.name}")
            write_atomic(
                self.directory / file_name(key), record_file_bytes(record, ttl_s, self.session)
            )
        lease = self._leases.get(key)
        if lease is None or lease.lost:
            lease = Lease(key, ttl_s or 0.0, self.session)
            self._leases[key] = lease
            self._renew_wake.set()
        lease.last_renewal = time.monotonic()
        if ttl_s is not None and self._renewer is None:
            self._renewer = asyncio.create_task(self._renew_forever(), name="files-renew")
        return lease

    async def withdraw(self, key: ServiceKey) -> None:
        if self._leases.pop(key, None) is None:
            return
        with self._locked():
            path = self.directory / file_name(key)
            try:
                mine = load_record_file(path).owner == self.session
            except (OSError, ValueError):
                return
            if mine:
                path.unlink(missing_ok=True)

    async def abandon(self, key: ServiceKey) -> None:
        lease = self._leases.pop(key, None)
        if lease is not None:
            lease.renewing = False

    async def _renew_forever(self) -> None:
        """Touch held files every third of the shortest TTL, until `close`.

        A lease granted while this loop sleeps wakes it (`_renew_wake`), so the
        new lease's interval applies at once instead of after a sleep computed
        for the leases held before (which could outlast the new TTL). The loop
        also ends on `_stop`, not only on cancellation, so a cancel that lands
        as the wake-up fires cannot leave it running.
        """
        while not self._stop.is_set():
            ttls = [lease.ttl_s for lease in self._leases.values() if lease.ttl_s]
            try:
                async with asyncio.timeout(min([DEFAULT_RENEW_S, *(t / 3 for t in ttls)])):
                    await self._renew_wake.wait()
            except TimeoutError:
                self.renew()
            else:
                self._renew_wake.clear()

    def renew(self) -> None:
        """Touch every held file; a lease whose file another writer took is marked lost."""
        with self._locked():
            for key, lease in list(self._leases.items()):
                if not lease.ttl_s:
                    continue
                path = self.directory / file_name(key)
                try:
                    if load_record_file(path).owner != self.session:
                        raise FileNotFoundError(path)
                    os.utime(path)
                    lease.last_renewal = time.monotonic()
                except (OSError, ValueError):
                    lease.lost = True
                    del self._leases[key]
                    log.warning("files lease lost", extra={"key": key.path(), "backend": "files"})

    def _sync(self) -> float | None:
        """Rescan, record the differences as changes; returns the next expiry deadline."""
        now = self._clock()
        new = scan(self.directory, now, self._reported)
        for key in sorted(self._state.keys() - new.keys(), key=ServiceKey.path):
            self._revision += 1
            self._history.append(Change(ChangeKind.DELETE, key, self._revision))
        for key in sorted(new, key=ServiceKey.path):
            old = self._state.get(key)
            if old is None or old.record != new[key].record:
                self._revision += 1
                self._history.append(Change(ChangeKind.PUT, key, self._revision, new[key].record))
        self._state = new
        deadlines = [d for d in (rf.expires_at() for rf in new.values()) if d is not None]
        return min(deadlines) if deadlines else None

    async def snapshot(self) -> Snapshot:
        self._sync()
        return Snapshot({k: rf.record for k, rf in self._state.items()}, self._revision)

    async def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        if self._scanner is None:
            self._sync()
            self._scanner = asyncio.create_task(self._scan_forever(), name="files-scan")
        revision = from_revision
        oldest = self._history[0].revision - 1 if self._history else self._revision
        if not oldest <= revision <= self._revision:
            snap = await self.snapshot()
            revision = snap.revision
            yield snap
        while True:
            synced = self._synced
            for change in [c for c in self._history if c.revision > revision]:
                revision = change.revision
                yield change
            if self._revision <= revision:
                await synced.wait()

    async def _scan_forever(self) -> None:
        notifier = asyncio.create_task(self._notify_forever(), name="files-notify")
        try:
            while not self._stop.is_set():
                deadline = self._sync()
                self._synced.set()
                self._synced = asyncio.Event()
                timeout = self._poll_interval_s if self._force_polling else 30.0
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - self._clock()) + 0.01)
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(timeout):
                        await self._dirty.wait()
                self._dirty.clear()
        finally:
            notifier.cancel()

    async def _notify_forever(self) -> None:
        if self._force_polling:
            return
        try:
            async for _ in watchfiles.awatch(
                self.directory,
                watch_filter=None,
                step=10,
                stop_event=self._stop,
                recursive=False,
            ):
                self._dirty.set()
        except (OSError, RuntimeError) as exc:
            log.warning(
                "file watching failed; polling instead",
                extra={"directory": str(self.directory), "error": str(exc), "backend": "files"},
            )
            self._force_polling = True
            self._dirty.set()

    async def close(self) -> None:
        self._stop.set()
        self._renew_wake.set()
        self._dirty.set()
        for task in (self._scanner, self._renewer):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._scanner = self._renewer = None
        for key in list(self._leases):
            await self.withdraw(key)
