"""Files a running gateway follows: its config file, and the credentials it serves with.

The config file is watched through its directory (watchfiles events):
editors and config management replace a file by rename, which a watch of
the file itself would lose. Certificate, key and JWKS files are polled
(`os.stat`: inode, size, mtime) instead: certificate rotation replaces files
by rename or, in Kubernetes Secrets, by swapping a symlinked directory,
which a stat of the path follows and an inotify watch does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from gateway.file_stamp import FileStamp, file_stamp
from gateway.http.filters.auth import refresh_jwks

if TYPE_CHECKING:
    from gateway.runtime.tls import ServerTls

CREDENTIALS_POLL_S = 1.0
"""How often certificate, key and JWKS files are checked for a change."""


async def watch_config_file(
    path: Path, on_change: Callable[[], None], stop: asyncio.Event | None = None
) -> None:
    """Call `on_change` each time `path` is written or replaced, until `stop` is set."""
    import watchfiles

    target = path.resolve()

    def relevant(_change: watchfiles.Change, changed: str) -> bool:
        return Path(changed).resolve() == target

    async for _changes in watchfiles.awatch(
        target.parent,
        watch_filter=relevant,
        debounce=50,
        step=20,
        stop_event=stop,
        recursive=False,
    ):
        on_change()


def _stamp_or_none(name: str) -> FileStamp | None:
    """`file_stamp`, None while the file is missing (a rotation in progress)."""
    try:
        return file_stamp(name)
    except OSError:
        return None


async def poll_credential_files(
    server_tls: Mapping[str, ServerTls],
    stop: asyncio.Event,
    interval_s: float = CREDENTIALS_POLL_S,
) -> None:
    """Reload a listener's certificates when one of its files changes, and have auth
    filters re-read their JWKS files (`refresh_jwks`), every `interval_s` until `stop`.

    `server_tls` is the worker's own mapping, read afresh each round: listeners
    started or stopped by a reload are followed.
    """
    seen: dict[str, FileStamp | None] = {}
    while not stop.is_set():
        for tls in list(server_tls.values()):
            changed = False
            for name in tls.files:
                stamp = _stamp_or_none(name)
                if name in seen and seen[name] != stamp:
                    changed = True
                seen[name] = stamp
            if changed:
                tls.reload()
        refresh_jwks()  # JWKS files of auth filters, re-read when they change
        await asyncio.sleep(interval_s)
