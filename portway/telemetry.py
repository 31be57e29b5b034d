"""Process-wide telemetry setup shared by the gateway and the controller.

Two things live here, both configured once at process start:

* JSON logs: `JsonFormatter` renders every `logging` record as one JSON object
  per line with `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, the exception
  text if any, and every field passed through `extra=` (so a log line such as a
  rejected config reload carries its issues as data, not only as prose).
* Traces: `setup_tracing` builds an OpenTelemetry `TracerProvider` when an
  OTLP endpoint is configured (or an exporter is handed in, as tests do with
  the SDK's in-memory exporter) and returns None otherwise, so callers can
  skip span work entirely when tracing is off.
"""

from __future__ import annotations

import datetime
import json
import logging
import sys
from typing import IO, Any

from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

_RESERVED = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.datetime.fromtimestamp(record.created, datetime.UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _RESERVED and not key.startswith("_"):
                out[key] = value
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


QUIET_LOGGERS = ("watchfiles", "watchfiles.main")
"""Libraries whose info lines would drown ours (watchfiles logs every batch of file changes)."""


def setup_logging(level: int | str = logging.INFO, stream: IO[str] | None = None) -> None:
    """Route the root logger to `stream` (stderr by default) as JSON lines; idempotent."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_portway_json", False):
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler._portway_json = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    for chatty in QUIET_LOGGERS:
        logging.getLogger(chatty).setLevel(max(logging.WARNING, root.level))


def setup_tracing(
    *,
    otlp_endpoint: str | None,
    service_name: str,
    sample_ratio: float,
    exporter: SpanExporter | None = None,
) -> TracerProvider | None:
    """A tracer provider exporting over OTLP/HTTP, or None when tracing is not configured.

    `otlp_endpoint` is the collector's base URL (`http://host:4318`); spans go
    to `<endpoint>/v1/traces`. Sampling honours the parent's decision and
    samples new root traces with probability `sample_ratio`. An explicit
    `exporter` overrides OTLP (tests pass an in-memory one).
    """
    if exporter is None:
        if not otlp_endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        url = otlp_endpoint.rstrip("/")
        if not url.endswith("/v1/traces"):
            url += "/v1/traces"
        exporter = OTLPSpanExporter(endpoint=url)
    provider = TracerProvider(
        resource=Resource.create({"service.name": service_name}),
        sampler=ParentBased(TraceIdRatioBased(sample_ratio)),
    )
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=500))
    return provider
