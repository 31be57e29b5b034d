"""The RequestObserver: metrics, trace propagation, spans; and its per-request cost."""

from __future__ import annotations

import timeit

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from gateway.context import RequestLog
from gateway.ops.observer import GatewayObserver
from portway.telemetry import setup_tracing

PARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"


def _log(code: int = 200) -> RequestLog:
    return RequestLog(
        start_time=1700000000.0,
        method="GET",
        path="/x",
        response_code=code,
        duration=0.002,
        route_name="web",
        backend_name="api",
        upstream_cluster="a",
        upstream_host="10.0.0.1:30080",
        authority="example.com",
        downstream_remote_address="127.0.0.1:5000",
    )


def _traced(ratio: float = 1.0) -> tuple[GatewayObserver, InMemorySpanExporter, object]:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        otlp_endpoint=None, service_name="gw", sample_ratio=ratio, exporter=exporter
    )
    assert provider is not None
    return GatewayObserver(tracer=provider.get_tracer("portway")), exporter, provider


def test_untraced_request_counts_and_tracks_in_flight() -> None:
    obs = GatewayObserver()
    log = _log()
    token = obs.begin(log, {})
    assert obs.in_flight == 1
    assert token is None and obs.upstream_headers(token) == []
    obs.end(token, log)
    assert obs.in_flight == 0
    assert obs.stats.requests == {("web", "api", "a", 200): 1}
    obs.upstream_connect_failed("a", "a/10.0.0.9:1")
    assert obs.stats.connect_failures == {("a", "a/10.0.0.9:1"): 1}


def test_untraced_gateway_forwards_incoming_traceparent_unchanged() -> None:
    obs = GatewayObserver()
    log = _log()
    token = obs.begin(log, {"traceparent": PARENT, "tracestate": "k=v"})
    assert log.trace_id == "0af7651916cd43dd8448eb211c80319c"
    assert obs.upstream_headers(token) == [
        (b"traceparent", PARENT.encode()),
        (b"tracestate", b"k=v"),
    ]
    obs.end(token, log)


def test_traced_request_continues_the_callers_trace_and_exports_a_server_span() -> None:
    obs, exporter, provider = _traced()
    log = _log()
    token = obs.begin(log, {"traceparent": PARENT})
    assert log.trace_id == "0af7651916cd43dd8448eb211c80319c"
    headers = dict(obs.upstream_headers(token))
    sent = headers[b"traceparent"].decode()
    assert sent.startswith("00-0af7651916cd43dd8448eb211c80319c-")
    assert sent.split("-")[2] != "b7ad6b7169203331"  # our span is the upstream's parent
    obs.end(token, log)
    provider.force_flush()  # type: ignore[attr-defined]
    (span,) = exporter.get_finished_spans()
    assert span.kind is SpanKind.SERVER
    assert span.name == "GET web"
    assert span.parent is not None and format(span.parent.span_id, "016x") == "b7ad6b7169203331"
    assert format(span.context.span_id, "016x") == sent.split("-")[2]
    assert span.attributes["http.route"] == "web"
    assert span.attributes["portway.backend"] == "api"
    assert span.attributes["portway.cluster"] == "a"
    assert span.attributes["portway.endpoint"] == "10.0.0.1:30080"
    assert span.attributes["http.response.status_code"] == 200


def test_traced_request_without_parent_starts_a_new_trace_and_marks_5xx_as_error() -> None:
    obs, exporter, provider = _traced()
    log = _log(502)
    token = obs.begin(log, {})
    assert len(log.trace_id) == 32
    obs.end(token, log)
    provider.force_flush()  # type: ignore[attr-defined]
    (span,) = exporter.get_finished_spans()
    assert span.parent is None
    assert format(span.context.trace_id, "032x") == log.trace_id
    assert span.status.status_code is StatusCode.ERROR


def test_unsampled_requests_export_nothing_but_still_propagate() -> None:
    obs, exporter, provider = _traced(ratio=0.0)
    log = _log()
    token = obs.begin(log, {})
    sent = dict(obs.upstream_headers(token))[b"traceparent"].decode()
    assert int(sent.rsplit("-", 1)[1], 16) & 1 == 0  # sampled flag off
    obs.end(token, log)
    provider.force_flush()  # type: ignore[attr-defined]
    assert exporter.get_finished_spans() == ()


def test_observer_cost_per_request_without_tracing_is_a_few_microseconds() -> None:
    obs = GatewayObserver()
    log = _log()
    headers = {"host": "example.com", "user-agent": "t"}

    def one() -> None:
        token = obs.begin(log, headers)
        obs.upstream_headers(token)
        obs.end(token, log)

    n = 20000
    best = min(timeit.repeat(one, number=n, repeat=5)) / n
    print(f"observer begin+upstream_headers+end: {best * 1e6:.2f} us/request")
    assert best < 10e-6  # generous for a loaded 2-core CI box; typically ~1 us


def test_end_without_begin_counts_but_does_not_disturb_in_flight() -> None:
    obs = GatewayObserver()
    http = _log()
    token = obs.begin(http, {})
    tcp = RequestLog(method="TCP", protocol="TCP", upstream_cluster="a", route_name="db")
    obs.end(None, tcp)  # the TCP proxy reports a finished connection without begin
    assert obs.in_flight == 1
    assert tcp.start_time > 1.7e9
    obs.end(token, http)
    assert obs.in_flight == 0
    assert obs.stats.requests[("db", "", "a", 0)] == 1


def test_counted_requests_without_log_or_trace_keep_in_flight_and_metrics() -> None:
    obs = GatewayObserver()
    assert not obs.detailed
    obs.open_request()
    obs.open_request()
    assert obs.in_flight == 2
    obs.close_request("r", "b", "c", 200, 0.002)
    assert obs.in_flight == 1
    assert obs.stats.requests[("r", "b", "c", 200)] == 1
    assert sum(obs.stats.durations["r"][:-1]) == 1


def test_counted_path_costs_well_under_a_microsecond_or_two() -> None:
    obs = GatewayObserver()

    def one() -> None:
        obs.open_request()
        obs.close_request("r", "b", "c", 200, 0.002)

    n = 20000
    best = min(timeit.repeat(one, number=n, repeat=5)) / n
    print(f"observer open_request+close_request: {best * 1e6:.2f} us/request")
    assert best < 5e-6  # generous for a loaded 2-core CI box; typically ~0.4 us
