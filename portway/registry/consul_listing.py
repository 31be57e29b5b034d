"""A Consul KV listing turned into records, decoding only the keys that changed.

Theory of operation. Consul answers a blocking query on a prefix with every
entry under it, not with what changed: at 10,000 services that is 20,000
records, ~50 MB of JSON with base64 values, on every change. `fold` walks
such an answer with msgspec, each value left as raw JSON text (a view of the
answer, not a copy), and compares each key's `ModifyIndex` with the one
seen before (`Decoded`): an entry whose index did not move keeps the record
decoded last time, and only the others are base64-decoded and parsed. It is
pure (bytes and the last `Decoded` in, the new ones out), so the caller runs
it in a thread when the answer is large (`DECODE_INLINE_BYTES`).

`RememberedStates` keeps what a watch may resume from: the newest listing's
records in full and, for each of the older revisions remembered, only the
entries that differed from the next one (an undo log). Holding 32 listings
whole was 32 dicts of 20,000 records and their keys (~1.9 MB each) once 32
changes had come; undo entries cost what changed.

`diff` turns two consecutive listings into the `Change`s a watch yields.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import consul
import msgspec
from consul.callback import CB

from portway.model import ServiceKey, ServiceRecord
from portway.registry.base import Change, ChangeKind, RegistryUnavailable, records_diff
from portway.registry.decode import decode_record

Decoded = tuple[dict[str, int], dict[str, ServiceRecord | None]]
"""By key under the root: its ModifyIndex, and its record (None when unusable); two
dicts, not a tuple per key, so a listing adds no 20,000 objects for the collector."""
Records = dict[ServiceKey, ServiceRecord]


class _Entry(msgspec.Struct, rename="pascal", gc=False):
    """One KV entry of a listing; its value stays raw JSON text until it is needed."""

    key: str
    modify_index: int
    value: msgspec.Raw = msgspec.Raw(b"null")


_LISTING = msgspec.json.Decoder(list[_Entry] | None)
_VALUE = msgspec.json.Decoder(bytes | None)


def raw_listing(response: Any) -> tuple[str, bytes]:
    """py-consul callback: (X-Consul-Index, body bytes) of a listing; an empty prefix is 404."""
    CB._status(response, allow_404=True)
    if "X-Consul-Index" not in response.headers:
        raise consul.ConsulException(f"missing index header: {dict(response.headers)}")
    body = response.body if response.code != 404 else b""
    return response.headers["X-Consul-Index"], body


def fold(body: bytes, before: Decoded, *, root: str, backend: str) -> tuple[Decoded, Records]:
    """The listing's records by key, decoding only entries whose ModifyIndex moved."""
    try:
        entries = (_LISTING.decode(body) or []) if body else []
    except msgspec.DecodeError as exc:
        raise RegistryUnavailable(f"consul answered an unreadable listing: {exc}") from None
    state: Records = {}
    indexes: dict[str, int] = {}
    records: dict[str, ServiceRecord | None] = {}
    known_indexes, known_records = before
    skip = len(root)
    for entry in entries:
        rel = entry.key[skip:]
        if known_indexes.get(rel) == entry.modify_index:
            record = known_records[rel]
        else:
            try:
                value = _VALUE.decode(entry.value) or b""
            except msgspec.DecodeError:
                value = b"\0"  # not base64: reported as unusable by decode_record
            record = decode_record(rel, value, backend=backend)
        indexes[rel] = entry.modify_index
        records[rel] = record
        if record is not None:
            state[record.key] = record
    return (indexes, records), state


Undo = dict[ServiceKey, ServiceRecord | None]
"""What an older revision had where the next one differs (None: the key was absent)."""


def undo_of(old: Records, new: Records) -> Undo:
    """The entries of `old` that `new` lacks or holds another record for (by identity:
    `fold` keeps the record of an entry that did not move), and None for keys only `new`
    has: applied to `new`, they give `old`. Pure and proportional to the listing: run it
    where the listing was folded."""
    undo: Undo = {k: r for k, r in old.items() if new.get(k) is not r}
    if len(new) + len(undo) != len(old):
        undo.update((k, None) for k in new.keys() - old.keys())
    return undo


class RememberedStates:
    """The newest listing in full and undo entries for up to `limit` revisions before it."""

    __slots__ = ("_undo", "limit", "revision", "state")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.revision: int | None = None
        self.state: Records = {}
        self._undo: OrderedDict[int, Undo] = OrderedDict()
        """Older revision → its undo against the revision remembered after it; oldest first."""

    def remember(self, revision: int, state: Records, undo: Undo, base: Records) -> None:
        """`state` is the listing at `revision`, `undo` its `undo_of(base, state)`. When `base`
        is no longer the newest listing (another listing was remembered meanwhile) or the
        index went back, older revisions are forgotten rather than rebuilt wrong."""
        if self.revision is not None and revision != self.revision:
            if base is not self.state or revision < self.revision:
                self._undo.clear()
            else:
                self._undo[self.revision] = undo
                while len(self._undo) > self.limit:
                    self._undo.popitem(last=False)
        self.revision, self.state = revision, state

    def get(self, revision: int) -> Records | None:
        """The records at `revision`, if remembered (a new dict for an older revision)."""
        if revision == self.revision:
            return self.state
        if revision not in self._undo:
            return None
        state = dict(self.state)
        for older in reversed(self._undo):
            for key, record in self._undo[older].items():
                if record is None:
                    state.pop(key, None)
                else:
                    state[key] = record
            if older == revision:
                break
        return state


def diff(old: Records, new: Records, revision: int) -> list[Change]:
    """The changes from `old` to `new` (`base.records_diff`), all stamped `revision`:
    deletes first, then puts, each by key path. Pure; the caller runs it in a thread past
    `base.DIFF_INLINE_RECORDS`."""
    out = [
        Change(ChangeKind.DELETE if record is None else ChangeKind.PUT, k, revision, record)
        for k, record in records_diff(old, new).items()
    ]
    out.sort(key=lambda c: (c.kind is ChangeKind.PUT, c.key.path()))
    return out
