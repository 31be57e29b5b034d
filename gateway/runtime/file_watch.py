"""Files a running gateway follows: its config file.

The config file is watched through its directory (watchfiles events):
editors and config management replace a file by rename, which a watch of
the file itself would lose.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path


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
