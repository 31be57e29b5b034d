"""The machinery of a table the workers of one gateway share in memory.

Why. The rate limit buckets (`gateway.http.filters.shared_buckets`) and the
health verdicts (`gateway.upstream.shared_verdicts`) are both a table of
slots in an anonymous memory file that the supervisor creates and every
worker maps: they share how the file is made and checked, how a key becomes
a tag and which two sets of `WAYS` slots the tag may live in. Each keeps its
own slot layout and lookups. It lives at the top of `gateway` because the
HTTP stage and the upstream stage both use it and neither imports the other.

Contract. A table file starts with a `HEADER_BYTES` header: an 8-byte magic
naming the table's kind and version, then unsigned little-endian 8-byte
fields (the slot count first, by convention). `create_table_fd` writes one,
`map_table` checks one (magic and total size) and maps the file shared. A
tag is a 64-bit BLAKE2b of the key, never 0 (0 marks a free slot); its low
and high 32 bits choose the key's two sets (two choices keep a table usable
when nearly full).
"""

from __future__ import annotations

import hashlib
import mmap
import os
from collections.abc import Callable
from typing import Final

WAYS: Final = 8
"""Slots in a set; a key may live in either of its two sets."""
HEADER_BYTES: Final = 64


def check_slots(slots: int) -> None:
    """Raise ValueError unless `slots` is a power of two of at least `WAYS`."""
    if slots < WAYS or slots & (slots - 1):
        raise ValueError(f"slots must be a power of two >= {WAYS}, not {slots}")


def create_table_fd(name: str, magic: bytes, fields: tuple[int, ...], size: int) -> int:
    """A new memory file of `size` bytes (zeroes) whose header holds `magic`, then
    `fields`; close-on-exec (the supervisor hands it to its workers explicitly)."""
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    os.ftruncate(fd, size)
    os.pwrite(fd, magic + b"".join(field.to_bytes(8, "little") for field in fields), 0)
    return fd


def map_table(
    fd: int, magic: bytes, what: str, size_of: Callable[[tuple[int, ...]], int]
) -> tuple[mmap.mmap, tuple[int, ...]]:
    """Map the table in `fd` shared: (the mapping, the header's fields after the magic).

    Raises ValueError, naming the table `what`, when `fd` does not start with
    `magic` or its size is not `size_of(fields)`.
    """
    size = os.fstat(fd).st_size
    header = os.pread(fd, HEADER_BYTES, 0)
    if size < HEADER_BYTES or header[:8] != magic:
        raise ValueError(f"descriptor {fd} holds no {what}")
    fields = tuple(
        int.from_bytes(header[at : at + 8], "little") for at in range(8, HEADER_BYTES, 8)
    )
    if size != size_of(fields):
        raise ValueError(f"{what} in descriptor {fd} is {size} bytes")
    return mmap.mmap(fd, size), fields


def set_pair(tag: int, set_mask: int) -> tuple[int, int]:
    """The indexes of `tag`'s two sets (`set_mask`: sets - 1, sets a power of two)."""
    return tag & set_mask, tag >> 32 & set_mask


def tag64(key: str, salt: bytes = b"") -> int:
    """`key`'s tag, keyed by `salt` (never 0: that marks a free slot)."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8, key=salt).digest()
    return int.from_bytes(digest, "little") or 1
