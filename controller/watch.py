"""List+watch of the Kubernetes resources the controller reads: machinery, no business logic.

Theory of operation. For each watched kind one `KindWatcher` runs in its own
thread, because the official `kubernetes` client is blocking (urllib3): a
watch stream is a long HTTP response read line by line, and reading it on the
event loop would stall the admin server and the registry keepalives. The
thread hands every item to the loop with `call_soon_threadsafe`; the cache
(controller/cache.py) is touched only on the loop.

A cycle lists the kind (`Reset`: every object, and the list's
resourceVersion) and then watches from that resourceVersion with
`allowWatchBookmarks=true`. Each event moves the resourceVersion forward;
a BOOKMARK event carries no object change, only a newer resourceVersion, so
that a reconnect after a quiet hour does not resume from a version the
apiserver has already forgotten. The apiserver ends a watch after
`timeoutSeconds` (a few minutes, randomised so replicas do not reconnect in
step); we then watch again from the last resourceVersion without listing.

Why relist on 410 Gone: the apiserver keeps only a window of history (the
watch cache, then etcd's compaction). If we ask for events after a
resourceVersion older than that window, it cannot tell us what we missed and
answers 410 Gone, either as the HTTP status of the watch request or as an
ERROR event carrying a Status with code 410 inside an open stream. Resuming
is then impossible; the only consistent state is a fresh list, which replaces
the cache's view of the kind wholesale (objects deleted while we were away
disappear because they are absent from the list, not because we saw a
DELETED event). So a 410 drops the resourceVersion and the next cycle lists.

Every other failure (connection refused, reset, timeout, 5xx, 429) is
transient: the cycle is retried with exponential backoff and jitter
(tenacity), 0.2 s doubling to 10 s, until it succeeds or the watcher stops.
The first failure reports `Connectivity(up=False)` and the next successful
list or watch `Connectivity(up=True)`, so the controller can log once per
state change and keep publishing what it last derived. A kind marked
optional (ServiceExport, a CRD that may not be installed) answering 404 is
reported as an empty list and tried again every `absent_retry_s`.
"""

from __future__ import annotations

import http.client
import json
import logging
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import tenacity
import urllib3

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WatchedKind:
    """A resource to list and watch cluster-wide."""

    group: str
    version: str
    plural: str
    optional: bool = False

    def __str__(self) -> str:
        return f"{self.group or 'core'}/{self.version}/{self.plural}"


SERVICES = WatchedKind("", "v1", "services")
ENDPOINT_SLICES = WatchedKind("discovery.k8s.io", "v1", "endpointslices")
NODES = WatchedKind("", "v1", "nodes")
SERVICE_EXPORTS = WatchedKind("multicluster.x-k8s.io", "v1alpha1", "serviceexports", optional=True)
WATCHED_KINDS = (SERVICES, ENDPOINT_SLICES, NODES, SERVICE_EXPORTS)

WATCH_API_CALLS = tuple(
    (kind.group, kind.plural, verb) for kind in WATCHED_KINDS for verb in ("list", "watch")
)
"""The calls the watchers make (group, resource, verb); RBAC grants exactly these."""


@dataclass(frozen=True, slots=True)
class Reset:
    """A fresh list: `objects` replace everything known of `kind`."""

    kind: WatchedKind
    objects: tuple[dict[str, Any], ...]
    resource_version: str


@dataclass(frozen=True, slots=True)
class ObjectEvent:
    """One ADDED, MODIFIED or DELETED object of `kind`."""

    kind: WatchedKind
    type: str
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Connectivity:
    """Whether the apiserver answered `kind`'s last request."""

    kind: WatchedKind
    up: bool
    error: str = ""


WatchItem = Reset | ObjectEvent | Connectivity


class Gone(Exception):
    """410: the resourceVersion fell out of the apiserver's history; relist."""


class Absent(Exception):
    """404 on an optional kind: the CRD is not installed."""


@dataclass(frozen=True, slots=True)
class WatchTiming:
    """Timeouts and backoff of the watch loops."""

    watch_timeout_s: int = 300
    """Server-side timeoutSeconds of one watch request (randomised up to 2x)."""
    read_timeout_s: float = 90.0
    """Client-side read timeout. A watch silent this long (no event, no bookmark) is
    ended and resumed from its resourceVersion, which also finds a dead connection."""
    connect_timeout_s: float = 5.0
    backoff_initial_s: float = 0.2
    backoff_max_s: float = 10.0
    absent_retry_s: float = 60.0
    """How often an optional kind that answered 404 is listed again."""


_TRANSIENT = (
    urllib3.exceptions.HTTPError,
    http.client.HTTPException,
    OSError,
    ValueError,
)


