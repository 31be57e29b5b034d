"""The rollout runner: the asyncio side of progressive rollouts, one per gateway process.

Theory of operation. Every gateway process (each worker, the supervisor)
runs a runner that *follows*: every `poll_s` it lists the rollout statuses
stored in the registry (`gateway.rollout.record`) and hands them to the
reloader (`Reloader.on_rollouts`), which recompiles the routing table when a
rollout's weight changed; so every replica serves the stored weight, and a
restarted one serves it from its first table (`start` reads the statuses
before the first request). The process that serves the admin API may also
*drive*: given a way to `measure` the gateway's counters, each round it
claims the driver lease (`gateway.rollout.lease`; only the holder goes on),
samples each canary's counters, and feeds the time and the canary's window
since the step began (`gateway.rollout.window`) to the pure state machine
(`gateway.rollout.machine.tick`). A status that changed is written back by
compare-and-set on the version this round read; a write that loses (an
operator's command landed first) is dropped and the next round decides
again from what is stored. Operators' commands (`command`) go through the
same read, decide, compare-and-set, from any replica.

The window of a step starts when this driver first sees the step (its own
sample then), so a driver that takes over, or restarts, mid-step judges a
full hold of its own measurements before it passes the step. The writer of
a transition logs it, so each step is logged once for the whole fleet.

While the registry cannot be reached the runner keeps the statuses it last
read (the weights stay as they are), drives nothing, and says so once in the
log and in `view()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from gateway.config.active import ActiveConfig
from gateway.config.model import GatewayConfig
from gateway.rollout.lease import DEFAULT_TTL_S, DriverLease, claim
from gateway.rollout.machine import (
    Command,
    RolloutStatus,
    Window,
    command,
    tick,
)
from gateway.rollout.record import (
    DRIVER_KEY,
    ROLLOUTS_PREFIX,
    RolloutRecordError,
    decode_lease,
    decode_status,
    encode_lease,
    encode_status,
    name_of_key,
    rollout_key,
)
from gateway.rollout.targets import RolloutTarget, effective, rollout_targets
from gateway.rollout.window import Counters, Sample, sample_of, window
from portway.registry.base import Registry, RegistryError, VersionConflict, describe_error

log = logging.getLogger("portway.gateway.rollout")

Measure = Callable[[], Awaitable[Counters]]
MIN_POLL_S = 0.1
MAX_POLL_S = 1.0
COMMAND_ATTEMPTS = 5


class RolloutFollower(Protocol):
    """What the runner feeds: the reloader (its active config, and the statuses input)."""

    @property
    def active(self) -> ActiveConfig | None: ...

    @property
    def rollout_weights(self) -> Mapping[str, float]:
        """Each rollout's canary weight in the table in force."""
        ...

    def on_rollouts(self, states: Mapping[str, RolloutStatus]) -> None: ...


class UnknownRollout(LookupError):
    """No rollout of the active config has that name."""


def open_config_registry(config: GatewayConfig) -> Registry:
    """A client of the registry the config names (`registry:`), as the endpoint feed opens it."""
    from portway.registry.backends import open_registry, root_from_prefix

    settings = config.registry
    return open_registry(
        settings.type,
        path=settings.path,
        endpoints=settings.endpoints,
        root=root_from_prefix(settings.prefix),
    )


def default_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


