"""The on-disk form of the files registry: one record per YAML or JSON file.

A file holds the dict form of `ServiceRecord.to_dict()` (JSON, or YAML for
hand-written static/on-prem endpoints) plus two optional fields the files
backend owns:

- `ttlSeconds`: the record expires `ttlSeconds` after it was last renewed,
  where the renewal time is the later of `publishedAt` and the file's mtime
  (a writer renews by touching the file, so renewals do not rewrite content
  or wake readers with no-op changes). A record without `ttlSeconds`, as
  people write them by hand, never expires.
- `owner`: the publisher identity that holds the key (as in every
  backend's stored form); a writer of another identity is refused while the
  record is alive.

Writes are atomic: a temporary file in the same directory, fsync, then
`os.replace`, so a reader sees the old file or the new one, never half.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from portway.model import RecordError, ServiceKey, ServiceRecord
from portway.record_decoder import file_record
from portway.record_parser import parse_record
from portway.registry.decode import OWNER_FIELD, report_bad

log = logging.getLogger(__name__)

RECORD_SUFFIXES = (".json", ".yaml", ".yml")
TTL_FIELD = "ttlSeconds"


@dataclass(frozen=True, slots=True)
class RecordFile:
    """A parsed record file: the record, its TTL, owner and renewal time (wall clock).

    `path` is text, not a `Path`: a view of 20,000 files holds one each, and a
    `Path` with its parsed parts costs ~400 bytes where the text costs ~100. A
    directory view (`record_dir`) gives the bare file name, the key it already
    holds the file by: its directory is the view's.
    """

    path: str
    record: ServiceRecord
    ttl_s: float | None
    owner: str
    renewed_at: float

    def expires_at(self) -> float | None:
        """Wall-clock expiry, or None for a record that never expires."""
        return None if self.ttl_s is None else self.renewed_at + self.ttl_s

    def expired(self, now: float) -> bool:
        deadline = self.expires_at()
        return deadline is not None and now >= deadline


def file_name(key: ServiceKey) -> str:
    """The name a writer uses for a key: `<namespace>.<service>.<cluster>.json`."""
    return f"{key.namespace}.{key.service}.{key.cluster}.json"


def is_record_file(path: Path) -> bool:
    return is_record_name(path.name)


def is_record_name(name: str) -> bool:
    """Whether a file of this name holds a record (`is_record_file` without a `Path`)."""
    return name.endswith(RECORD_SUFFIXES) and not name.startswith(".")


def parse_record_file(path: str | os.PathLike[str], data: bytes, mtime: float) -> RecordFile:
    """Parse one file's bytes; raises RecordError naming the field that is wrong.

    JSON goes through the fast decoder first (`portway.record_decoder`); what
    it does not take is parsed here again to say what is wrong.
    """
    text = os.fspath(path)
    if text.endswith(".json"):
        fast = file_record(data)
        if fast is not None:
            record, ttl_s, owner = fast
            return RecordFile(text, record, ttl_s, owner, max(record.published_at, mtime))
    return parse_record_text(text, data, mtime)


def parse_record_text(path: str | os.PathLike[str], data: bytes, mtime: float) -> RecordFile:
    """`parse_record_file` without the fast decoder: the parser that names what is wrong."""
    raw: Any
    text = os.fspath(path)
    if text.endswith(".json"):
        try:
            raw = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RecordError("", f"not JSON: {exc}") from None
    else:
        try:
            raw = YAML(typ="safe", pure=True).load(io.BytesIO(data))
        except YAMLError as exc:
            raise RecordError("", f"not YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise RecordError("", "a record file holds one mapping")
    ttl = raw.pop(TTL_FIELD, None)
    if ttl is not None and (isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0):
        raise RecordError(TTL_FIELD, "must be a positive number of seconds")
    owner = raw.pop(OWNER_FIELD, "")
    if not isinstance(owner, str):
        raise RecordError(OWNER_FIELD, "must be a string")
    raw.setdefault("v", 1)
    record = parse_record(raw, outer_keys=(TTL_FIELD, OWNER_FIELD))
    return RecordFile(
        path=text,
        record=record,
        ttl_s=None if ttl is None else float(ttl),
        owner=owner,
        renewed_at=max(record.published_at, mtime),
    )


def load_record_file(path: Path) -> RecordFile:
    """Read and parse one file (OSError if it vanished meanwhile)."""
    with open(path, "rb") as fh:
        data = fh.read()
        mtime = os.fstat(fh.fileno()).st_mtime
    return parse_record_file(path, data, mtime)


def scan(
    directory: Path, now: float, reported: set[tuple[str, float]] | None = None
) -> dict[ServiceKey, RecordFile]:
    """Every live, valid record in `directory`, by key.

    Bad files are logged with their path and skipped; of two files claiming
    one key the first by name wins and the other is logged. A watcher passes
    `reported` to log each bad (path, mtime) once instead of on every rescan.
    """
    found: dict[ServiceKey, RecordFile] = {}
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return found
    for name in names:
        path = directory / name
        if not is_record_file(path):
            continue
        try:
            rf = load_record_file(path)
        except FileNotFoundError:
            continue
        except (OSError, RecordError) as exc:
            _report(path, str(exc), reported)
            continue
        if rf.expired(now):
            continue
        key = rf.record.key
        if key in found:
            log.warning(
                "two record files claim one key; keeping the first",
                extra={"key": key.path(), "path": str(path), "kept": str(found[key].path)},
            )
            continue
        found[key] = rf
    return found


def _report(path: Path, error: str, reported: set[tuple[str, float]] | None) -> None:
    try:
        mark = (str(path), os.stat(path).st_mtime)
    except OSError:
        mark = (str(path), 0.0)
    if reported is not None:
        if mark in reported:
            return
        reported.add(mark)
    report_bad("files", str(path), error)


def read_records(
    directory: str | os.PathLike[str], now: float | None = None
) -> list[ServiceRecord]:
    """The live records of a files registry directory, sorted by key path.

    `now` is wall-clock seconds (default: the current time); expired records
    are left out, bad files are logged and skipped.
    """

    at = time.time() if now is None else now
    found = scan(Path(directory), at)
    return [found[k].record for k in sorted(found, key=ServiceKey.path)]


def record_file_bytes(record: ServiceRecord, ttl_s: float | None, owner: str) -> bytes:
    """The JSON a writer puts in a record file."""
    body = record.to_dict()
    if ttl_s is not None:
        body[TTL_FIELD] = ttl_s
    if owner:
        body[OWNER_FIELD] = owner
    return json.dumps(body, sort_keys=True, indent=1).encode()


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temp file in the same directory and `os.replace`."""
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
