"""A stable 64-bit hash for consistent hashing.

Python's `hash()` of a str is salted per process, so two gateway replicas
(or two restarts) would disagree on where a client goes. BLAKE2b with an
8-byte digest is stable everywhere and spreads short keys such as IP
addresses evenly over the ring.
"""

from __future__ import annotations

from hashlib import blake2b

HASH_BITS = 64
HASH_SPACE = 1 << HASH_BITS


def stable_hash(text: str) -> int:
    """64-bit unsigned hash of `text`, identical across processes and hosts."""
    return int.from_bytes(blake2b(text.encode("utf-8"), digest_size=8).digest(), "little")
