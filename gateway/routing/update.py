"""Registry changes → a new `RoutingTable` sharing everything they did not touch.

Theory of operation. A full compile (`compile_table`) costs about a
microsecond per endpoint of the whole registry; a node going NotReady in one
service should cost what that service costs. `update_table` therefore takes
the table in force, the record index after the change, and the services
whose records changed, and recompiles only the slots those services feed
(their base backends, and every route-region variant of those bases). All
else is shared by reference: routes, rules and what was built per rule,
matches, host indexes, the layout, and each untouched `CompiledBackend`
(with its cached locality plan and hash tables). The only work proportional
to the fleet is copying three arrays of pointers (about 0.1 ms at 10,000
services). The result is a new table, swapped whole, like a full compile's.

Routes never recompile here: a registry change cannot change them. A config
change goes through `compile_table`, which stays the oracle: for any
sequence of changes, the updated table equals (`RoutingTable.__eq__`) a full
compile of the same config and records.

`RecordIndex` upkeep belongs here too: `apply_record_changes` folds changes
into the index the compiler reads, and says which services they touched.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gateway.routing.backend import CompiledBackend
from gateway.routing.compiler import collector_paused, compile_backend, compile_variant
from gateway.routing.expansion import (
    ExpansionMemo,
    RecordIndex,
    backend_records,
    registry_endpoints,
)
from gateway.routing.layout import ServiceName
from gateway.routing.table import RoutingTable
from portway.model import ServiceKey, ServiceRecord

RecordChanges = Mapping[ServiceKey, ServiceRecord | None]
"""Key → its new record, or None when it was deleted or expired."""


def apply_record_changes(index: RecordIndex, changes: RecordChanges) -> set[ServiceName]:
    """Fold `changes` into `index` (in place); returns the services touched.

    Each service's list stays sorted by cluster, as `index_records` builds it.
    """
    touched: set[ServiceName] = set()
    for key, record in changes.items():
        service = (key.namespace, key.service)
        kept = [r for r in index.get(service, ()) if r.cluster != key.cluster]
        if record is not None:
            kept.append(record)
            kept.sort(key=_cluster)
        if kept:
            index[service] = kept
        else:
            index.pop(service, None)
        touched.add(service)
    return touched


def _cluster(record: ServiceRecord) -> str:
    return record.cluster


def update_table(
    table: RoutingTable,
    index: RecordIndex,
    services: Iterable[ServiceName],
    *,
    version: str,
) -> RoutingTable:
    """`table` with the backends fed by `services` recompiled from `index` (see above).

    Replaced backends are warmed (hash tables built) before the table is
    returned, so no request pays for them. Services no backend reads cost a
    dict lookup.
    """
    with collector_paused():  # the first sync updates every slot: a full compile's allocations
        return _update(table, index, services, version)


def _update(
    table: RoutingTable, index: RecordIndex, services: Iterable[ServiceName], version: str
) -> RoutingTable:
    layout = table.layout
    gw = table.gateway
    memo = ExpansionMemo()
    slots: list[CompiledBackend] | None = None
    backends: dict[str, CompiledBackend] = {}
    variants: dict[tuple[str, tuple[str, ...]], CompiledBackend] = {}
    for service in services:
        for slot in layout.by_service.get(service, ()):
            if slots is None:
                slots = list(table.slots)
                backends = dict(table.backends)
                variants = dict(table.variants)
            spec = layout.specs[slot]
            endpoints = registry_endpoints(spec.backend, index, memo)
            records = backend_records(spec.backend, index)
            base = compile_backend(spec.backend, endpoints, gw, records=records)
            base.warm()
            slots[slot] = backends[spec.backend.name] = base
            for vslot in layout.variants_of.get(slot, ()):
                regions = layout.specs[vslot].regions
                variant = compile_variant(base, regions, gw)
                variant.warm()
                slots[vslot] = variants[(spec.backend.name, regions)] = variant
    if slots is None:
        return table.with_backends(version, table.slots, table.backends, table.variants)
    return table.with_backends(version, tuple(slots), backends, variants)
