"""Passive outlier detection: eject endpoints whose answers say they are broken.

Theory of operation. Every finished try reports one `Outcome` for its
endpoint: a success (any answer below 500), a server error (a 5xx other than
502/503/504) or a gateway failure (connect failure, reset, timeout, 502, 503,
504). `COUNTING` says, as data, what each outcome does to the endpoint's two
run counters; a run reaching its threshold (`consecutive5xx`,
`consecutiveGatewayErrors`) ejects the endpoint at once, without waiting for
the interval. Every `interval` a sweep (`tick`) also ejects success-rate
outliers (Envoy's rule: among endpoints with at least `SR_REQUEST_VOLUME`
requests in the interval, when at least `SR_MIN_HOSTS` qualify, those below
mean − `SR_STDEV_FACTOR` × stdev), lets endpoints whose ejection ran out
back in, and forgets one past ejection of each endpoint that is in rotation
(so the multiplier decays, as in Envoy).

An ejection lasts `baseEjectionTime` × the number of times the endpoint was
ejected (capped at `maxEjectionTime`). With `probe_readmission` (the
runtime's choice) an ejection that ran out does not readmit the endpoint:
the key is handed to the driver (`take_checks`), which probes it first and
reports back (`readmit`): a pass lets it back, a failure ejects it again
until the next `interval` (no growth: a probe costs users nothing, and a
longer wait would only delay noticing the recovery). So a black-holed node is never
re-tried with users' requests, only with a connect the users do not wait on.

Two guards keep detection from emptying a backend: at most
`maxEjectionPercent` of its endpoints are ejected at once (at least one
ejection is always allowed), and the last endpoint of a backend that may
take traffic is never ejected.

What a sweep costs follows activity, not the fleet: it resets the
interval counts of the endpoints that answered since the last sweep (the
hot path lists an endpoint in `active` with its first outcome of an
interval), judges success rates only in backends with a failure in the
interval (no failure, no outlier), decays only endpoints with past
ejections, and finds ejections that ran out in a heap ordered by their
end. The sweep interval is the shortest of the backends' `interval`
(`follow`, once per config), not a walk of every backend per sweep.

The hot path pays one dict lookup, two integer stores and one test per
success; the record of an endpoint is made on its first outcome and reused.
Ejections and returns are queued in `changes` for the driver to log and
count once. Pure: time comes in as `now` (monotonic seconds), state is the
routing `EndpointState` the caller passes.
"""

from __future__ import annotations

import enum
import heapq
import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from gateway.config.model import OutlierDetection
from gateway.routing.backend import CompiledBackend
from gateway.routing.endpoints import EndpointState


class Outcome(enum.IntEnum):
    SUCCESS = 0
    SERVER_ERROR = 1
    GATEWAY_FAILURE = 2


class Reason(enum.Enum):
    CONSECUTIVE_5XX = "consecutive_5xx"
    CONSECUTIVE_GATEWAY_FAILURE = "consecutive_gateway_failure"
    SUCCESS_RATE = "success_rate"


COUNTING: Final[dict[Outcome, tuple[bool, bool]]] = {
    # outcome: (extends the 5xx run, extends the gateway-failure run); False resets the run
    Outcome.SUCCESS: (False, False),
    Outcome.SERVER_ERROR: (True, False),
    Outcome.GATEWAY_FAILURE: (True, True),
}

SR_MIN_HOSTS: Final = 3
SR_REQUEST_VOLUME: Final = 20
SR_STDEV_FACTOR: Final = 1.9
DEFAULT: Final = OutlierDetection()


def status_outcome(status: int) -> Outcome:
    """The outcome an upstream answer with this status counts as."""
    if status < 500:
        return Outcome.SUCCESS
    if status in (502, 503, 504):
        return Outcome.GATEWAY_FAILURE
    return Outcome.SERVER_ERROR


class EndpointRecord:
    """Counters of one endpoint: the two runs, this interval's answers, past ejections."""

    __slots__ = ("ejections", "failed", "ok", "run_5xx", "run_gateway")

    def __init__(self) -> None:
        self.run_5xx = 0
        self.run_gateway = 0
        self.ok = 0
        self.failed = 0
        self.ejections = 0


@dataclass(frozen=True, slots=True)
class Change:
    """An endpoint left (`ejected`) or re-entered rotation; `until` is monotonic seconds."""

    key: str
    backend: str
    ejected: bool
    reason: str
    until: float = 0.0


