"""Health-check verdicts shared by the workers of one gateway: one worker probes.

Why. With `portway gateway --workers N` every worker ran the active health
checks of every endpoint itself: N times the probes, N times the load on
the nodes' health endpoints and on the gateway's CPU (10,000 endpoints every
5 s cost 18-21 % of a core per worker), and N verdicts that could disagree
for a while. A verdict is a fact about the node, not about the worker.

Theory of operation. The supervisor creates an anonymous memory file
(`memfd_create`) before it spawns the workers and hands its descriptor to
each (`--health-fd`), as it does the rate limit table
(`gateway.http.filters.shared_buckets`; both are made, mapped and
hashed by `gateway.shared_table`), so nothing is left behind by a
crash and a restarted worker maps the same table. Worker 0 is the prober:
it runs the checks as a lone gateway does and `publish`es every change of an
endpoint's verdict (HEALTHY, UNHEALTHY) into the endpoint's slot, then moves
the table's `version`. The other workers do not probe: each tick of their
health driver compares `version` with the one they last read (one word: a
tick without a change costs nothing) and, when it moved, `read`s the
verdicts of the endpoints named in the table's ring of recent changes (the
tags of the last `RING` changes) and applies what changed; a worker that
fell more than `RING` changes behind, or has just started, reads all its
targets' verdicts instead, a slice per tick. Passive
outlier detection and the readmission probe of an ejected endpoint stay per
worker: they judge the traffic each worker sends.

A slot is two 8-byte words, a tag (a 64-bit BLAKE2b of the endpoint key, 0
for a free slot) and the verdict; a key may live in either of two sets of
`WAYS` slots chosen by its tag's low and high bits (two choices keep the
table usable up to ~90 % full). There is one writer, so no lock: aligned
8-byte stores are single-copy atomic on x86-64 and arm64, the verdict is
stored before `version` moves, and a reader re-checks the tag after reading
a verdict (a slot given to another key in between reads as no verdict).
An endpoint that leaves the prober's table is `forget`-ten (its slot
freed). A key that finds no room in either set sets `overflowed`, and every
worker then probes for itself again, as before: costlier, never wrong.

Size: fixed at startup, a power of two at least `MIN_SLOTS` (2^17: 2 MiB,
~115,000 endpoints), or four times the health-checked endpoints of the
first table, plus the ring (32 KiB); pages are touched as keys land on them.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from gateway.routing.backend import CompiledBackend
from gateway.shared_table import (
    HEADER_BYTES,
    WAYS,
    check_slots,
    create_table_fd,
    map_table,
    set_pair,
    tag64,
)
from gateway.upstream.health import Health

MIN_SLOTS: Final = 1 << 17
RING: Final = 4096
"""Changes remembered by tag: a reader this far behind re-reads all its targets."""
_MAGIC: Final = b"PWHV0001"
_HEADER_WORDS: Final = HEADER_BYTES // 8
VERSION, OVERFLOW = 2, 3
"""Header word offsets (words 0 and 1 hold the magic and the slot count)."""
_CODES: Final = {Health.UNKNOWN: 0, Health.HEALTHY: 1, Health.UNHEALTHY: 2}
_VERDICTS: Final = {code: health for health, code in _CODES.items()}


def _size(slots: int) -> int:
    """Bytes of a table of `slots` slots: header, slots, ring."""
    return (_HEADER_WORDS + 2 * slots + RING) * 8


class SharedVerdicts:
    """A mapping of the verdict table (module docstring); `writer` in worker 0 only."""

    __slots__ = ("fd", "map", "ring_at", "set_mask", "slots", "words", "writer")

    def __init__(self, fd: int, *, writer: bool = False) -> None:
        """Map the table in `fd` (made by `create`, maybe in another process)."""
        self.map, fields = map_table(
            fd, _MAGIC, "shared health verdict table", lambda fields: _size(fields[0])
        )
        self.slots = fields[0]
        self.fd = fd
        self.writer = writer
        self.words = memoryview(self.map).cast("Q")
        self.set_mask = self.slots // WAYS - 1
        self.ring_at = _HEADER_WORDS + 2 * self.slots

    @classmethod
    def create(cls, slots: int = MIN_SLOTS) -> SharedVerdicts:
        """A new, empty table of `slots` slots (a power of two, at least `WAYS`)."""
        check_slots(slots)
        fd = create_table_fd("portway-health-verdicts", _MAGIC, (slots,), _size(slots))
        return cls(fd, writer=True)

    @property
    def version(self) -> int:
        """How many verdicts were published or forgotten: moves on every change."""
        return int(self.words[VERSION])

    @property
    def overflowed(self) -> bool:
        """A key found no slot: the workers cannot rely on the table, each probes."""
        return bool(self.words[OVERFLOW])

    def publish(self, key: str, verdict: Health) -> bool:
        """Store `key`'s verdict (the prober); False when no slot was free for it."""
        assert self.writer, "only the prober (worker 0) publishes verdicts"
        tag = tag64(key)
        at = self._find(tag)
        if at < 0:
            at = self._find(tag, holding=0)
            if at < 0:
                self.words[OVERFLOW] = 1
                self._changed(tag)
                return False
            self.words[at + 1] = _CODES[verdict]
            self.words[at] = tag
        else:
            self.words[at + 1] = _CODES[verdict]
        self._changed(tag)
        return True

    def forget(self, key: str) -> None:
        """Free `key`'s slot (the prober, when the endpoint left its table)."""
        assert self.writer, "only the prober (worker 0) forgets verdicts"
        tag = tag64(key)
        at = self._find(tag)
        if at >= 0:
            self.words[at] = 0
            self.words[at + 1] = 0
            self._changed(tag)

    def changes(self, since: int) -> tuple[int, list[int] | None]:
        """(the version now, the tags changed since version `since`); None for the tags
        when they are no longer all in the ring (read every target instead)."""
        now = self.version
        if now - since > RING or since > now:
            return now, None
        words, ring = self.words, self.ring_at
        tags = [int(words[ring + n % RING]) for n in range(since, now)]
        if self.version - since > RING:  # the ring wrapped while we read it
            return now, None
        return now, tags

    def _changed(self, tag: int) -> None:
        """Name `tag` in the ring at the next version, then move the version to it."""
        version = int(self.words[VERSION])
        self.words[self.ring_at + version % RING] = tag
        self.words[VERSION] = version + 1

    def read(self, key: str, tag: int | None = None) -> Health:
        """`key`'s verdict; UNKNOWN when it has none (`tag`: `tag64(key)`, if known)."""
        tag = tag64(key) if tag is None else tag
        at = self._find(tag)
        if at < 0:
            return Health.UNKNOWN
        verdict = _VERDICTS.get(int(self.words[at + 1]), Health.UNKNOWN)
        return verdict if self.words[at] == tag else Health.UNKNOWN

    def _find(self, tag: int, holding: int | None = None) -> int:
        """The word index of the slot in `tag`'s two sets that holds `holding` (default:
        `tag` itself; 0: a free slot), or -1."""
        words, span = self.words, 2 * WAYS
        wanted = tag if holding is None else holding
        for choice in set_pair(tag, self.set_mask):
            first = _HEADER_WORDS + choice * span
            for at in range(first, first + span, 2):
                if words[at] == wanted:
                    return at
        return -1


