"""Rate limit buckets shared by the workers of one gateway: a GCRA table in shared memory.

Why. `portway gateway --workers N` runs N processes behind one port
(SO_REUSEPORT); with buckets in each process's memory a client spreading its
connections gets up to N times its limit. `scope: shared` (the default) keeps
a rule's buckets in one table every worker reads and writes, so the limit
holds for the gateway as a whole. Across gateway replicas (several hosts)
each replica still counts alone: that needs a network store and is out of
scope here.

Theory of operation. The supervisor creates an anonymous memory file
(`memfd_create`) before it spawns the workers and hands its descriptor to
each, as it does the control socketpair; every worker maps it shared.
Nothing is named in /dev/shm, so nothing is left behind by a crash: the
kernel frees the table with the last process holding it, and a restarted
worker maps the same table, its buckets intact. No message to the supervisor
and no lock are on the request path of a key the worker has met before; a
key new to the worker that no worker has a slot for yet takes the table's
claim lock (a POSIX record lock on the descriptor: two system calls, released
by the kernel if its holder dies) while it picks a slot, so that two workers
meeting a new key at the same instant cannot give it two slots, each
counting alone. (Without it, two processes starting on one key at once got
the limit twice: the race is real.)

A bucket is a slot of 8-byte words: a tag (0 = never used), a base B, a
hint, and one count per worker. Its GCRA time (`gcra`) is not stored but
derived: TAT = B + C * interval, C the sum of the counts. An allowed request
adds one to its own worker's count, and when the bucket had refilled
(TAT < now) first moves B up to `now - C * interval` (a full bucket). Every
count has a single writer, so no admission is ever lost, whatever the
workers do at the same instant; the hint (the TAT at the last admission)
only guides which slot to give up. Times are seconds of the monotonic clock
the event loops use, the same base in every process of a host.

Why no atomic instruction is needed. Aligned 8-byte loads and stores are
single-copy atomic on x86-64 and arm64, and a memoryview item access of
format `Q`/`d` is one such load or store: no reader sees a torn word. What
is not atomic is the decision: two workers may both see the last token and
both take it. Both counts still rise, so the key's TAT moves two intervals
and the next token comes an interval later: the burst is exceeded by at most
N - 1 for an instant, the rate over any longer window is kept. Two workers
moving B at once: the last write wins, and the two candidates differ by how
far apart the workers' loop clocks are (each read once per loop iteration:
usually well under a millisecond, worth rate x that in tokens). Python offers no
compare-and-swap on shared memory, and a lock (a futex) would put a system
call on the request path under contention. Measured by
`tests/gateway/http/filters/test_shared_buckets.py`: two processes hammering
one key at full speed, and a real two-worker gateway.

Lookup. A key's tag is a 64-bit keyed BLAKE2b of the key under its rule's
salt (route, rule position and limit: a reload that keeps the limit keeps
the buckets, a changed limit starts afresh, as with `scope: worker`); its
low and high bits choose two sets of `WAYS` slots (two choices: at the
full `maxKeys` a single set would overflow for some keys, two almost never
do). A slot whose hint is past holds a full bucket, the same as an empty
one, so any key may take it: no deletion, no sweep. With no such slot in
either set the slot closest to full is given up (the least debt is
forgotten; that key starts with a full bucket). Taking a slot sets B so
that the current counts mean a full bucket (a late increment by a worker
still charging the previous key costs the new one a token, once).
Each worker caches key → (slot, tag) per rule, bounded by `maxKeys`, so a
known key is not hashed again; a slot taken over by another key is noticed
by its tag.

Size: fixed at startup, twice the sum of the shared rules' `maxKeys` rounded
up to a power of two (at least `MIN_SLOTS`), so at most half the slots are
used and two choices all but never overflow (measured: one key in 100,000
given up early at 0.76 full, none at two thirds); (3 + workers) x 8 bytes a
slot, allocated as keys touch the pages. A reload asking for more is logged
(a restart grows the table); the table keeps working, forgetting the
fullest buckets first.
"""

from __future__ import annotations

import fcntl
import hashlib
from typing import TYPE_CHECKING, Final

from mypy_extensions import mypyc_attr