def ejection_time_s(settings: OutlierDetection, ejections: int) -> float:
    """How long the `ejections`-th ejection lasts: base × n, capped."""
    return min(settings.base_ejection_time_s * max(1, ejections), settings.max_ejection_time_s)


def may_eject(backend: CompiledBackend, key: str, state: EndpointState, max_percent: float) -> bool:
    """Whether ejecting `key` keeps the backend within its guards (module docstring)."""
    endpoints = backend.endpoints
    ejected = 0
    others_available = False
    for e in endpoints:
        if e.key in state.ejected:
            ejected += 1
        elif e.key != key and e.ready and state.available(e.key):
            others_available = True
    if not others_available:
        return False
    allowed = max(1, math.floor(len(endpoints) * max_percent / 100.0 + 1e-9))
    return ejected < allowed


class OutlierDetector:
    """The detector of one worker, over every backend of its routing table."""

    __slots__ = (
        "active",
        "changes",
        "checking",
        "checks",
        "decaying",
        "ejected_by",
        "expiries",
        "failing",
        "interval_s",
        "next_sweep",
        "probe_readmission",
        "records",
    )

    def __init__(self, *, probe_readmission: bool = False) -> None:
        self.records: dict[str, EndpointRecord] = {}
        self.active: list[EndpointRecord] = []
        """Records with an outcome this interval (listed by their first): the sweep resets these."""
        self.expiries: list[tuple[float, str]] = []
        """Heap of (end, key) of ejections made here; an entry whose end no longer matches
        `EndpointState.ejected` (let back or ejected again meanwhile) is dropped when popped."""
        self.interval_s = DEFAULT.interval_s
        self.changes: list[Change] = []
        self.next_sweep = 0.0
        self.probe_readmission = probe_readmission
        self.checks: list[str] = []
        """Keys whose ejection ran out, waiting for the driver's readmission probe."""
        self.checking: set[str] = set()
        self.ejected_by: dict[str, tuple[str, OutlierDetection]] = {}
        """Key → (backend name, its settings) of the ejection in force."""
        self.failing: dict[str, CompiledBackend] = {}
        """Backends with a failure this interval: the only ones the success-rate sweep
        reads (a backend with none has no outlier), so a fleet costs what fails."""
        self.decaying: set[str] = set()
        """Keys with past ejections to forget, one per interval in rotation."""

    def follow(self, backends: Iterable[CompiledBackend]) -> None:
        """The backends of a new config: sweep at the shortest interval among them."""
        interval = DEFAULT.interval_s
        for backend in backends:
            interval = min(interval, (backend.outlier_detection or DEFAULT).interval_s)
        self.interval_s = interval

    def success(self, key: str) -> None:
        """The hot path's report of an answer below 500."""
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = EndpointRecord()
        record.run_5xx = 0
        record.run_gateway = 0
        if not record.ok and not record.failed:  # its first outcome this interval
            self.active.append(record)
        record.ok += 1

    def failure(
        self,
        backend: CompiledBackend,
        key: str,
        outcome: Outcome,
        state: EndpointState,
        now: float,
    ) -> bool:
        """Count a failed try; eject `key` when a run reached its threshold. True if ejected."""
        if outcome is Outcome.SUCCESS:
            self.success(key)
            return False
        record = self.records.get(key)
        if record is None:
            record = self.records[key] = EndpointRecord()
        extends_5xx, extends_gateway = COUNTING[outcome]
        record.run_5xx = record.run_5xx + 1 if extends_5xx else 0
        record.run_gateway = record.run_gateway + 1 if extends_gateway else 0
        if not record.failed and not record.ok:
            self.active.append(record)
        record.failed += 1
        self.failing[backend.name] = backend
        settings = backend.outlier_detection or DEFAULT
        if not settings.enabled or key in state.ejected:
            return False
        if record.run_gateway >= settings.consecutive_gateway_errors:
            reason = Reason.CONSECUTIVE_GATEWAY_FAILURE
        elif record.run_5xx >= settings.consecutive_5xx:
            reason = Reason.CONSECUTIVE_5XX
        else:
            return False
        return self._eject(backend, key, record, settings, state, now, reason)

    def _eject(
        self,
        backend: CompiledBackend,
        key: str,
        record: EndpointRecord,
        settings: OutlierDetection,
        state: EndpointState,
        now: float,
        reason: Reason,
    ) -> bool:
        if not may_eject(backend, key, state, settings.max_ejection_percent):
            return False
        record.ejections += 1
        self.decaying.add(key)
        record.run_5xx = record.run_gateway = 0
        until = now + ejection_time_s(settings, record.ejections)
        self._set_ejected(key, until, state)
        self.ejected_by[key] = (backend.name, settings)
        self.changes.append(Change(key, backend.name, True, reason.value, until))
        return True

    def _set_ejected(self, key: str, until: float, state: EndpointState) -> None:
        state.eject(key, until)
        heapq.heappush(self.expiries, (until, key))

    def tick(self, state: EndpointState, now: float) -> None:
        """Return endpoints whose ejection ran out; every interval, the success-rate sweep."""
        if now >= self.next_sweep:
            self._sweep(state, now)
        expiries = self.expiries
        while expiries and expiries[0][0] <= now:
            until, key = heapq.heappop(expiries)
            if state.ejected.get(key) != until or key in self.checking:
                continue  # let back or ejected anew meanwhile, or its probe is under way
            if self.probe_readmission:
                self.checking.add(key)
                self.checks.append(key)
            else:
                self._return(key, state, "ejection_expired")

    def _sweep(self, state: EndpointState, now: float) -> None:
        for backend in self.failing.values():  # no failure in the interval: no outlier
            settings = backend.outlier_detection or DEFAULT
            if settings.enabled:
                self._sweep_success_rate(backend, settings, state, now)
        self.failing.clear()
        active, self.active = self.active, []
        for answered in active:
            answered.ok = answered.failed = 0
        for key in list(self.decaying):
            if key not in state.ejected:
                record = self.records.get(key)
                if record is None or record.ejections <= 1:
                    self.decaying.discard(key)
                if record is not None and record.ejections:
                    record.ejections -= 1
        self.next_sweep = now + self.interval_s

    def _sweep_success_rate(
        self, backend: CompiledBackend, settings: OutlierDetection, state: EndpointState, now: float
    ) -> None:
        rates: list[tuple[str, float]] = []
        for e in backend.endpoints:
            record = self.records.get(e.key)
            if record is None or e.key in state.ejected:
                continue
            volume = record.ok + record.failed
            if volume >= SR_REQUEST_VOLUME:
                rates.append((e.key, record.ok / volume))
        if len(rates) < SR_MIN_HOSTS:
            return
        mean = sum(r for _, r in rates) / len(rates)
        stdev = math.sqrt(sum((r - mean) ** 2 for _, r in rates) / len(rates))
        floor = mean - SR_STDEV_FACTOR * stdev
        for key, rate in rates:
            if rate < floor:
                record = self.records[key]
                self._eject(backend, key, record, settings, state, now, Reason.SUCCESS_RATE)

    def _return(self, key: str, state: EndpointState, reason: str) -> None:
        state.uneject(key)
        backend, _ = self.ejected_by.pop(key, ("", DEFAULT))
        self.changes.append(Change(key, backend, False, reason))

    def clear(self, key: str, state: EndpointState, reason: str) -> None:
        """Let `key` back now: fresher evidence than the timer says it recovered."""
        self.checking.discard(key)
        if key in state.ejected:
            self._return(key, state, reason)

    def take_checks(self) -> list[str]:
        """Keys to probe before readmission (`probe_readmission`); each is answered by `readmit`."""
        checks, self.checks = self.checks, []
        return checks

    def readmit(self, key: str, passed: bool, state: EndpointState, now: float) -> None:
        """The readmission probe of `key`: back in rotation, or ejected again for longer."""
        self.checking.discard(key)
        if key not in state.ejected:
            return  # let back meanwhile (a passing health check) or gone from the table
        if passed:
            self._return(key, state, "readmission_probe_passed")
            return
        backend, settings = self.ejected_by.get(key, ("", DEFAULT))
        until = now + settings.interval_s  # a probe costs users nothing: try again soon
        self._set_ejected(key, until, state)
        self.changes.append(Change(key, backend, True, "readmission_probe_failed", until))

    def drain_changes(self) -> list[Change]:
        """The ejections and returns since the last call (the driver logs each once)."""
        changes, self.changes = self.changes, []
        return changes

    def forget_keys(self, keys: Iterable[str]) -> None:
        """Drop what is known of endpoints that left the table."""
        for key in keys:
            self.records.pop(key, None)
            self.ejected_by.pop(key, None)
            self.checking.discard(key)
            self.decaying.discard(key)
