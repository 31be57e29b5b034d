"""JSON logs and tracer provider setup."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from portway.telemetry import JsonFormatter, setup_logging, setup_tracing


@pytest.fixture(autouse=True)
def _restore_root_logger() -> Iterator[None]:
    """setup_logging changes the root logger; give the next test the one it had."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    root.handlers[:] = handlers
    root.setLevel(level)


def test_json_formatter_emits_ts_level_logger_msg_and_extras() -> None:
    record = logging.LogRecord("portway.test", logging.WARNING, "f.py", 1, "bad %s", ("x",), None)
    record.issues = ["a.yaml:3:5: routes[0]: nope"]
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "warning"
    assert line["logger"] == "portway.test"
    assert line["msg"] == "bad x"
    assert line["issues"] == ["a.yaml:3:5: routes[0]: nope"]
    assert line["ts"].endswith("+00:00")


def test_json_formatter_includes_exception_text() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = logging.LogRecord("t", logging.ERROR, "f.py", 1, "failed", (), sys.exc_info())
    line = json.loads(JsonFormatter().format(record))
    assert "ValueError: boom" in line["exc"]


def test_setup_logging_is_idempotent_and_writes_json_lines() -> None:
    stream = io.StringIO()
    setup_logging(logging.INFO, stream)
    setup_logging(logging.INFO, stream)
    logging.getLogger("portway.x").info("hello", extra={"n": 3})
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert lines == [
        {"ts": lines[0]["ts"], "level": "info", "logger": "portway.x", "msg": "hello", "n": 3}
    ]


def test_tracing_is_off_without_endpoint_or_exporter() -> None:
    assert setup_tracing(otlp_endpoint=None, service_name="s", sample_ratio=1.0) is None


def test_tracing_with_exporter_exports_spans_with_service_name() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        otlp_endpoint=None, service_name="svc", sample_ratio=1.0, exporter=exporter
    )
    assert isinstance(provider, TracerProvider)
    provider.get_tracer("t").start_span("x").end()
    provider.force_flush()
    (span,) = exporter.get_finished_spans()
    assert span.resource.attributes["service.name"] == "svc"


def test_sample_ratio_zero_drops_root_spans() -> None:
    exporter = InMemorySpanExporter()
    provider = setup_tracing(
        otlp_endpoint=None, service_name="s", sample_ratio=0.0, exporter=exporter
    )
    assert provider is not None
    span = provider.get_tracer("t").start_span("x")
    assert not span.is_recording()
    span.end()
    provider.force_flush()
    assert exporter.get_finished_spans() == ()


def test_otlp_endpoint_builds_a_provider() -> None:
    provider = setup_tracing(
        otlp_endpoint="http://127.0.0.1:4318", service_name="s", sample_ratio=1.0
    )
    assert isinstance(provider, TracerProvider)
    provider.shutdown()


def test_log_fields_are_rendered_for_people() -> None:
    import enum
    from pathlib import Path

    from portway.telemetry import for_people

    class Kind(enum.Enum):
        FILES = "files"

    class ConnectionKey:
        def __repr__(self) -> str:
            return "ConnectionKey(host='etcd', port=2379, is_ssl=False, ssl=True, proxy=None)"

        def __str__(self) -> str:
            return "etcd:2379"

    assert for_people(0.1234567891234) == 0.1235
    assert for_people(12.3456789) == 12.35
    assert for_people(1764500000.1234567) == 1764500000.123  # a timestamp keeps its seconds
    assert for_people(OSError(111, "Connection refused")) == "[Errno 111] Connection refused"
    assert for_people(TimeoutError()) == "TimeoutError"
    assert for_people(Kind.FILES) == "files"
    assert for_people(Path("/tmp/x")) == "/tmp/x"
    assert for_people(ConnectionKey()) == "etcd:2379"
    assert for_people({"share": {"alpha": 0.7000000000000001}, "keys": ("a", 1.0)}) == {
        "share": {"alpha": 0.7},
        "keys": ["a", 1.0],
    }
    record = logging.LogRecord("t", logging.INFO, "f", 1, "done", None, None)
    record.drain_s = 0.10012345
    assert json.loads(JsonFormatter().format(record))["drain_s"] == 0.1001
