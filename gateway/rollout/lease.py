"""Which gateway replica drives the rollouts: a lease kept in the registry.

Theory of operation (a Kubernetes Lease, on the registry's compare-and-set).
The lease names a holder and the wall-clock time it lapses. A replica that
finds no lease, its own, or a lapsed one writes itself in with
`until = now + ttl_s` (compare-and-set on the version it read: of two
replicas racing, one write wins and the other reads the winner next time).
The holder rewrites the lease once less than `RENEW_FRACTION` of it is left,
so a steady holder writes every third of the TTL, not every tick. A holder
that dies stops renewing and another replica takes over after at most
`ttl_s`; replicas' clocks are assumed to agree to well under `ttl_s` (NTP),
as for Kubernetes' own leases. Drivers only move a rollout through
compare-and-set writes of its status, so even two drivers for a moment
(clock skew) cannot both apply a step: the second write fails.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

DEFAULT_TTL_S: Final = 10.0
RENEW_FRACTION: Final = 2 / 3


@dataclass(frozen=True, slots=True)
class DriverLease:
    holder: str
    until: float
    """Wall-clock time the lease lapses unless renewed."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The outcome of `claim`: whether `me` drives, and the lease to write (None: no write)."""

    drives: bool
    write: DriverLease | None = None


def claim(current: DriverLease | None, me: str, now: float, ttl_s: float = DEFAULT_TTL_S) -> Claim:
    """What replica `me` does with the lease it read (`current`) at `now`."""
    if current is not None and current.holder != me and current.until > now:
        return Claim(drives=False)
    mine = current is not None and current.holder == me
    if mine and current is not None and current.until - now > ttl_s * RENEW_FRACTION:
        return Claim(drives=True)
    return Claim(drives=True, write=DriverLease(me, now + ttl_s))
