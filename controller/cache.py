"""The controller's one local cache: the single source derivation reads.

Theory of operation: the watchers (controller/watch.py) deliver `Reset`s and
`ObjectEvent`s on the event loop; `ClusterCache.apply` folds them in. Each
object is converted once, on arrival, into its frozen value
(controller/kube_objects.py), so a derivation over the whole cluster reads
plain values and never re-parses JSON. A `Reset` replaces everything known of
its kind (that is how objects deleted during a 410 relist or an outage
vanish). An object that cannot be read is logged and its last good value is
kept, so one malformed object neither vanishes routes nor stops the others.

`snapshot()` is the whole cluster at one instant, as immutable tuples:
ServiceExports are folded into their Services' `service_export` flag there.
`synced` tells whether every kind has been listed at least once; before
that, a derivation would see a partial cluster (Services but not yet their
nodes) and would withdraw what is live, so the controller waits for it.

Every change is also noted as the Services it touches (controller/derive.py
`Touched`: a Service, ServiceExport or EndpointSlice its Service, with a
slice's old and new Service both; a Node, or a kind's first listing,
everything); `take_touched()` hands the accumulated set to the next
derivation and starts a new one.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from controller import kube_objects
from controller.incremental import Touched
from controller.objects import EndpointSliceInfo, NodeInfo, ServiceInfo
from controller.watch import (
    ENDPOINT_SLICES,
    NODES,
    SERVICE_EXPORTS,
    SERVICES,
    ObjectEvent,
    Reset,
    WatchedKind,
)

log = logging.getLogger(__name__)

ObjectKey = tuple[str, str]


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """Every Service, Node and EndpointSlice of the cluster at one instant."""

    services: tuple[ServiceInfo, ...]
    nodes: tuple[NodeInfo, ...]
    slices: tuple[EndpointSliceInfo, ...]


def _key(obj: dict[str, Any]) -> ObjectKey:
    """(namespace, name); a ServiceExport is nothing more than that."""
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


_CONVERTERS: dict[WatchedKind, Callable[[dict[str, Any]], Any]] = {
    SERVICES: kube_objects.service_info,
    NODES: kube_objects.node_info,
    ENDPOINT_SLICES: kube_objects.endpoint_slice_info,
    SERVICE_EXPORTS: _key,
}


class ClusterCache:
    """Converted objects per kind, keyed by (namespace, name)."""

    def __init__(self, kinds: Iterable[WatchedKind] = tuple(_CONVERTERS)) -> None:
        self.kinds = tuple(kinds)
        self._objects: dict[WatchedKind, dict[ObjectKey, Any]] = {k: {} for k in self.kinds}
        self._listed: set[WatchedKind] = set()
        self.generation = 0
        self._touched_all = True
        self._touched: set[ObjectKey] = set()

    @property
    def synced(self) -> bool:
        """Every kind has been listed at least once."""
        return self._listed.issuperset(self.kinds)

    def apply(self, item: Reset | ObjectEvent) -> bool:
        """Fold one watch item in; True when the cluster's state changed."""
        kind = item.kind
        if kind not in self._objects:
            return False
        if isinstance(item, Reset):
            before = self._objects[kind]
            after: dict[ObjectKey, Any] = {}
            for obj in item.objects:
                key = _key(obj)
                value = self._convert(kind, obj, before.get(key))
                if value is not None:
                    after[key] = value
            first = kind not in self._listed
            self._listed.add(kind)
            changed = first or after != before
            self._objects[kind] = after
            if first:
                self._touched_all = True
            elif changed:
                for key in before.keys() | after.keys():
                    if before.get(key) != after.get(key):
                        self._touch(kind, key, before.get(key), after.get(key))
        else:
            table = self._objects[kind]
            key = _key(item.object)
            old = table.get(key)
            if item.type == "DELETED":
                changed = table.pop(key, None) is not None
            else:
                value = self._convert(kind, item.object, old)
                changed = value is not None and old != value
                if value is not None:
                    table[key] = value
            if changed:
                self._touch(kind, key, old, table.get(key))
        if changed:
            self.generation += 1
        return changed

    def _touch(self, kind: WatchedKind, key: ObjectKey, old: Any, new: Any) -> None:
        if kind == NODES:
            self._touched_all = True
        elif kind == ENDPOINT_SLICES:
            for value in (old, new):
                if value is not None:
                    self._touched.add((value.namespace, value.service_name))
        else:
            self._touched.add(key)

    def take_touched(self) -> Touched:
        """The Services changed since the last call (everything before the first)."""
        out = Touched(self._touched_all, frozenset(self._touched))
        self._touched_all = False
        self._touched = set()
        return out

    def touch_everything(self) -> None:
        """Have the next derivation derive every Service (a derivation was lost)."""
        self._touched_all = True

    def _convert(self, kind: WatchedKind, obj: dict[str, Any], last: Any) -> Any:
        try:
            return _CONVERTERS[kind](obj)
        except (kube_objects.ObjectError, ValueError, TypeError) as exc:
            log.warning(
                "cannot read object; keeping its last good state",
                extra={"kind": str(kind), "object": "/".join(_key(obj)), "error": str(exc)},
            )
            return last

    def snapshot(self) -> ClusterSnapshot:
        exports = set(self._objects.get(SERVICE_EXPORTS, {}).values())
        services = tuple(
            dataclasses.replace(s, service_export=True) if (s.namespace, s.name) in exports else s
            for s in self._objects.get(SERVICES, {}).values()
        )
        return ClusterSnapshot(
            services,
            tuple(self._objects.get(NODES, {}).values()),
            tuple(self._objects.get(ENDPOINT_SLICES, {}).values()),
        )
