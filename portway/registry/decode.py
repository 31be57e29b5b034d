"""Turning stored bytes into records at the registry edge, skipping bad ones.

Every backend reads (key, value) pairs it did not necessarily write. A value
that does not parse, or whose content disagrees with its key, is logged once
with the key and the field at fault and left out; it never ends a snapshot or
a watch. A bad value arriving in a watch reads as a delete of that key, so a
gateway stops routing to a record that was replaced by garbage.

The stored form is the record's JSON plus one key the backends own,
`owner`: the publisher identity holding the key (see `Registry.publish`).
Readers take it out before the record is parsed; writers compare it before
they adopt a key an earlier session of theirs wrote.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator

from portway.model import RecordError, ServiceKey, ServiceRecord
from portway.record_decoder import stored_record
from portway.record_parser import parse_record
from portway.registry.base import Change, ChangeKind

DECODE_INLINE_BYTES = 200 * 2048
"""A registry answer longer than this (about 200 records) is decoded in a thread, not
on the event loop (etcd snapshot pages, Consul listings)."""

log = logging.getLogger(__name__)

OWNER_FIELD = "owner"

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


def stored_value(record: ServiceRecord, owner: str) -> str:
    """What a backend stores under the record's key: its JSON and the owner holding it."""
    body = record.to_dict()
    body[OWNER_FIELD] = owner
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def stored_owner(value: str | bytes) -> str:
    """The owner a stored value names; "" when it names none or is not a record's JSON."""
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return ""
    owner = raw.get(OWNER_FIELD) if isinstance(raw, dict) else None
    return owner if isinstance(owner, str) else ""


def parse_stored(value: str | bytes) -> ServiceRecord:
    """The record in a stored value (its `owner` taken out); RecordError naming the field.

    The fast decoder (`portway.record_decoder`) reads the values it can; the
    rest are parsed here to say what is wrong.
    """
    fast = stored_record(value)
    if fast is not None:
        return fast
    return parse_stored_text(value)


def parse_stored_text(value: str | bytes) -> ServiceRecord:
    """`parse_stored` without the fast decoder: the parser that names what is wrong."""
    try:
        raw = json.loads(value)
    except (ValueError, UnicodeDecodeError) as exc:
        raise RecordError("", f"not JSON: {exc}") from None
    if isinstance(raw, dict) and not isinstance(raw.pop(OWNER_FIELD, ""), str):
        raise RecordError(OWNER_FIELD, "must be a string")
    return parse_record(raw, outer_keys=(OWNER_FIELD,))


def decode_record(key: str, value: str | bytes, *, backend: str) -> ServiceRecord | None:
    """The record stored under `key`, or None (logged) if it cannot be used."""
    try:
        skey = ServiceKey.parse(key)
        record = parse_stored(value)
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