class KindWatcher:
    """List+watch one kind in a thread until `stop()`; items go to `sink` (thread-safe)."""

    def __init__(
        self,
        api_client: Any,
        kind: WatchedKind,
        sink: Callable[[WatchItem], None],
        timing: WatchTiming = WatchTiming(),
    ) -> None:
        self._api = api_client
        self.kind = kind
        self._sink = sink
        self._timing = timing
        self._stopped = threading.Event()
        self._response: Any = None
        self._resource_version: str | None = None
        self._up: bool | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.run_blocking, name=f"watch-{self.kind.plural}", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end and cut its open stream so it notices now."""
        self._stopped.set()
        response = self._response
        if response is not None:
            try:
                response.shutdown()
            except Exception as exc:
                log.debug("closing the watch stream failed", extra={"error": repr(exc)})

    @property
    def resource_version(self) -> str | None:
        """Where the next watch resumes (None: the next cycle lists)."""
        return self._resource_version

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def list_once(self) -> None:
        """One list, no watch (`portway controller --print`); errors propagate."""
        try:
            self._list()
        except Absent:
            self._sink(Reset(self.kind, (), ""))

    def join(self, timeout_s: float = 5.0) -> None:
        if self._thread is not None:
            self._thread.join(timeout_s)

    def run_blocking(self) -> None:
        t = self._timing
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((*_TRANSIENT, _ServerError)),
            wait=tenacity.wait_exponential_jitter(
                initial=t.backoff_initial_s, max=t.backoff_max_s, jitter=t.backoff_initial_s
            ),
            stop=lambda _state: self._stopped.is_set(),
            sleep=self._sleep,
            before_sleep=self._failed,
            reraise=True,
        )
        while not self._stopped.is_set():
            try:
                retrying(self._cycle)
            except Exception as exc:
                if self._stopped.is_set():
                    return
                log.error(
                    "watch loop failed unexpectedly; restarting",
                    extra={"kind": str(self.kind), "error": repr(exc)},
                )
                self._stopped.wait(t.backoff_max_s)

    def _sleep(self, seconds: float) -> None:
        self._stopped.wait(seconds)

    def _cycle(self) -> None:
        """List if needed, then watch until the stream ends; 410 clears the version."""
        try:
            if self._resource_version is None:
                self._resource_version = self._list()
            self._watch()
        except Gone:
            log.info(
                "resourceVersion too old (410 Gone); relisting",
                extra={"kind": str(self.kind), "resource_version": self._resource_version},
            )
            self._resource_version = None
        except Absent:
            self._resource_version = None
            self._connected(True)
            self._sink(Reset(self.kind, (), ""))
            self._stopped.wait(self._timing.absent_retry_s)

    def _failed(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        self._connected(False, f"{type(exc).__name__}: {exc}")

    def _connected(self, up: bool, error: str = "") -> None:
        if up != self._up:
            self._up = up
            self._sink(Connectivity(self.kind, up, error))

    def _request(self, read_timeout_s: float, **query: Any) -> Any:
        """One list or watch request; the raw urllib3 response (2xx) or ApiException."""
        return _list_function(self._api, self.kind)(
            _preload_content=False,
            _request_timeout=(self._timing.connect_timeout_s, read_timeout_s),
            **query,
        )

    def _list(self) -> str:
        from kubernetes.client.exceptions import ApiException

        try:
            response = self._request(self._timing.read_timeout_s)
        except ApiException as exc:
            raise _classify(exc, self.kind) from None
        body = json.loads(response.data)
        version = str((body.get("metadata") or {}).get("resourceVersion") or "")
        self._connected(True)
        self._sink(Reset(self.kind, tuple(body.get("items") or ()), version))
        return version

    def _watch(self) -> None:
        from kubernetes.client.exceptions import ApiException

        t = self._timing
        query: dict[str, Any] = {
            "watch": True,
            "allow_watch_bookmarks": True,
            "timeout_seconds": int(t.watch_timeout_s * (1 + random.random())),
        }
        if self._resource_version:
            query["resource_version"] = self._resource_version
        try:
            self._response = self._request(t.read_timeout_s, **query)
        except ApiException as exc:
            raise _classify(exc, self.kind) from None
        self._connected(True)
        try:
            for line in _lines(self._response):
                if self._stopped.is_set():
                    return
                self._handle(json.loads(line))
        except urllib3.exceptions.ReadTimeoutError:
            log.debug(
                "watch stream silent for the read timeout; resuming", extra={"kind": str(self.kind)}
            )
        finally:
            response, self._response = self._response, None
            response.release_conn()

    def _handle(self, event: dict[str, Any]) -> None:
        kind = event.get("type")
        obj = event.get("object") or {}
        if kind == "ERROR":
            code = obj.get("code")
            if code == 410:
                raise Gone(obj.get("message", ""))
            raise _ServerError(f"watch error {code}: {obj.get('message', '')}")
        version = (obj.get("metadata") or {}).get("resourceVersion")
        if version:
            self._resource_version = str(version)
        if kind in ("ADDED", "MODIFIED", "DELETED"):
            self._sink(ObjectEvent(self.kind, kind, obj))


class _ServerError(Exception):
    """An apiserver error worth retrying (5xx, 429, an ERROR event other than 410)."""


def _classify(exc: Exception, kind: WatchedKind) -> Exception:
    status = getattr(exc, "status", 0) or 0
    if status == 410:
        return Gone(str(exc))
    if status == 404 and kind.optional:
        return Absent(str(kind))
    if status == 0 or status >= 500 or status == 429:
        return _ServerError(f"{status}: {getattr(exc, 'reason', exc)}")
    return exc


def _list_function(api_client: Any, kind: WatchedKind) -> Callable[..., Any]:
    """The official client's cluster-wide list call for `kind` (watch=True makes it a watch)."""
    from kubernetes import client

    if kind == SERVICES:
        return client.CoreV1Api(api_client).list_service_for_all_namespaces
    if kind == NODES:
        return client.CoreV1Api(api_client).list_node
    if kind == ENDPOINT_SLICES:
        return client.DiscoveryV1Api(api_client).list_endpoint_slice_for_all_namespaces
    custom = client.CustomObjectsApi(api_client)

    def list_custom(**kwargs: Any) -> Any:
        return custom.list_cluster_custom_object(kind.group, kind.version, kind.plural, **kwargs)

    return list_custom


def _lines(response: Any) -> Iterator[bytes]:
    """Complete lines of a streamed response, however the chunks fall."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.strip():
                yield line
    if buffer.strip():
        yield buffer
