"""What tells a rewritten file from the one read before: its inode, size and mtime.

Files the gateway reads at table compile time or polls (API key files, JWKS,
GeoIP databases, certificates) are read again only when their stamp changes.
An atomic replace (a new inode) changes it even within one mtime tick.
"""

from __future__ import annotations

import os

FileStamp = tuple[int, int, int]


def file_stamp(path: str) -> FileStamp:
    """The stamp of `path`; raises `OSError` when it cannot be stat'ed."""
    st = os.stat(path)
    return (st.st_ino, st.st_size, st.st_mtime_ns)