class VerdictFollower:
    """What a worker that does not probe knows of the prober's verdicts on its targets.

    `track` the keys the worker health-checks (as its table names them) and
    `drop` those that leave; `changed` then says which tracked keys' verdicts
    moved since it was last asked, reading only the keys the table's ring
    names (all tracked keys when the ring cannot tell, and keys just
    tracked), at most `budget` reads per call: the rest wait for the next.
    """

    __slots__ = ("by_tag", "followed", "queue", "seen", "table", "tags")

    def __init__(self, table: SharedVerdicts) -> None:
        self.table = table
        self.tags: dict[str, int] = {}
        self.by_tag: dict[int, str] = {}
        self.followed: dict[str, Health] = {}
        """The verdict last applied per key (absent: UNKNOWN)."""
        self.queue: set[str] = set()
        """Keys whose verdict is to be read again."""
        self.seen = 0

    def track(self, keys: Iterable[str]) -> None:
        for key in keys:
            if key not in self.tags:
                tag = self.tags[key] = tag64(key)
                self.by_tag[tag] = key
            self.queue.add(key)

    def drop(self, keys: Iterable[str]) -> None:
        for key in keys:
            tag = self.tags.pop(key, None)
            if tag is not None:
                self.by_tag.pop(tag, None)
            self.followed.pop(key, None)
            self.queue.discard(key)

    def changed(self, budget: int) -> list[tuple[str, Health, Health]]:
        """(key, verdict applied before, verdict now) of tracked keys whose verdict
        moved to HEALTHY or UNHEALTHY (a verdict withdrawn changes nothing)."""
        version, tags = self.table.changes(self.seen)
        if version != self.seen:
            self.seen = version
            if tags is None:
                self.queue.update(self.tags)
            else:
                self.queue.update(self.by_tag[t] for t in tags if t in self.by_tag)
        out: list[tuple[str, Health, Health]] = []
        queue, read, tags_of = self.queue, self.table.read, self.tags
        for _ in range(min(budget, len(queue))):
            key = queue.pop()
            verdict = read(key, tags_of[key])
            old = self.followed.get(key, Health.UNKNOWN)
            if verdict is not old and verdict is not Health.UNKNOWN:
                self.followed[key] = verdict
                out.append((key, old, verdict))
        return out


def slots_for(backends: Iterable[CompiledBackend]) -> int:
    """Slots for a gateway whose first table holds `backends`: 4x the endpoints they
    health-check, a power of two, at least `MIN_SLOTS`."""
    checked = sum(len(b.endpoints) for b in backends if b.health_check is not None)
    return max(MIN_SLOTS, 1 << max(0, 4 * checked - 1).bit_length())


def attach(fd: int | None, worker: int) -> SharedVerdicts | None:
    """Worker `worker`'s mapping of its supervisor's table in `fd`, as its prober when it
    is worker 0; None for a gateway of one process (`fd` None), which probes alone."""
    return None if fd is None else SharedVerdicts(fd, writer=worker == 0)
