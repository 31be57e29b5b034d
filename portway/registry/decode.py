"""Turning stored bytes into records at the registry edge, skipping bad ones.

Every backend reads (key, value) pairs it did not necessarily write. A value
that does not parse, or whose content disagrees with its key, is logged once
with the key and the field at fault and left out; it never ends a snapshot or
a watch. A bad value arriving in a watch reads as a delete of that key, so a
gateway stops routing to a record that was replaced by garbage.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterable, Iterator

from portway.model import RecordError, ServiceKey, ServiceRecord
from portway.registry.base import Change, ChangeKind

log = logging.getLogger(__name__)

BadRecordHook = Callable[[str, str], None]
_hooks: list[BadRecordHook] = []
_collectors: list[dict[str, str]] = []


def on_bad_record(hook: BadRecordHook) -> Callable[[], None]:
    """Call `hook(backend, key)` for each skipped record; returns the unsubscribe."""
    _hooks.append(hook)
    return lambda: _hooks.remove(hook)


@contextlib.contextmanager
def collect_bad_records() -> Iterator[dict[str, str]]:
    """Gather `{key: reason}` of the records skipped meanwhile, instead of logging them.

    For the CLI's reading verbs, which show each one to the person who asked;
    the hooks (metrics) are still called.
    """
    found: dict[str, str] = {}
    _collectors.append(found)
    try:
        yield found
    finally:
        _collectors.remove(found)


def report_bad(backend: str, key: str, error: str) -> None:
    """Log a skipped record (or hand it to a collector) and tell the hooks (metrics)."""
    if _collectors:
        for found in _collectors:
            found[key] = error
    else:
        log.warning(
            "skipping bad registry record",
            extra={"backend": backend, "key": key, "error": error},
        )
    for hook in list(_hooks):
        hook(backend, key)


def decode_record(key: str, value: str | bytes, *, backend: str) -> ServiceRecord | None:
    """The record stored under `key`, or None (logged) if it cannot be used."""
    try:
        skey = ServiceKey.parse(key)
        record = ServiceRecord.from_json(value)
    except RecordError as exc:
        report_bad(backend, key, str(exc))
        return None
    if record.key != skey:
        report_bad(backend, key, f"record names {record.key.path()!r}, stored under another key")
        return None
    return record


def decode_records(
    items: Iterable[tuple[str, str | bytes]], *, backend: str
) -> dict[ServiceKey, ServiceRecord]:
    out: dict[ServiceKey, ServiceRecord] = {}
    for key, value in items:
        record = decode_record(key, value, backend=backend)
        if record is not None:
            out[record.key] = record
    return out


def decode_change(
    key: str, value: str | bytes | None, revision: int, *, backend: str
) -> Change | None:
    """A watch event as a `Change`; None only for keys outside the layout."""
    try:
        skey = ServiceKey.parse(key)
    except RecordError as exc:
        report_bad(backend, key, str(exc))
        return None
    if value is None:
        return Change(ChangeKind.DELETE, skey, revision)
    record = decode_record(key, value, backend=backend)
    if record is None:
        return Change(ChangeKind.DELETE, skey, revision)
    return Change(ChangeKind.PUT, skey, revision, record)
