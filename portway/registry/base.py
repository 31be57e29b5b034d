"""The `Registry` contract every backend (memory, files, etcd, consul) keeps.

Theory of operation: a registry maps `ServiceKey` to `ServiceRecord`. A
controller *publishes* a record under a lease that the backend keeps alive in
the background (etcd lease keepalive, consul session renew, files mtime
touch); if the writer dies the lease lapses and the record disappears, which
a gateway reads as "cluster gone". Gateways take a `snapshot()` and then
`watch(revision)`: a stream of `Change`s whose revisions never decrease
(changes sharing a revision came from one transaction), resuming exactly
after `from_revision`. Backends that observe state rather than a log (a
Consul blocking query, a rescanned directory) may coalesce several writes of
one key into the last of them; etcd and memory report every write. When a backend cannot
prove the stream is gapless (etcd compaction, a resumed Consul blocking query
without history, a files directory rescanned) it yields a whole `Snapshot`
instead, and the reader replaces its state. Folding the stream onto the state
at `from_revision` always gives the registry's state: no gap, no duplicate.

A record has one owner: the publisher identity of the registry instance
that wrote it (`owner=`, stored beside the record; without one, an identity
unique to the instance). A writer of another identity publishing the same key
gets `OwnershipError` while the owner's lease is alive; it never interleaves.
A new session of the *same* identity (a restarted controller, the replica
that took over the Lease) adopts the key in place: one atomic write that
moves the key under its own lease, which then alone decides the record's
TTL. A watcher sees a PUT and never a DELETE, so a restart does not make the
cluster drop out of any routing table; the old lease lapses holding nothing,
and the old session can no longer renew or withdraw the key. Records that
fail validation are logged with their key and skipped; they never end a
watch.

When the backend cannot be reached, `watch` raises `RegistryUnavailable`;
the caller keeps what it has and calls `watch(last_revision)` again later.

Beside the records, every backend keeps a small *state store*: text values
under keys outside `portway/v1/services/` (rollout statuses, the rollout
driver's lease: `gateway.rollout.record`), shared by every gateway replica.
A state value has a version the backend assigns on each write (etcd's
mod_revision, Consul's ModifyIndex, a counter in the file, the memory
store's counter) and is only ever written by compare-and-set:
`write_state(key, value, version=V)` succeeds only if the key's version is
still V (0: the key must be absent), else raises `VersionConflict` and the
writer reads again. State values have no owner and no TTL, and are not
watched: there are few of them and their readers poll (`list_state`).
"""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from portway.model import KEY_PREFIX, ServiceKey, ServiceRecord


class RegistryError(Exception):
    """Base of the registry's own errors."""


class OwnershipError(RegistryError):
    """The key is held by another writer whose lease is still alive."""

    def __init__(self, key: ServiceKey, owner: str = "") -> None:
        who = f" (held by {owner})" if owner else ""
        super().__init__(f"{key.path()} is owned by another writer{who}")
        self.key = key
        self.owner = owner


class RegistryUnavailable(RegistryError):
    """The backend cannot be reached now; retry later, keep the last known state."""


class VersionConflict(RegistryError):
    """A compare-and-set on a state key lost: its version is not the one expected."""

    def __init__(self, key: str, expected: int) -> None:
        was = "absent" if expected == 0 else f"at version {expected}"
        super().__init__(f"{key} is no longer {was}; read it again")
        self.key = key
        self.expected = expected


STATE_ROOT = "portway/"


def check_state_key(key: str) -> str:
    """`key` if it may name a state value: under `portway/`, never a service record's."""
    if not key.startswith(STATE_ROOT) or key.startswith(KEY_PREFIX) or key.endswith("/"):
        raise ValueError(f"{key!r} is not a state key (portway/..., outside {KEY_PREFIX})")
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"{key!r} has an empty, '.' or '..' segment")
    return key


def check_state_prefix(prefix: str) -> str:
    """`prefix` if the keys it selects are all state keys (none a service record's)."""
    if not prefix.startswith(STATE_ROOT) or KEY_PREFIX.startswith(prefix):
        raise ValueError(f"{prefix!r} is not a state prefix (portway/..., outside {KEY_PREFIX})")
    if prefix.startswith(KEY_PREFIX):
        raise ValueError(f"{prefix!r} selects service records, not state values")
    return prefix


def describe_error(exc: BaseException) -> str:
    """An I/O failure in words for a log line or a message (never a repr).

    aiohttp's own text already names the host and the OS reason ("Cannot
    connect to host etcd:2379 ssl:default [Connection refused]"); a bare
    timeout has none, so it is named.
    """
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc).strip() or type(exc).__name__


