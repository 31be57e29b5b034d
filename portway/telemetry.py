"""Process-wide telemetry setup shared by the gateway and the controller.

Two things live here, both configured once at process start:

* JSON logs: `JsonFormatter` renders every `logging` record as one JSON object
  per line with `ts` (ISO 8601, UTC), `level`, `logger`, `msg`, the exception
  text if any, and every field passed through `extra=` (so a log line such as a
  rejected config reload carries its issues as data, not only as prose).
  Field values are rendered for people (`for_people`): floats to 4 significant
  digits (large ones, such as timestamps, to milliseconds), an exception as
  its message, an enum as its value, paths and other objects as text; never a
  16-digit float or a `ConnectionKey(...)` repr.
* Traces: `setup_tracing` builds an OpenTelemetry `TracerProvider` when an
  OTLP endpoint is configured (or an exporter is handed in, as tests do with
  the SDK's in-memory exporter) and returns None otherwise, so callers can
  skip span work entirely when tracing is off.
"""

from __future__ import annotations

import datetime
import enum
import json
import logging
import math
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
                out[key] = for_people(value)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str, separators=(",", ":"))


SIGNIFICANT_DIGITS = 4


def for_people(value: Any) -> Any:
    """A log field's value as a person should read it (module docstring); JSON-ready."""
    if isinstance(value, bool) or value is None or isinstance(value, int | str):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        if abs(value) >= 10**SIGNIFICANT_DIGITS:  # timestamps, byte counts: keep the whole part
            return round(value, 3)
        return float(f"{value:.{SIGNIFICANT_DIGITS}g}")
    if isinstance(value, BaseException):
        text = str(value).strip()
        return text or type(value).__name__
    if isinstance(value, enum.Enum):
        return for_people(value.value)
    if isinstance(value, dict):
        return {str(k): for_people(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [for_people(v) for v in items]
    return str(value)


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
