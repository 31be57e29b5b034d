"""The routing config language: typed, frozen values validated by pydantic.

The YAML a platform team writes uses Gateway API vocabulary in camelCase
(`backendRefs`, `PathPrefix`, `allowedRegions`); these dataclasses are its
Python shape, snake_case, with one docstring per block. Validation of shape and
ranges happens here (pydantic), cross references (a route naming a listener or
backend that does not exist) in `gateway.config.semantic`, and positions
(file:line:column) are added by `gateway.config.loader`. The JSON Schema in
`config/portway.schema.json` is generated from these classes.

Durations are written `250ms`, `10s`, `1m`, `1h` (or a bare number of seconds)
and held as float seconds in fields named `*_s`.

The blocks live in one module each (`values`, `listeners`, `matches`,
`resilience`, `access`, `backends`, `routes`); this module assembles the
whole file and re-exports every name, so `gateway.config.model` stays the
one import for users of the language.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.access import (
    AccessPolicy,
    AccessRule,
    ApiKeyAuth,
    Auth,
    JwtAuth,
)
from gateway.config.backends import (
    Backend,
    HashOn,
    LoadBalancer,
    Locality,
    LocalityPriority,
    ServiceRef,
    SessionAffinityConfig,
    StaticEndpoint,
)
from gateway.config.listeners import (
    Certificate,
    Listener,
    ListenerTls,
)
from gateway.config.matches import (
    BackendFilters,
    Cors,
    Filters,
    HeaderMatch,
    HeaderMatchValue,
    HeaderModifier,
    PathMatch,
    QueryParamMatch,
    RequestMirror,
    RequestRedirect,
    RouteMatch,
    UrlRewrite,
)
from gateway.config.resilience import (
    CircuitBreaker,
    HealthCheck,
    OutlierDetection,
    RateLimit,
    Retry,
    RetryBudget,
    Timeouts,
)
from gateway.config.routes import (
    BackendRef,
    Canary,
    CanaryOverride,
    Rollout,
    RolloutStep,
    Route,
    Rule,
)
from gateway.config.values import (
    CONFIG,
    DURATION_FORMS,
    DURATION_PATTERN,
    AccessAction,
    Cidr,
    Duration,
    HashSource,
    IPAddress,
    LbPolicy,
    ListenerProtocol,
    Name,
    PathMatchType,
    Percent,
    Port,
    StringMatchType,
    format_duration,
    parse_duration,
)

__all__ = [
    "CONFIG",
    "DURATION_FORMS",
    "DURATION_PATTERN",
    "AccessAction",
    "AccessPolicy",
    "AccessRule",
    "Admin",
    "ApiKeyAuth",
    "Auth",
    "Backend",
    "BackendFilters",
    "BackendRef",
    "Canary",
    "CanaryOverride",
    "Certificate",
    "Cidr",
    "CircuitBreaker",
    "Cors",
    "Duration",
    "Filters",
    "GatewayConfig",
    "GatewaySettings",
    "HashOn",
    "HashSource",
    "HeaderMatch",
    "HeaderMatchValue",
    "HeaderModifier",
    "HealthCheck",
    "IPAddress",
    "JwtAuth",
    "LbPolicy",
    "Listener",
    "ListenerProtocol",
    "ListenerTls",
    "LoadBalancer",
    "Locality",
    "LocalityPriority",
    "Name",
    "OutlierDetection",
    "PathMatch",
    "PathMatchType",
    "Percent",
    "Port",
    "QueryParamMatch",
    "RateLimit",
    "Registry",
    "RequestMirror",
    "RequestRedirect",
    "Retry",
    "RetryBudget",
    "Rollout",
    "RolloutStep",
    "Route",
    "RouteMatch",
    "Rule",
    "ServiceRef",
    "SessionAffinityConfig",
    "StaticEndpoint",
    "StringMatchType",
    "Telemetry",
    "Timeouts",
    "UrlRewrite",
    "format_duration",
    "json_schema",
    "parse_duration",
]


@dataclass(frozen=True, slots=True, config=CONFIG)
class GatewaySettings:
    """Where this gateway runs (for locality) and process-wide knobs."""

    region: str = ""
    zone: str = ""
    cluster: str = ""
    trusted_proxies: tuple[Cidr, ...] = ()
    max_request_line_bytes: int = Field(default=8192, ge=256)
    max_header_bytes: int = Field(default=65536, ge=1024)
    max_headers: int = Field(default=100, ge=8)
    first_request_timeout_s: Duration = Field(default=60.0, alias="firstRequestTimeout")
    """How long a new client connection may take to send its first whole request
    head before it is closed; between requests the rule's `timeouts.idle` applies."""
    via: str = "portway"
    native_sockets: bool = True
    """Serve plain-HTTP listeners' sockets from the native lane (C: accept, request heads
    of the plain shape, bodiless requests' upstream sockets and response relay), with
    the same routing, filters and answers; false keeps them on the event loop's
    transports. Read when a listener starts; without the built extension (no C
    compiler at install) every listener uses the event loop's transports."""


@dataclass(frozen=True, slots=True, config=CONFIG)
class Registry:
    """Where endpoints come from: files (default), etcd or consul."""

    type: Literal["files", "etcd", "consul"] = "files"
    path: str | None = None
    endpoints: tuple[str, ...] = ()
    prefix: str = "portway/v1/services/"
    debounce_s: Duration = Field(default=0.05, alias="debounce")


@dataclass(frozen=True, slots=True, config=CONFIG)
class Admin:
    address: IPAddress = "127.0.0.1"
    port: Port = 9901


@dataclass(frozen=True, slots=True, config=CONFIG)
class Telemetry:
    access_log: Literal["off", "stdout", "stderr"] | str = "off"
    otlp_endpoint: str | None = None
    service_name: str = "portway-gateway"
    trace_sample_ratio: float = Field(default=1.0, ge=0.0, le=1.0)


@dataclass(frozen=True, slots=True, config=CONFIG)
class GatewayConfig:
    """A whole routing config file."""

    version: Literal[1] = 1
    gateway: GatewaySettings = GatewaySettings()
    listeners: tuple[Listener, ...] = ()
    routes: tuple[Route, ...] = ()
    backends: tuple[Backend, ...] = ()
    registry: Registry = Registry()
    admin: Admin = Admin()
    telemetry: Telemetry = Telemetry()


def json_schema() -> dict[str, Any]:
    """The JSON Schema of a config file, as written to config/portway.schema.json."""
    from pydantic import TypeAdapter

    schema = TypeAdapter(GatewayConfig).json_schema(by_alias=True, mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "portway gateway config"
    return schema
