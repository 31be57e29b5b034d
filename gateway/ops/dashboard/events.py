"""Recent events for the dashboard: config reloads, registry-driven table updates, rotation changes.

Theory of operation: nothing on the request path or in the reloader knows
about the dashboard. The events are derived by comparing two observations
of state that exists anyway, each a plain value:

* `ReloadView`, a few attributes of the process's `Reloader` (reload
  counts, active version, table version, last rejection), read once a tick
  at no cost: a grown success count is a reload, a grown failure count a
  rejected config, a table version that moved without a reload a routing
  table updated from registry changes;
* the endpoints out of rotation (unhealthy, ejected, drained, with the
  health driver's reason) as the workers' reports list them: a key that
  appears or disappears is a health transition. These lists are only read
  while a dashboard is watching (they come with the per-tick report), so
  transitions that happen while nobody watches are not recorded; the
  dashboard then shows the endpoints out of rotation as they are.

Many transitions in one tick (a cluster lost at once) are folded into one
event per direction naming the clusters, so a mass outage cannot flush the
ring. `EventRing` keeps the last `capacity` events with increasing sequence
numbers, so a client that reconnects asks for what it has not seen.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gateway.ops.endpoint_view import merged_reasons, merged_state

DEFAULT_CAPACITY = 200
FOLD_OVER = 8
"""More transitions than this in one direction and one tick become one event."""


class EventKind(enum.Enum):
    RELOAD = "reload"
    REJECTED = "rejected"
    TABLE = "table"
    OUT_OF_ROTATION = "out"
    BACK_IN_ROTATION = "back"


@dataclass(frozen=True, slots=True)
class Event:
    seq: int
    at: float
    """Unix time."""
    kind: EventKind
    text: str
    subject: str = ""
    """What it is about: a config version, an endpoint key, a list of clusters."""

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "at": self.at,
            "kind": self.kind.value,
            "text": self.text,
            "subject": self.subject,
        }


@dataclass(frozen=True, slots=True)
class Happening:
    """An event before the ring numbers it."""

    at: float
    kind: EventKind
    text: str
    subject: str = ""


class EventRing:
    """The last `capacity` events, numbered from 1 in the order they were added."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._events: deque[Event] = deque(maxlen=capacity)
        self._seq = 0

    def add(self, happening: Happening) -> Event:
        self._seq += 1
        event = Event(self._seq, happening.at, happening.kind, happening.text, happening.subject)
        self._events.append(event)
        return event

    def extend(self, happenings: Iterable[Happening]) -> list[Event]:
        return [self.add(h) for h in happenings]

    def since(self, seq: int) -> list[Event]:
        """Events numbered above `seq` that are still kept, oldest first."""
        return [e for e in self._events if e.seq > seq]

    @property
    def last_seq(self) -> int:
        return self._seq


@dataclass(frozen=True, slots=True)
class ReloadView:
    """What the reloader shows at one instant (see the module docstring)."""

    version: str | None
    table_version: int
    successes: int
    failures: int
    loaded_at: float
    last_compile_ms: float
    rejected_at: float | None = None
    rejected_issues: tuple[str, ...] = ()


def reload_happenings(before: ReloadView | None, after: ReloadView, now: float) -> list[Happening]:
    """What changed between two views; the first view reports the config in force."""
    if before is None:
        if after.version is None:
            return []
        return [
            Happening(after.loaded_at, EventKind.RELOAD, "config loaded", _short(after.version))
        ]
    out: list[Happening] = []
    if after.failures > before.failures:
        issues = after.rejected_issues
        text = "config rejected, last good config kept"
        if issues:
            more = f" (+{len(issues) - 1} more)" if len(issues) > 1 else ""
            text = f"{text}: {issues[0]}{more}"
        out.append(Happening(after.rejected_at or now, EventKind.REJECTED, text))
    if after.successes > before.successes:
        n = after.successes - before.successes
        text = "config reloaded" if n == 1 else f"config reloaded ({n} times)"
        out.append(Happening(after.loaded_at, EventKind.RELOAD, text, _short(after.version)))
    elif after.table_version > before.table_version:
        n = after.table_version - before.table_version
        updates = "1 update" if n == 1 else f"{n} updates"
        out.append(
            Happening(
                now,
                EventKind.TABLE,
                f"routing table updated from the registry ({updates}, "
                f"last compiled in {after.last_compile_ms:.1f} ms)",
                f"table {after.table_version}",
            )
        )
    return out


def out_of_rotation(reports: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Endpoint key → why it takes no new requests, over every worker's report.

    The reports merged as the admin API's `/endpoints` merges them
    (`gateway.ops.endpoint_view`): out anywhere is out (a worker that judged
    it unhealthy sends it nothing), and the first reason a worker gives is
    the one shown.
    """
    state, _ = merged_state(reports)
    reasons = merged_reasons(reports)
    out: dict[str, str] = {}
    for key in state.unhealthy:
        out[key] = reasons.get(key) or "unhealthy"
    for key in state.ejected:
        out.setdefault(key, reasons.get(key) or "ejected")
    for key in state.draining:
        out[key] = "drained"
    return out


def rotation_happenings(
    before: Mapping[str, str], after: Mapping[str, str], now: float, *, fold_over: int = FOLD_OVER
) -> list[Happening]:
    """Endpoints that left or came back to rotation between two observations."""
    left = sorted(after.keys() - before.keys())
    changed = sorted(k for k in after.keys() & before.keys() if after[k] != before[k])
    back = sorted(before.keys() - after.keys())
    out: list[Happening] = []
    if len(left) > fold_over:
        out.append(
            Happening(
                now,
                EventKind.OUT_OF_ROTATION,
                f"{len(left)} endpoints out of rotation",
                _clusters(left),
            )
        )
    else:
        out += [Happening(now, EventKind.OUT_OF_ROTATION, after[k], k) for k in left]
    out += [Happening(now, EventKind.OUT_OF_ROTATION, after[k], k) for k in changed[:fold_over]]
    if len(back) > fold_over:
        out.append(
            Happening(
                now,
                EventKind.BACK_IN_ROTATION,
                f"{len(back)} endpoints back in rotation",
                _clusters(back),
            )
        )
    else:
        out += [Happening(now, EventKind.BACK_IN_ROTATION, "back in rotation", k) for k in back]
    return out


def _clusters(keys: Iterable[str]) -> str:
    """`a: 30, b: 2` from `cluster/address:port` keys."""
    counts = Counter(key.partition("/")[0] for key in keys)
    return ", ".join(f"{cluster}: {n}" for cluster, n in sorted(counts.items()))


def _short(version: str | None) -> str:
    return (version or "")[:12]
