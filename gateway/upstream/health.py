"""Active health checking as a sans-I/O state machine: when to probe whom, and verdicts.

Theory of operation. Each endpoint of a backend with a `healthCheck` block
is a `Target` with a `ProbeSpec` (what to send where) and a `Health`
(UNKNOWN, HEALTHY, UNHEALTHY). `due(now)` hands out the probes whose time
came (a heap keyed on the next probe time, so a tick costs O(due · log n),
not O(n)); the driver runs them and reports each with `result(key, passed,
detail, now)`. `RULES` says, as data, what a result does: from UNKNOWN the
first result decides at once (a new endpoint is trusted until a probe says
otherwise, and a dead one is known dead after one probe, not three); from
HEALTHY `unhealthyThreshold` failures in a row make it UNHEALTHY; from
UNHEALTHY `healthyThreshold` passes in a row make it HEALTHY; a result
agreeing with the status resets the opposite run.

Spread: a target's first probe is at a uniformly random point of its first
interval, and every later one is `interval` (or `unhealthyInterval` while
not HEALTHY or after a failed probe, default min(interval, 1 s)) away, moved by up to
`jitterPercent`, so probes of thousands of endpoints never synchronise.
Only a status change is returned (`Transition`): the driver logs and counts
those, never a probe. Clock and randomness are injected (`now`, `rng`).
"""

from __future__ import annotations

import enum
import heapq
import json
from collections.abc import Iterable
from dataclasses import dataclass
from random import Random
from typing import Final

from gateway.config.model import HealthCheck
from gateway.routing.endpoints import Endpoint


class Health(enum.Enum):
    UNKNOWN = "unknown"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"


class ProbeKind(enum.Enum):
    HTTP = "http"
    TCP = "tcp"
    KUBE_PROXY = "kube-proxy"
    """kube-proxy's healthCheckNodePort `/healthz` (externalTrafficPolicy Local)."""
    HTTP_ALIVE = "http-alive"
    """Any HTTP answer passes: the readmission probe of an HTTP backend without a
    health check (the server answers at all; what it answers is for the requests)."""


RULES: Final[dict[tuple[Health, bool], tuple[Health, str | None]]] = {
    # (status, probe passed): (status it moves to, threshold the run must reach; None: at once)
    (Health.UNKNOWN, True): (Health.HEALTHY, None),
    (Health.UNKNOWN, False): (Health.UNHEALTHY, None),
    (Health.HEALTHY, True): (Health.HEALTHY, None),
    (Health.HEALTHY, False): (Health.UNHEALTHY, "unhealthy_threshold"),
    (Health.UNHEALTHY, True): (Health.HEALTHY, "healthy_threshold"),
    (Health.UNHEALTHY, False): (Health.UNHEALTHY, None),
}

UNHEALTHY_INTERVAL_CAP_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class ProbeSpec:
    """One probe: connect to address:port; for HTTP kinds, GET `path` with `host`."""

    kind: ProbeKind
    address: str
    port: int
    path: str = "/healthz"
    host: str = ""
    expected: tuple[int, ...] = (200,)


@dataclass(frozen=True, slots=True)
class Transition:
    """An endpoint's health changed; `detail` is the last probe's reason."""

    key: str
    backend: str
    old: Health
    new: Health
    detail: str


class Target:
    """What the checker knows about one endpoint."""

    __slots__ = (
        "backend",
        "detail",
        "due_at",
        "failures",
        "in_flight",
        "key",
        "passes",
        "settings",
        "spec",
        "status",
    )

    def __init__(self, key: str, backend: str, spec: ProbeSpec, settings: HealthCheck) -> None:
        self.key = key
        self.backend = backend
        self.spec = spec
        self.settings = settings
        self.status = Health.UNKNOWN
        self.passes = 0
        self.failures = 0
        self.due_at = 0.0
        self.in_flight = False
        self.detail = ""


def probe_spec(endpoint: Endpoint, check: HealthCheck) -> ProbeSpec:
    """How `check` probes `endpoint` (kube-proxy's port when the record publishes one)."""
    if check.use_health_check_node_port and endpoint.health_check_port:
        return ProbeSpec(ProbeKind.KUBE_PROXY, endpoint.address, endpoint.health_check_port)
    port = check.port or endpoint.port
    if check.protocol == "tcp":
        return ProbeSpec(ProbeKind.TCP, endpoint.address, port)
    host = check.host or (f"[{endpoint.address}]" if ":" in endpoint.address else endpoint.address)
    return ProbeSpec(
        ProbeKind.HTTP, endpoint.address, port, check.path, host, check.expected_statuses
    )