class RolloutRunner:
    """Follows (and, with `measure`, may drive) the rollouts; see the module docstring."""

    def __init__(
        self,
        follower: RolloutFollower,
        *,
        measure: Measure | None = None,
        identity: str | None = None,
        open_registry: Callable[[GatewayConfig], Registry] = open_config_registry,
        clock: Callable[[], float] = time.time,
        poll_s: float | None = None,
        lease_ttl_s: float = DEFAULT_TTL_S,
    ) -> None:
        self.follower = follower
        self.measure = measure
        self.identity = identity or default_identity()
        self._open_registry = open_registry
        self._clock = clock
        self._poll_s = poll_s
        self.lease_ttl_s = lease_ttl_s
        self.registry: Registry | None = None
        self.states: dict[str, RolloutStatus] = {}
        """Stored statuses by rollout name, as last read (or written here)."""
        self.versions: dict[str, int] = {}
        self.windows: dict[str, Window] = {}
        """The driver's current window per rollout (empty unless driving)."""
        self.driving = False
        self.driver: str | None = None
        self.up = True
        self.error: str | None = None
        self._baselines: dict[str, tuple[float, Sample]] = {}
        self._targets_of: tuple[GatewayConfig | None, tuple[RolloutTarget, ...]] = (None, ())

    # ---- the config's rollouts ---------------------------------------------

    def targets(self) -> tuple[RolloutTarget, ...]:
        """The rollouts of the active config (computed once per config)."""
        active = self.follower.active
        config = active.config if active is not None else None
        cached, targets = self._targets_of
        if cached is not config:
            targets = rollout_targets(config) if config is not None else ()
            self._targets_of = (config, targets)
        return targets

    def find(self, name: str) -> RolloutTarget:
        """The rollout `name` (`route/rule`), or a route's only rollout by the route's name."""
        targets = self.targets()
        for t in targets:
            if t.name == name:
                return t
        of_route = [t for t in targets if t.route == name]
        if len(of_route) == 1:
            return of_route[0]
        if of_route:
            names = ", ".join(t.name for t in of_route)
            raise UnknownRollout(f"route {name} has several rollouts; name one of: {names}")
        known = ", ".join(t.name for t in targets) or "none"
        raise UnknownRollout(f"no rollout named {name} (rollouts: {known})")

    def applied_weights(self) -> Mapping[str, float]:
        return self.follower.rollout_weights

    def status(self, target: RolloutTarget) -> RolloutStatus:
        return effective(target, self.states.get(target.name))

    def poll_s(self) -> float:
        if self._poll_s is not None:
            return self._poll_s
        holds = [s.hold_s for t in self.targets() for s in t.spec.steps]
        return min(MAX_POLL_S, max(MIN_POLL_S, min(holds, default=MAX_POLL_S) / 4))

    # ---- lifecycle ----------------------------------------------------------

    async def start(self) -> None:
        """Read the stored statuses once, so the first table already carries their weights."""
        await self.sync(drive=False)

    async def run(self) -> None:
        """Follow (and drive) until cancelled."""
        while True:
            await asyncio.sleep(self.poll_s())
            try:
                await self.sync()
            except Exception:
                log.exception("rollout round failed; keeping the current weights")

    async def close(self) -> None:
        if self.registry is not None:
            with contextlib.suppress(Exception):
                await self.registry.close()
            self.registry = None

    def _registry(self) -> Registry | None:
        active = self.follower.active
        if self.registry is None and active is not None and self.targets():
            self.registry = self._open_registry(active.config)
        return self.registry

    # ---- one round ----------------------------------------------------------

    async def sync(self, *, drive: bool = True) -> None:
        """Read the stored statuses, hand them over, and drive when this process may."""
        targets = self.targets()
        registry = self._registry()
        if not targets or registry is None:
            self.driving = False
            return
        try:
            entries = await registry.list_state(ROLLOUTS_PREFIX)
        except RegistryError as exc:
            self._down(exc)
            return
        self._up()
        states: dict[str, RolloutStatus] = {}
        versions: dict[str, int] = {}
        for key, entry in entries.items():
            try:
                states[name_of_key(key)] = decode_status(entry.value)
            except RolloutRecordError as exc:
                log.warning(
                    "unreadable rollout status skipped", extra={"key": key, "error": str(exc)}
                )
            versions[name_of_key(key)] = entry.version
        self.states, self.versions = states, versions
        self.follower.on_rollouts(states)
        if drive and self.measure is not None:
            try:
                await self._drive(registry, targets)
            except RegistryError as exc:
                self._down(exc)

    async def _drive(self, registry: Registry, targets: tuple[RolloutTarget, ...]) -> None:
        now = self._clock()
        entry = await registry.read_state(DRIVER_KEY)
        current: DriverLease | None = None
        if entry is not None:
            with contextlib.suppress(RolloutRecordError):
                current = decode_lease(entry.value)
        outcome = claim(current, self.identity, now, self.lease_ttl_s)
        drives = outcome.drives
        if outcome.write is not None:
            try:
                await registry.write_state(
                    DRIVER_KEY,
                    encode_lease(outcome.write),
                    version=entry.version if entry is not None else 0,
                )
            except VersionConflict:
                drives = False
        if drives and not self.driving:
            log.info("driving rollouts", extra={"identity": self.identity})
        self.driving = drives
        self.driver = self.identity if drives else (current.holder if current else None)
        if not drives:
            self._baselines.clear()
            self.windows.clear()
            return
        assert self.measure is not None
        counters = await self.measure()
        changed = False
        for target in targets:
            changed |= await self._step(registry, target, counters, now)
        if changed:
            self.follower.on_rollouts(self.states)

    async def _step(
        self, registry: Registry, target: RolloutTarget, counters: Counters, now: float
    ) -> bool:
        """Judge one rollout; True when its status changed and was stored."""
        status = self.status(target)
        sample = sample_of(counters, target.route, target.canary, now)
        base = self._baselines.get(target.name)
        if base is None or base[0] != status.since:
            base = self._baselines[target.name] = (status.since, sample)
        current = window(base[1], sample)
        self.windows[target.name] = current
        new = tick(status, target.spec, now, current)
        if new == status:
            return False
        try:
            await registry.write_state(
                rollout_key(target.name),
                encode_status(new),
                version=self.versions.get(target.name, 0),
            )
        except VersionConflict:
            return False
        self._stored(target, status, new, sample)
        return True

    def _stored(
        self,
        target: RolloutTarget,
        old: RolloutStatus,
        new: RolloutStatus,
        sample: Sample | None = None,
    ) -> None:
        self.states[target.name] = new
        self.versions.pop(target.name, None)  # unknown until the next read
        if sample is not None:
            self._baselines[target.name] = (new.since, sample)
        log.info(
            "rollout " + new.phase.value,
            extra={
                "rollout": target.name,
                "canary": target.canary,
                "from_phase": old.phase.value,
                "phase": new.phase.value,
                "step": new.step,
                "weight": new.weight,
                "reason": new.reason,
            },
        )

    # ---- operators ------------------------------------------------------------

    async def command(self, name: str, cmd: Command) -> tuple[RolloutTarget, RolloutStatus]:
        """Apply an operator's command; raises `UnknownRollout`, `CommandRefused`,
        `RegistryError` (unreachable, or lost `COMMAND_ATTEMPTS` races in a row)."""
        target = self.find(name)
        registry = self._registry()
        if registry is None:
            raise RegistryError("no registry is open")
        key = rollout_key(target.name)
        for _ in range(COMMAND_ATTEMPTS):
            entry = await registry.read_state(key)
            stored = None
            if entry is not None:
                with contextlib.suppress(RolloutRecordError):
                    stored = decode_status(entry.value)
            status = effective(target, stored)
            new = command(status, target.spec, cmd, self._clock())
            if new == status:
                return target, status
            try:
                await registry.write_state(
                    key, encode_status(new), version=entry.version if entry is not None else 0
                )
            except VersionConflict:
                continue
            self._stored(target, status, new)
            self.follower.on_rollouts(self.states)
            return target, new
        raise RegistryError(f"{key} kept changing under {cmd.value}; try again")

    # ---- health -----------------------------------------------------------------

    def _down(self, exc: BaseException) -> None:
        if self.up:
            log.warning(
                "rollout state unreachable; keeping the current weights",
                extra={"error": describe_error(exc)},
            )
        self.up, self.error, self.driving = False, describe_error(exc), False

    def _up(self) -> None:
        if not self.up:
            log.info("rollout state reachable again")
        self.up, self.error = True, None
