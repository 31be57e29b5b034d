"""Which compiled backend sits in which slot of a routing table, and why.

A `RoutingTable` keeps its compiled backends in one tuple, `slots`; rules
name backends by slot (`BackendSplit`). The layout is what the config alone
decides about that tuple: slot `i` holds backend `specs[i].backend`, either
as written (its base slot) or filtered to a route's `allowedRegions` (a
variant of a base). It is computed by the full compile and shared, unchanged,
by every table an incremental update derives from it, so an update can find
in constant time the slots a registry service feeds (`by_service`) and the
variants to refilter when a base changes (`variants_of`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config.model import Backend

ServiceName = tuple[str, str]
"""(namespace, service) of a registry service."""


@dataclass(frozen=True, slots=True)
class SlotSpec:
    """Slot contents as the config defines them; `regions` is () for a base slot."""

    backend: Backend
    regions: tuple[str, ...]
    base: int


@dataclass(frozen=True, slots=True)
class BackendLayout:
    """The slots of one config's tables (see the module docstring)."""

    specs: tuple[SlotSpec, ...]
    by_name: Mapping[str, int]
    by_variant: Mapping[tuple[str, tuple[str, ...]], int]
    by_service: Mapping[ServiceName, tuple[int, ...]]
    variants_of: Mapping[int, tuple[int, ...]]

    @classmethod
    def of(cls, specs: list[SlotSpec]) -> BackendLayout:
        """Index `specs` (bases first, as the compiler appends them)."""
        by_name: dict[str, int] = {}
        by_variant: dict[tuple[str, tuple[str, ...]], int] = {}
        by_service: dict[ServiceName, list[int]] = {}
        variants_of: dict[int, list[int]] = {}
        for slot, spec in enumerate(specs):
            name = spec.backend.name
            if spec.regions:
                by_variant[(name, spec.regions)] = slot
                variants_of.setdefault(spec.base, []).append(slot)
                continue
            by_name[name] = slot
            ref = spec.backend.service
            if ref is not None:
                by_service.setdefault((ref.namespace, ref.name), []).append(slot)
        return cls(
            specs=tuple(specs),
            by_name=by_name,
            by_variant=by_variant,
            by_service={k: tuple(v) for k, v in by_service.items()},
            variants_of={k: tuple(v) for k, v in variants_of.items()},
        )