from gateway.config.resilience import RateLimit
from gateway.http.filters.gcra import Gcra
from gateway.shared_table import (
    HEADER_BYTES,
    WAYS,
    check_slots,
    create_table_fd,
    map_table,
    set_pair,
    tag64,
)

if TYPE_CHECKING:
    from gateway.config.model import GatewayConfig

MIN_SLOTS: Final = 1 << 16
_MAGIC: Final = b"PWRLv002"
TAG, BASE, HINT, COUNTS = 0, 1, 2, 3
"""Word offsets inside a slot; `COUNTS + worker` is a worker's count."""


def _size(slots: int, workers: int) -> int:
    """Bytes of a table of `slots` slots with a count per worker."""
    return HEADER_BYTES + slots * (COUNTS + workers) * 8


class SharedBucketTable:
    """A mapping of the shared table (see the module docstring); one per process."""

    __slots__ = ("fd", "map", "reals", "set_mask", "slots", "stride", "words", "workers")

    def __init__(self, fd: int) -> None:
        """Map the table in `fd` (made by `create`, maybe in another process)."""
        self.map, fields = map_table(
            fd, _MAGIC, "shared rate limit table", lambda fields: _size(fields[0], fields[1])
        )
        self.slots, self.workers = fields[0], fields[1]
        self.stride = COUNTS + self.workers
        """Words per slot."""
        self.fd = fd
        body = memoryview(self.map)[HEADER_BYTES:]
        self.words = body.cast("Q")
        """The slots as unsigned words (tags, counts) ..."""
        self.reals = body.cast("d")
        """... and as floats (base, hint)."""
        self.set_mask = self.slots // WAYS - 1

    @classmethod
    def create(cls, slots: int, workers: int) -> SharedBucketTable:
        """A new, empty table of `slots` slots (a power of two, at least `WAYS`) with a
        count per worker."""
        check_slots(slots)
        if workers < 1:
            raise ValueError(f"workers must be at least 1, not {workers}")
        size = _size(slots, workers)
        fd = create_table_fd("portway-rate-limits", _MAGIC, (slots, workers), size)
        return cls(fd)

    def count(self, at: int) -> int:
        """Requests the slot at word `at` has admitted, over every worker."""
        return sum(self.words[at + COUNTS : at + self.stride])

    def locate(self, tag: int, now: float, interval_s: float) -> int:
        """The word index of `tag`'s slot, taking one for it (full) when it has none.

        Taking one holds the table's claim lock, so two workers meeting a new key
        at once never give it two slots (see the module docstring).
        """
        low, high = set_pair(tag, self.set_mask)
        span = WAYS * self.stride
        sets = (low * span, high * span)
        found = self._find(tag, sets)
        if found >= 0:
            return found
        fcntl.lockf(self.fd, fcntl.LOCK_EX, 1)
        try:
            found = self._find(tag, sets)  # claimed while we waited?
            return found if found >= 0 else self._claim(tag, sets, now, interval_s)
        finally:
            fcntl.lockf(self.fd, fcntl.LOCK_UN, 1)

    def _find(self, tag: int, sets: tuple[int, int]) -> int:
        words, stride = self.words, self.stride
        for first in sets:
            for at in range(first, first + WAYS * stride, stride):
                if words[at] == tag:
                    return at
        return -1

    def _claim(self, tag: int, sets: tuple[int, int], now: float, interval_s: float) -> int:
        """Take a slot for `tag`: a refilled one in the set with more of them (the power
        of two choices), else the slot closest to full."""
        reals, stride = self.reals, self.stride
        victim, most_room = -1, 0
        fullest, lowest = sets[0], float("inf")
        for first in sets:
            room, free = 0, -1
            for at in range(first, first + WAYS * stride, stride):
                hint = reals[at + HINT]
                if hint <= now:
                    room += 1
                    if free < 0:
                        free = at
                elif hint < lowest:
                    fullest, lowest = at, hint
            if room > most_room:
                victim, most_room = free, room
        if victim < 0:
            victim = fullest
        reals[victim + BASE] = now - self.count(victim) * interval_s
        reals[victim + HINT] = 0.0
        self.words[victim] = tag
        return victim

    def used(self, now: float) -> int:
        """Slots holding a bucket that is not full (a walk of the table: tests, admin)."""
        reals, stride = self.reals, self.stride
        return sum(1 for at in range(0, self.slots * stride, stride) if reals[at + HINT] > now)


