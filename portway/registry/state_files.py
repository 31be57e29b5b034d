"""The files registry's state store: small versioned text values beside the records.

Theory of operation: each state value is a file in the `state/` subdirectory
of the registry directory (which record readers never look into), one per
key (the key percent-encoded, `.json`), holding `{"version": N, "value":
"..."}`. A compare-and-set runs under the registry's directory lock, the one
record writers take. A new version is the larger of the old one plus one and
the wall clock in microseconds, so a key deleted and written again never
repeats a version an earlier reader may hold.

As for records, a registry directory that cannot be read is an outage, never
"no values": reads and writes raise `RegistryUnavailable` (a rollout runner
then keeps the statuses it last read instead of taking every rollout for
new). A registry directory without a `state/` subdirectory holds no values.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import quote, unquote

from portway.registry.base import (
    RegistryUnavailable,
    StateEntry,
    VersionConflict,
    check_state_key,
    check_state_prefix,
)
from portway.registry.record_dir import check_readable
from portway.registry.record_files import write_atomic

log = logging.getLogger(__name__)

STATE_DIR = "state"


class StateFiles:
    """The state values of the registry in `directory`; `locked` takes its writers' lock."""

    def __init__(self, directory: Path, locked: Callable[[], AbstractContextManager[None]]) -> None:
        self.directory = directory
        self.state_dir = directory / STATE_DIR
        self._locked = locked

    def read(self, key: str) -> StateEntry | None:
        return self._load(self._path(key))

    def list(self, prefix: str) -> dict[str, StateEntry]:
        check_state_prefix(prefix)
        try:
            names = sorted(os.listdir(self.state_dir))
        except OSError:
            check_readable(self.directory)
            return {}
        out: dict[str, StateEntry] = {}
        for name in names:
            key = unquote(name.removesuffix(".json"))
            if name.endswith(".json") and key.startswith(prefix):
                entry = self._load(self.state_dir / name)
                if entry is not None:
                    out[key] = entry
        return out

    def compare_and_set(self, key: str, value: str | None, version: int) -> None:
        """Write `value` (None: delete) if the key is still at `version`; else `VersionConflict`."""
        path = self._path(key)
        with self._locked():
            try:
                path.parent.mkdir(exist_ok=True)
            except OSError as exc:
                raise RegistryUnavailable(f"files registry {self.directory}: {exc}") from exc
            entry = self._load(path)
            current = entry.version if entry is not None else 0
            if current != version:
                raise VersionConflict(key, version)
            if value is None:
                path.unlink(missing_ok=True)
                return
            new = max(current + 1, time.time_ns() // 1000)
            write_atomic(path, json.dumps({"version": new, "value": value}).encode())

    def _path(self, key: str) -> Path:
        return self.state_dir / (quote(check_state_key(key), safe="") + ".json")

    def _load(self, path: Path) -> StateEntry | None:
        try:
            raw = json.loads(path.read_bytes())
            return StateEntry(str(raw["value"]), int(raw["version"]))
        except FileNotFoundError:
            check_readable(self.directory)
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            check_readable(self.directory)
            log.warning(
                "unreadable state file skipped",
                extra={"file": str(path), "error": str(exc), "backend": "files"},
            )
            return None
