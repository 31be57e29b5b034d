"""Leader election on a coordination.k8s.io/v1 Lease, so one replica publishes.

Theory of operation (client-go's leaderelection, restated): the Lease object
holds `holderIdentity`, `leaseDurationSeconds`, `acquireTime`, `renewTime`
and `leaseTransitions`. Every `retry_period_s` each candidate reads it. A
candidate never compares the holder's `renewTime` with its own wall clock
(clocks of two nodes disagree); it remembers when it last *saw the record
change* on its own monotonic clock, and treats the lease as free once the
record has stood still for `leaseDurationSeconds`, or names no holder. To
take or renew the lease it writes the whole object back with the
`resourceVersion` it read: the apiserver refuses a write based on a stale
read with 409 Conflict, so of two racing candidates exactly one wins.

The holder counts itself leader until `renew_deadline_s` after its last
successful write; past it, it steps down even if the apiserver merely went
quiet, because the others may already have taken over. A replica that stops
cleanly writes an empty holder, so the other takes over on its next retry
rather than after a whole lease duration.

`LeaderElection` is the pure part (records in, records to write out, clock
passed in); `LeaseElector` is the thin asyncio driver doing the API calls
(get/create/update leases) in a worker thread.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

log = logging.getLogger(__name__)

LEASE_API_CALLS = (
    ("coordination.k8s.io", "leases", "get"),
    ("coordination.k8s.io", "leases", "create"),
    ("coordination.k8s.io", "leases", "update"),
)
"""The Lease calls `LeaseElector` makes (RBAC must grant exactly these; see deploy/)."""


@dataclass(frozen=True, slots=True)
class ElectionSettings:
    """Timing of the election, client-go's defaults."""

    identity: str
    """This replica's name in `holderIdentity` (the pod name)."""
    lease_duration_s: float = 15.0
    """How long a silent holder keeps the lease in the others' eyes."""
    renew_deadline_s: float = 10.0
    """How long the holder keeps acting as leader without a successful renewal."""
    retry_period_s: float = 2.0
    """How often every candidate reads (and the holder renews) the lease."""

    def __post_init__(self) -> None:
        if not self.identity:
            raise ValueError("the election identity must not be empty")
        if not 0 < self.retry_period_s < self.renew_deadline_s < self.lease_duration_s:
            raise ValueError(
                "need 0 < retry_period_s < renew_deadline_s < lease_duration_s, got "
                f"{self.retry_period_s}, {self.renew_deadline_s}, {self.lease_duration_s}"
            )


@dataclass(frozen=True, slots=True)
class LeaseRecord:
    """The Lease fields the election reads and writes."""

    holder: str = ""
    duration_s: int = 15
    acquire_time: str = ""
    renew_time: str = ""
    transitions: int = 0
    resource_version: str = ""

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        return cls(
            holder=spec.get("holderIdentity") or "",
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime") or "",
            renew_time=spec.get("renewTime") or "",
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str((obj.get("metadata") or {}).get("resourceVersion") or ""),
        )

    def to_object(self, name: str, namespace: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": name, "namespace": namespace}
        if self.resource_version:
            metadata["resourceVersion"] = self.resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": metadata,
            "spec": {
                "holderIdentity": self.holder,
                "leaseDurationSeconds": self.duration_s,
                "acquireTime": self.acquire_time or None,
                "renewTime": self.renew_time or None,
                "leaseTransitions": self.transitions,
            },
        }

    def same_claim(self, other: LeaseRecord) -> bool:
        """Whether two reads show the same write (what 'the record changed' means)."""
        return (self.holder, self.renew_time, self.resource_version) == (
            other.holder,
            other.renew_time,
            other.resource_version,
        )