def table_slots(config: GatewayConfig) -> int:
    """Slots for the config's shared rules: 2 x their `maxKeys`, a power of two."""
    wanted = sum(
        rule.rate_limit.max_keys
        for route in config.routes
        for rule in route.rules
        if rule.rate_limit is not None and rule.rate_limit.scope == "shared"
    )
    return max(MIN_SLOTS, 1 << max(0, 2 * wanted - 1).bit_length())


def rule_salt(route: str, rule_index: int, limit: RateLimit) -> bytes:
    """What tells one rule's keys from another's in the table, the same in every worker."""
    text = f"{route}\0{rule_index}\0{limit!r}".encode()
    return hashlib.blake2b(text, digest_size=16).digest()


@mypyc_attr(native_class=False)  # compiled: `bucket_store` keeps stores weakly
class SharedBucketStore:
    """One rule's buckets in the shared table, as worker `worker` reaches them."""

    __slots__ = (
        "__weakref__",
        "cache",
        "gcra",
        "interval_s",
        "limit",
        "max_keys",
        "mine",
        "salt",
        "table",
    )

    def __init__(
        self, table: SharedBucketTable, limit: RateLimit, salt: bytes, *, worker: int
    ) -> None:
        if not 0 <= worker < table.workers:
            raise ValueError(f"worker {worker} has no count in a table for {table.workers}")
        self.table = table
        self.limit = limit
        self.gcra = Gcra.of(limit)
        self.interval_s = self.gcra.interval_s
        self.salt = salt
        self.mine = COUNTS + worker
        """This worker's count's offset in a slot."""
        self.max_keys = limit.max_keys
        self.cache: dict[str, tuple[int, int]] = {}
        """key → (its slot's word index, its tag)."""

    def take(self, key: str, now: float) -> float:
        """Take one token for `key`: 0.0 when allowed, else the seconds until one is free."""
        table = self.table
        words = table.words
        cached = self.cache.get(key)
        if cached is not None:
            at, tag = cached
            if words[at] != tag:  # another key took the slot
                at = self._place(key, tag, now)
        else:
            at = self._place(key, tag64(key, self.salt), now)
        charged = sum(words[at + COUNTS : at + table.stride]) * self.interval_s
        reals = table.reals
        tat = reals[at + BASE] + charged
        answer = self.gcra.admit(tat, now)
        if answer <= 0.0:
            return -answer
        if tat < now:  # refilled: the bucket is full from now on
            reals[at + BASE] = now - charged
        words[at + self.mine] += 1
        reals[at + HINT] = answer
        return 0.0

    def remaining(self, key: str, now: float) -> int:
        """Tokens left for `key` at `now`."""
        cached = self.cache.get(key)
        tat = 0.0
        if cached is not None and self.table.words[cached[0]] == cached[1]:
            at = cached[0]
            tat = self.table.reals[at + BASE] + self.table.count(at) * self.interval_s
        return self.gcra.remaining(tat, now)

    def tag(self, key: str) -> int:
        """The key's tag in this rule (never 0: that marks a slot never used)."""
        return tag64(key, self.salt)

    def _place(self, key: str, tag: int, now: float) -> int:
        cache = self.cache
        if key not in cache and len(cache) >= self.max_keys:
            for old in list(cache)[: max(1, len(cache) // 2)]:  # oldest first
                del cache[old]
        at = self.table.locate(tag, now, self.interval_s)
        cache[key] = (at, tag)
        return at


_attached: tuple[SharedBucketTable, int] | None = None


def attach(fd: int, worker: int) -> SharedBucketTable:
    """Serve this process's `scope: shared` rules from the table in `fd` as worker
    `worker` (a worker, before its first table is compiled). Without a table (one
    process) they use local buckets, which are then the gateway's only ones."""
    global _attached
    table = SharedBucketTable(fd)
    if not 0 <= worker < table.workers:
        raise ValueError(f"worker {worker} has no count in a table for {table.workers}")
    _attached = (table, worker)
    return table


def attached() -> tuple[SharedBucketTable, int] | None:
    """The table `attach` mapped and this process's worker number, if any."""
    return _attached
