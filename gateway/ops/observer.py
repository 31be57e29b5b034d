"""The gateway's `RequestObserver`: metrics, access log and OpenTelemetry spans.

Two ways in. When neither the access log nor tracing is on (`detailed` is
false) and the client sent no `traceparent`, the HTTP proxy skips the
`RequestLog` and the header dict altogether: `open_request()` when the head is
parsed and `close_request(route, backend, cluster, code, duration_s)` when it
ends, one counter and one `RequestStats.record` (about 0.5 µs together).
Otherwise it calls `begin`/`upstream_headers`/`end` as below; both ways count
into `in_flight`.

Cost contract (measured in tests/gateway/test_observer.py and the report):
with tracing off, `begin` + `upstream_headers` + `end` together do a few dict
operations, one bisect and, when the access log is on, one tuple copy; no
prometheus_client call, no JSON, no syscall. With tracing off an incoming W3C
`traceparent` is still forwarded upstream unchanged (with its `tracestate`)
and its trace id fills `log.trace_id`, so logs correlate with the caller's
trace even when this gateway exports no spans.

With tracing on, `begin` extracts the caller's context and starts a SERVER
span (its trace id fills `log.trace_id`), `upstream_headers` injects this
span's context, and `end` names the span after the route, sets the route,
backend, cluster, endpoint and status attributes and ends it. Sampling is the
tracer provider's business (`portway.telemetry.setup_tracing`).
"""

from __future__ import annotations

import time
from typing import Any, Final

from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from gateway.context import RequestLog
from gateway.ops.accesslog import AccessLog
from gateway.ops.request_stats import RequestStats

_PROPAGATOR: Final = TraceContextTextMapPropagator()
_TRACEPARENT_LEN: Final = 55  # "00-" + 32 hex + "-" + 16 hex + "-" + 2 hex


class GatewayObserver:
    """Per-worker telemetry sink; touched only from the worker's event loop.

    `in_flight` is the number of begun-but-not-ended requests, which graceful
    drain waits on. Connections the TCP proxy reports only through `end`
    (no `begin`) are counted and logged but never make `in_flight` drift;
    when they carry no start time, the time of `end` is used.
    """

    __slots__ = ("_open", "_open_counted", "access_log", "stats", "tracer")

    def __init__(
        self,
        stats: RequestStats | None = None,
        *,
        access_log: AccessLog | None = None,
        tracer: Tracer | None = None,
    ) -> None:
        self.stats = stats if stats is not None else RequestStats()
        self.access_log = access_log
        self.tracer = tracer
        self._open: set[int] = set()
        self._open_counted = 0

    @property
    def in_flight(self) -> int:
        return len(self._open) + self._open_counted

    @property
    def detailed(self) -> bool:
        """Whether a request needs `begin`/`end` (access log or tracing on)."""
        return self.access_log is not None or self.tracer is not None

    def open_request(self) -> None:
        """The cheap `begin`: nothing to log or trace, only `in_flight` to keep."""
        self._open_counted += 1

    def close_request(
        self, route: str, backend: str, cluster: str, code: int, duration_s: float
    ) -> None:
        """The cheap `end`, exactly once per `open_request`: count the request."""
        self._open_counted -= 1
        self.stats.record(route, backend, cluster, code, duration_s)

    def begin(self, log: RequestLog, headers: dict[str, str]) -> Any:
        self._open.add(id(log))
        if self.tracer is None:
            parent = headers.get("traceparent")
            if parent is None:
                return None
            if len(parent) == _TRACEPARENT_LEN:
                log.trace_id = parent[3:35]
            forward = [(b"traceparent", parent.encode("latin-1"))]
            state = headers.get("tracestate")
            if state:
                forward.append((b"tracestate", state.encode("latin-1")))
            return forward
        span = self.tracer.start_span(
            log.method or "request",
            context=_PROPAGATOR.extract(headers),
            kind=SpanKind.SERVER,
            attributes={
                "http.request.method": log.method,
                "url.path": log.path,
                "server.address": log.authority,
                "client.address": log.downstream_remote_address,
                "network.protocol.version": log.protocol.rpartition("/")[2],
            },
        )
        context = span.get_span_context()
        if context.is_valid:
            log.trace_id = format(context.trace_id, "032x")
        return span

    def upstream_headers(self, token: Any) -> list[tuple[bytes, bytes]]:
        if token is None:
            return []
        if type(token) is list:
            return token
        carrier: dict[str, str] = {}
        _PROPAGATOR.inject(carrier, context=set_span_in_context(token))
        return [(k.encode("latin-1"), v.encode("latin-1")) for k, v in carrier.items()]

    def end(self, token: Any, log: RequestLog) -> None:
        self._open.discard(id(log))
        if not log.start_time:
            log.start_time = time.time()
        self.stats.record(
            log.route_name, log.backend_name, log.upstream_cluster, log.response_code, log.duration
        )
        if self.access_log is not None:
            self.access_log.write(log)
        if token is None or type(token) is list:
            return
        span = token
        if span.is_recording():
            if log.route_name:
                span.update_name(f"{log.method} {log.route_name}")
            span.set_attributes(
                {
                    "http.route": log.route_name,
                    "http.response.status_code": log.response_code,
                    "portway.backend": log.backend_name,
                    "portway.cluster": log.upstream_cluster,
                    "portway.endpoint": log.upstream_host,
                    "portway.response_flags": log.response_flags,
                    "portway.attempts": log.attempts,
                }
            )
            if log.response_code >= 500 or log.response_code == 0:
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    def upstream_connect_failed(self, cluster: str, endpoint: str) -> None:
        self.stats.connect_failed(cluster, endpoint)