def micro_time(wall: datetime.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 in UTC with exactly six fractional digits."""
    return wall.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaderElection:
    """The election rules without I/O; `now` is a monotonic time in seconds."""

    def __init__(self, settings: ElectionSettings) -> None:
        self.settings = settings
        self.observed: LeaseRecord | None = None
        self.observed_at = 0.0
        self.renewed_at: float | None = None

    def observe(self, record: LeaseRecord | None, now: float) -> None:
        """Take a fresh read of the Lease (None: it does not exist)."""
        if record is None or self.observed is None or not record.same_claim(self.observed):
            self.observed_at = now
        self.observed = record

    def claim(self, now: float, wall: datetime.datetime) -> LeaseRecord | None:
        """The record to write to take or keep the lease, or None while another holds it."""
        s = self.settings
        current = self.observed
        stamp = micro_time(wall)
        duration = max(1, round(s.lease_duration_s))
        if current is None:
            return LeaseRecord(s.identity, duration, stamp, stamp, 0, "")
        if current.holder == s.identity:
            return replace(current, duration_s=duration, renew_time=stamp)
        held = bool(current.holder) and now < self.observed_at + s.lease_duration_s
        if held:
            return None
        return LeaseRecord(
            s.identity, duration, stamp, stamp, current.transitions + 1, current.resource_version
        )

    def release(self) -> LeaseRecord | None:
        """The record to write when stopping as holder: no holder, so others take over now."""
        if self.observed is None or self.observed.holder != self.settings.identity:
            return None
        return replace(self.observed, holder="", duration_s=1)

    def written(self, record: LeaseRecord, now: float) -> None:
        """The apiserver accepted `record` (with its new resourceVersion)."""
        self.observed = record
        self.observed_at = now
        self.renewed_at = now if record.holder == self.settings.identity else None

    def is_leader(self, now: float) -> bool:
        return (
            self.renewed_at is not None and now < self.renewed_at + self.settings.renew_deadline_s
        )


class LeaseConflict(Exception):
    """The write was based on a stale read (409), or the Lease was created meanwhile."""


class LeaseApi:
    """The three Lease calls over the official client, raw JSON in and out (blocking)."""

    def __init__(self, api_client: Any, name: str, namespace: str) -> None:
        from kubernetes import client

        # Any: raw JSON in and out (_preload_content=False), not the typed models
        self._api: Any = client.CoordinationV1Api(api_client)
        self.name = name
        self.namespace = namespace

    def read(self) -> LeaseRecord | None:
        from kubernetes.client.exceptions import ApiException

        try:
            resp = self._api.read_namespaced_lease(
                self.name, self.namespace, _preload_content=False, _request_timeout=5
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return LeaseRecord.from_object(json.loads(resp.data))

    def write(self, record: LeaseRecord) -> LeaseRecord:
        from kubernetes.client.exceptions import ApiException

        body = record.to_object(self.name, self.namespace)
        try:
            if record.resource_version:
                resp = self._api.replace_namespaced_lease(
                    self.name, self.namespace, body, _preload_content=False, _request_timeout=5
                )
            else:
                resp = self._api.create_namespaced_lease(
                    self.namespace, body, _preload_content=False, _request_timeout=5
                )
        except ApiException as exc:
            if exc.status in (409, 422):
                raise LeaseConflict(str(exc.reason)) from None
            raise
        return LeaseRecord.from_object(json.loads(resp.data))


class LeaseElector:
    """Runs the election forever; `on_change(leading)` is called on every flip."""

    def __init__(
        self,
        api: LeaseApi,
        settings: ElectionSettings,
        on_change: Callable[[bool], None],
        *,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        self.api = api
        self.election = LeaderElection(settings)
        self._on_change = on_change
        self._clock = clock
        self._wall = wall
        self.leading = False

    def _now(self) -> float:
        return self._clock() if self._clock is not None else asyncio.get_running_loop().time()

    async def run(self) -> None:
        try:
            while True:
                await self.step()
                await asyncio.sleep(self.election.settings.retry_period_s)
        finally:
            await self.stop()

    async def step(self) -> None:
        """One read (and, when the lease is free or ours, one write)."""
        try:
            self.election.observe(await asyncio.to_thread(self.api.read), self._now())
            claim = self.election.claim(self._now(), self._wall())
            if claim is not None:
                written = await asyncio.to_thread(self.api.write, claim)
                self.election.written(written, self._now())
        except LeaseConflict:
            log.info("lease taken by another replica first", extra={"lease": self.api.name})
        except Exception as exc:
            log.warning(
                "lease read or renewal failed",
                extra={"lease": self.api.name, "error": f"{type(exc).__name__}: {exc}"},
            )
        self._flip(self.election.is_leader(self._now()))

    def _flip(self, leading: bool) -> None:
        if leading != self.leading:
            self.leading = leading
            log.info(
                "became leader" if leading else "stopped leading",
                extra={
                    "lease": f"{self.api.namespace}/{self.api.name}",
                    "identity": self.election.settings.identity,
                },
            )
            self._on_change(leading)

    async def stop(self) -> None:
        """Step down and, if holding the lease, hand it back (empty holder)."""
        release = self.election.release()
        self._flip(False)
        if release is None:
            return
        try:
            await asyncio.shield(asyncio.to_thread(self.api.write, release))
        except Exception as exc:
            log.info("lease release failed; it expires instead", extra={"error": str(exc)})
