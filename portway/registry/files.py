"""The files registry: a directory of record files, the embedded default backend.

Theory of operation: each record is one file (see `record_files` for the
format, TTL and owner fields). Writers take a directory-wide `flock` around
check-then-write so two writers never both believe they own a key; a key is
free when no live file claims it (absent, or expired), and a key whose live
file names this instance's `owner` is adopted by writing the file again
(`os.replace`: readers see the new content, never an absence). A session's
lease on a key is the file it wrote, known by its inode: renewing touches
the file (every third of the shortest TTL) only while the inode is still
the one written, so once another session of the owner replaced the file,
the old session neither renews nor withdraws it.

Readers keep a `RecordDirectory` (an incremental view: a file is read again
only when its stat signature changed) and refresh it off the event loop, in
a thread: the files watchfiles names (inotify), or a stat of the whole
directory when polling every `poll_interval_s` (inotify unavailable or
`force_polling`) and every `RESYNC_S` as a safety net; records whose TTL
passes are re-decided at their deadline. The keys whose live record changed
are numbered with the reader's own revision counter. A snapshot is one such
refresh; the first one reads every file once, later ones only what changed.
Revisions are per reader instance: a watch resumes exactly from any revision
this instance still has in its history, and from anything else gets a `Snapshot`.

A directory that cannot be read (removed, a dangling link, no permission) is
an outage, never "no records": `snapshot` and `watch` raise
`RegistryUnavailable`, the view keeps the last records it read, and no TTL
expiry is decided while it lasts, since a reader that cannot see the files
cannot see their renewals either (as etcd, whose leases do not run out while
it has no leader, and Envoy, which keeps the last EDS when its control plane
is lost). The scanner retries with exponential backoff (`poll_interval_s`
doubling up to `OUTAGE_BACKOFF_MAX_S`), and so does each `watch` call; the
first read that succeeds stats every file and decides expiry from their real
mtimes: records renewed meanwhile stay, records of writers that died during
the outage go at once. A directory that exists and is empty is a registry
with no records. Writers get `RegistryUnavailable` too, and keep their leases
(renewal retries on its next round).

State values are files in the `state/` subdirectory, written under the same
directory lock as records (see `state_files`).
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
from portway.registry.base import (
    Change,
    ChangeKind,
    Lease,
    OwnershipError,
    RegistryUnavailable,
    Snapshot,
    StateEntry,
)
from portway.registry.record_dir import RecordDirectory
from portway.registry.record_files import (
    RecordFile,
    file_name,
    read_records,
    record_file_bytes,
    write_atomic,
)
from portway.registry.state_files import StateFiles

__all__ = ["FilesRegistry", "read_records"]

log = logging.getLogger(__name__)

LOCK_NAME = ".portway.lock"
HISTORY_LIMIT = 10_000
RESYNC_S = 30.0
OUTAGE_BACKOFF_MAX_S = 5.0


class FilesRegistry:
    """A registry kept in `directory`; several instances may share it."""

    backend = "files"

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        owner: str = "",
        force_polling: bool = False,
        poll_interval_s: float = 0.5,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = Path(directory)
        with contextlib.suppress(OSError):  # a dangling link: an outage, said by the first read
            self.directory.mkdir(parents=True, exist_ok=True)
        self.session = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.owner = owner or self.session
        self._force_polling = force_polling
        self._poll_interval_s = poll_interval_s
        self._clock = clock
        self._leases: dict[ServiceKey, Lease] = {}
        self._inodes: dict[ServiceKey, int] = {}
        self._renewer: asyncio.Task[None] | None = None
        self.view = RecordDirectory(self.directory)
        self._writer_view = RecordDirectory(self.directory)
        self._revision = 0
        self._history: collections.deque[Change] = collections.deque(maxlen=HISTORY_LIMIT)
        self._scanner: asyncio.Task[None] | None = None
        self._sync_lock = asyncio.Lock()
        self._dirty = asyncio.Event()
        self._dirty_names: set[str] = set()
        self._dirty_all = False
        self._synced = asyncio.Event()
        self._outage: RegistryUnavailable | None = None
        self._stop = asyncio.Event()
        self._renew_wake = asyncio.Event()
        self._state = StateFiles(self.directory, self._locked)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        try:
            fd = os.open(self.directory / LOCK_NAME, os.O_CREAT | os.O_RDWR, 0o644)
        except OSError as exc:
            reason = exc.strerror or str(exc)
            raise RegistryUnavailable(f"files registry {self.directory}: {reason}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _holder(self, key: ServiceKey) -> RecordFile | None:
        """The live file claiming `key` now (a stat of the directory; changed files read)."""
        view = self._writer_view
        view.apply(view.read(), self._clock())
        return view.live.get(key)

    async def publish(self, record: ServiceRecord, ttl_s: float | None = DEFAULT_TTL_S) -> Lease:
        key = record.key
        with self._locked():
            holder = self._holder(key)
            if holder is not None and holder.owner != self.owner:
                raise OwnershipError(
                    key, holder.owner or f"hand-written {os.path.basename(holder.path)}"
                )
            path = self.directory / file_name(key)
            write_atomic(path, record_file_bytes(record, ttl_s, self.owner))
            self._inodes[key] = os.stat(path).st_ino
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
            if self._written(key, path):
                path.unlink(missing_ok=True)
        self._inodes.pop(key, None)

    async def abandon(self, key: ServiceKey) -> None:
        lease = self._leases.pop(key, None)
        self._inodes.pop(key, None)
        if lease is not None:
            lease.renewing = False

    def _written(self, key: ServiceKey, path: Path) -> bool:
        """Whether `path` is still the file this session wrote for `key` (call it locked)."""
        try:
            return os.stat(path).st_ino == self._inodes.get(key)
        except OSError:
            return False

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
                try:
                    self.renew()
                except RegistryUnavailable as exc:
                    log.warning(
                        "files leases not renewed; retrying",
                        extra={"error": str(exc), "backend": "files"},
                    )
            else:
                self._renew_wake.clear()

    def renew(self) -> None:
        """Touch every held file; a lease whose file was replaced or removed is marked lost."""
        with self._locked():
            for key, lease in list(self._leases.items()):
                if not lease.ttl_s:
                    continue
                path = self.directory / file_name(key)
                try:
                    if not self._written(key, path):
                        raise FileNotFoundError(path)
                    os.utime(path)
                    lease.last_renewal = time.monotonic()
                except OSError:
                    lease.lost = True
                    del self._leases[key]
                    self._inodes.pop(key, None)
                    log.warning("files lease lost", extra={"key": key.path(), "backend": "files"})

    async def read_state(self, key: str) -> StateEntry | None:
        return self._state.read(key)

    async def list_state(self, prefix: str) -> dict[str, StateEntry]:
        return self._state.list(prefix)

    async def write_state(self, key: str, value: str, *, version: int) -> None:
        self._state.compare_and_set(key, value, version)

    async def delete_state(self, key: str, *, version: int) -> None:
        self._state.compare_and_set(key, None, version)

    async def _sync(self, names: set[str] | None = None) -> None:
        """Refresh the view (in a thread) and record what changed as numbered changes.

        `names` are the files reported changed; None stats the whole directory.
        Raises `RegistryUnavailable` while the directory cannot be read (the
        view untouched); watchers are woken to raise it too.
        """
        async with self._sync_lock:
            if self._outage is not None:
                names = None  # what changed during the outage is unknown
            try:
                updates = await asyncio.to_thread(self.view.read, names)
            except RegistryUnavailable as exc:
                self._outage = exc
                self._wake_watchers()
                raise
            self._outage = None
            changed = self.view.apply(updates, self._clock())
            for key in sorted(changed, key=ServiceKey.path):
                rf = changed[key]
                self._revision += 1
                if rf is None:
                    self._history.append(Change(ChangeKind.DELETE, key, self._revision))
                else:
                    self._history.append(Change(ChangeKind.PUT, key, self._revision, rf.record))
            if changed:
                self._wake_watchers()

    def _wake_watchers(self) -> None:
        self._synced.set()
        self._synced = asyncio.Event()

    async def snapshot(self) -> Snapshot:
        await self._sync()
        return Snapshot({k: rf.record for k, rf in self.view.live.items()}, self._revision)

    async def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        if self._scanner is None:
            self._scanner = asyncio.create_task(self._scan_forever(), name="files-scan")
        if self._outage is not None:
            await self._sync()  # the caller's retry: raises while still unreadable
        revision = from_revision
        oldest = self._history[0].revision - 1 if self._history else self._revision
        if not oldest <= revision <= self._revision:
            snap = await self.snapshot()
            revision = snap.revision
            yield snap
        while True:
            synced = self._synced
            if self._outage is not None:
                raise RegistryUnavailable(str(self._outage))
            if self._revision > revision:
                for change in [c for c in self._history if c.revision > revision]:
                    revision = change.revision
                    yield change
            if self._revision <= revision:
                await synced.wait()

    async def _scan_forever(self) -> None:
        """Refresh on notifications (named files), polls and deadlines, until closed.

        The first pass stats the whole directory once the notifier runs, so a
        file written between the caller's snapshot and the watch is not missed.
        While the directory cannot be read, passes are spaced by a doubling
        backoff; once it reads again the notifier is started afresh (its watch
        may be on a directory that was removed) and the whole directory is
        stat'ed once more. Each notifier has its own stop event: watchfiles sets
        the event it was given when its task is cancelled.
        """
        stop_notifier = asyncio.Event()
        notifier = asyncio.create_task(self._notify_forever(stop_notifier), name="files-notify")
        self._dirty_all = True
        last_full = time.monotonic()
        backoff_s = 0.0
        try:
            while not self._stop.is_set():
                try:
                    if self._dirty_all or time.monotonic() - last_full >= RESYNC_S:
                        self._dirty_all = False
                        self._dirty_names.clear()
                        last_full = time.monotonic()
                        await self._sync()
                    else:
                        names, self._dirty_names = self._dirty_names, set()
                        await self._sync(names)
                except RegistryUnavailable:
                    backoff_s = min(OUTAGE_BACKOFF_MAX_S, backoff_s * 2 or self._poll_interval_s)
                    self._dirty_all = True
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(backoff_s):
                            await self._stop.wait()
                    continue
                if backoff_s:
                    backoff_s = 0.0
                    stop_notifier.set()
                    stop_notifier = asyncio.Event()
                    notifier = asyncio.create_task(
                        self._notify_forever(stop_notifier), name="files-notify"
                    )
                    self._dirty_all = True
                    self._dirty.set()
                timeout = self._poll_interval_s if self._force_polling else RESYNC_S
                deadline = self.view.next_deadline()
                if deadline is not None:
                    timeout = min(timeout, max(0.0, deadline - self._clock()) + 0.01)
                if not self._dirty.is_set():
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(timeout):
                            await self._dirty.wait()
                self._dirty.clear()
                if self._force_polling and not self._dirty_names:
                    self._dirty_all = True
        finally:
            stop_notifier.set()
            notifier.cancel()

    async def _notify_forever(self, stop: asyncio.Event) -> None:
        if self._force_polling:
            return
        try:
            async for changes in watchfiles.awatch(
                self.directory,
                watch_filter=None,
                step=10,
                stop_event=stop,
                recursive=False,
            ):
                self._dirty_names.update(os.path.basename(path) for _, path in changes)
                self._dirty.set()
        except (OSError, RuntimeError) as exc:
            log.warning(
                "file watching failed; polling instead",
                extra={"directory": str(self.directory), "error": str(exc), "backend": "files"},
            )
            self._force_polling = True
            self._dirty_all = True
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
            try:
                await self.withdraw(key)
            except RegistryUnavailable as exc:  # the record expires after its TTL instead
                log.warning("files withdraw on close failed", extra={"error": str(exc)})
