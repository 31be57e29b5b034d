"""The config file followed through its directory: replaced by rename, still seen."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gateway.runtime.file_watch import watch_config_file


async def test_a_config_replaced_by_rename_is_seen_and_other_files_are_not(
    tmp_path: Path,
) -> None:
    path = tmp_path / "gw.yaml"
    path.write_text("version: 1\n")
    seen: list[str] = []
    stop = asyncio.Event()
    watcher = asyncio.create_task(
        watch_config_file(path, lambda: seen.append(path.read_text()), stop)
    )
    try:
        await asyncio.sleep(0.2)
        (tmp_path / "unrelated.txt").write_text("x")
        await asyncio.sleep(0.3)
        assert seen == []
        tmp = tmp_path / "gw.yaml.tmp"
        tmp.write_text("version: 1\n# two\n")
        tmp.replace(path)  # how editors and config management write
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
        assert seen and seen[-1] == "version: 1\n# two\n"
    finally:
        stop.set()
        await asyncio.wait_for(watcher, 5)