def judge_http(spec: ProbeSpec, status: int, body: bytes) -> tuple[bool, str]:
    """Whether an HTTP probe's answer passes, and why (kube-proxy: localEndpoints > 0)."""
    if spec.kind is ProbeKind.KUBE_PROXY:
        if status != 200:
            return False, f"kube-proxy healthz {status}"
        try:
            local = int(json.loads(body or b"{}").get("localEndpoints", 0))
        except (ValueError, AttributeError, TypeError):
            return False, "kube-proxy healthz: unreadable body"
        if local <= 0:
            return False, "kube-proxy healthz: no local endpoints"
        return True, f"kube-proxy healthz: {local} local endpoints"
    if spec.kind is ProbeKind.HTTP_ALIVE or status in spec.expected:
        return True, f"status {status}"
    return False, f"status {status} not in {list(spec.expected)}"


def next_interval_s(
    settings: HealthCheck, status: Health, rng: Random, failing: bool = False
) -> float:
    """The gap to a target's next probe: faster while not healthy or failing, jittered.

    `failing` (the last probe failed) takes the fast interval too: a healthy
    endpoint that failed once is confirmed dead in `unhealthyInterval`, not in
    another full interval while users' requests find out instead.
    """
    interval = settings.interval_s
    if status is not Health.HEALTHY or failing:
        fast = settings.unhealthy_interval_s
        interval = fast if fast is not None else min(interval, UNHEALTHY_INTERVAL_CAP_S)
    jitter = settings.jitter_percent / 100.0
    return max(0.001, interval * (1.0 + rng.uniform(-jitter, jitter)))


class HealthChecker:
    """Targets, their schedule and their health (module docstring)."""

    __slots__ = ("_heap", "_seq", "rng", "targets")

    def __init__(self, rng: Random) -> None:
        self.rng = rng
        self.targets: dict[str, Target] = {}
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0

    def sync(self, wanted: Iterable[tuple[str, str, ProbeSpec, HealthCheck]], now: float) -> None:
        """Make the targets exactly these (key, backend, spec, settings); kept ones keep status."""
        wanted = list(wanted)
        keep = {key for key, _, _, _ in wanted}
        self.update(wanted, [k for k in self.targets if k not in keep], now)

    def update(
        self,
        add: Iterable[tuple[str, str, ProbeSpec, HealthCheck]],
        remove: Iterable[str],
        now: float,
    ) -> None:
        """Add or refresh targets (status of known ones stays), then drop `remove`.

        The driver calls this per changed backend, so a registry change that
        touches one backend of thousands costs that backend's endpoints only.
        """
        for key in remove:
            self.targets.pop(key, None)
        for key, backend, spec, settings in add:
            target = self.targets.get(key)
            if target is None:
                target = self.targets[key] = Target(key, backend, spec, settings)
                self._schedule(target, now + self.rng.uniform(0.0, settings.interval_s))
            else:
                target.backend, target.spec, target.settings = backend, spec, settings

    def _schedule(self, target: Target, at: float) -> None:
        target.due_at = at
        self._seq += 1
        heapq.heappush(self._heap, (at, self._seq, target.key))

    def respread(self, now: float) -> None:
        """Schedule every target's next probe anew, at a random point of its interval
        (a worker that followed another's verdicts starts probing: no burst)."""
        for target in self.targets.values():
            if not target.in_flight:
                self._schedule(target, now + self.rng.uniform(0.0, target.settings.interval_s))

    def next_due(self) -> float | None:
        """When the earliest scheduled probe is due (None: nothing scheduled)."""
        heap = self._heap
        while heap:
            at, _, key = heap[0]
            target = self.targets.get(key)
            if target is not None and target.due_at == at and not target.in_flight:
                return at
            heapq.heappop(heap)
        return None

    def due(self, now: float) -> list[Target]:
        """Targets whose probe is due; each is in flight until its `result`."""
        out: list[Target] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            at, _, key = heapq.heappop(heap)
            target = self.targets.get(key)
            if target is None or target.due_at != at or target.in_flight:
                continue  # removed, or rescheduled since
            target.in_flight = True
            out.append(target)
        return out

    def result(self, key: str, passed: bool, detail: str, now: float) -> Transition | None:
        """Apply one probe's verdict (`RULES`); schedule the next probe."""
        target = self.targets.get(key)
        if target is None:
            return None
        target.in_flight = False
        target.detail = detail
        if passed:
            target.passes += 1
            target.failures = 0
        else:
            target.failures += 1
            target.passes = 0
        old = target.status
        new, threshold = RULES[(old, passed)]
        changed: Transition | None = None
        if new is not old:
            run = target.passes if passed else target.failures
            if threshold is None or run >= getattr(target.settings, threshold):
                target.status = new
                changed = Transition(key, target.backend, old, new, detail)
        gap = next_interval_s(target.settings, target.status, self.rng, target.failures > 0)
        self._schedule(target, now + gap)
        return changed

    def unhealthy(self) -> list[str]:
        return [k for k, t in self.targets.items() if t.status is Health.UNHEALTHY]