class ChangeKind(enum.Enum):
    """What happened to a key."""

    PUT = "put"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class Change:
    """One key changed at `revision`; `record` is None for a delete or expiry."""

    kind: ChangeKind
    key: ServiceKey
    revision: int
    record: ServiceRecord | None = None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """All valid records at `revision`."""

    records: Mapping[ServiceKey, ServiceRecord]
    revision: int


@dataclass(frozen=True, slots=True)
class StateEntry:
    """A state value and the version it was read at (the `version=` of the next write)."""

    value: str
    version: int


@dataclass(slots=True)
class Lease:
    """A writer's hold on one key, renewed in the background until withdrawn.

    `last_renewal` is the monotonic time of the last successful renewal (or of
    the grant); `lost` is set when the backend reports the lease gone (it
    expired while the writer was partitioned), after which publishing the key
    again grants a new lease.
    """

    key: ServiceKey
    ttl_s: float
    lease_id: str
    last_renewal: float = 0.0
    lost: bool = False
    renewing: bool = field(default=True)


@runtime_checkable
class Registry(Protocol):
    """The shared registry; see the module docstring for the promise."""

    backend: str
    owner: str
    """The publisher identity records written here are held by (see the module docstring)."""

    async def publish(self, record: ServiceRecord, ttl_s: float | None = ...) -> Lease:
        """Write `record` under a lease this instance keeps alive.

        Publishing a key this instance already holds replaces the value under
        the same lease; a key held by another session of the same `owner` is
        adopted (moved under a new lease of this instance, never deleted).
        `ttl_s=None` means no expiry (static records). Raises `OwnershipError`
        if a writer of another identity holds the key.
        """
        ...

    async def withdraw(self, key: ServiceKey) -> None:
        """Delete the key this instance holds and stop renewing it (no-op if not held,
        or if another session adopted it meanwhile)."""
        ...

    async def abandon(self, key: ServiceKey) -> None:
        """Stop renewing without deleting: the record expires after its TTL.

        This is what a crashed writer looks like; drills and tests use it.
        """
        ...

    async def snapshot(self) -> Snapshot:
        """All valid records and the revision they were read at."""
        ...

    def watch(self, from_revision: int) -> AsyncIterator[Change | Snapshot]:
        """Changes after `from_revision`, or a `Snapshot` where that cannot be proven gapless."""
        ...

    async def read_state(self, key: str) -> StateEntry | None:
        """The state value under `key`, or None when there is none."""
        ...

    async def list_state(self, prefix: str) -> dict[str, StateEntry]:
        """Every state value whose key starts with `prefix`, by key."""
        ...

    async def write_state(self, key: str, value: str, *, version: int) -> None:
        """Write `value` if the key is still at `version` (0: absent); else `VersionConflict`."""
        ...

    async def delete_state(self, key: str, *, version: int) -> None:
        """Delete the key if it is still at `version` (0: absent, nothing to do); else
        `VersionConflict`."""
        ...

    async def close(self) -> None:
        """Stop renewals and watches; leases this instance holds are released."""
        ...


def apply(
    state: Mapping[ServiceKey, ServiceRecord], item: Change | Snapshot
) -> dict[ServiceKey, ServiceRecord]:
    """Fold one watch item onto a state: the reader's side of the contract."""
    if isinstance(item, Snapshot):
        return dict(item.records)
    out = dict(state)
    if item.kind is ChangeKind.DELETE or item.record is None:
        out.pop(item.key, None)
    else:
        out[item.key] = item.record
    return out


DIFF_INLINE_RECORDS = 500
"""States with more records than this are diffed (`records_diff`) in a thread, not on the
event loop: a Consul listing against the one before, a gateway feed's state against a
resync `Snapshot`."""


def records_diff(
    old: Mapping[ServiceKey, ServiceRecord], new: Mapping[ServiceKey, ServiceRecord]
) -> dict[ServiceKey, ServiceRecord | None]:
    """What turns `old` into `new`: each key whose record is new or changed, to that record,
    and None for each key `new` lacks (the inverse of folding with `apply`). Pure and
    proportional to the states: run it in a thread past `DIFF_INLINE_RECORDS`.

    Records are compared by identity first: a backend that keeps the decoded record of an
    entry that did not move (Consul's `consul_listing.fold`) pays no deep compare for it."""
    out: dict[ServiceKey, ServiceRecord | None] = dict.fromkeys(old.keys() - new.keys())
    for key, record in new.items():
        before = old.get(key)
        if before is not record and before != record:
            out[key] = record
    return out
