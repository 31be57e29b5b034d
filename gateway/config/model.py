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
"""

from __future__ import annotations

import enum
import ipaddress
import math
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    WithJsonSchema,
)
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

CONFIG = ConfigDict(
    extra="forbid",
    alias_generator=to_camel,
    populate_by_name=True,
    use_enum_values=False,
)

DURATION_PATTERN = r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$"
_DURATION = re.compile(DURATION_PATTERN)
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
DURATION_FORMS = "a number of seconds or a string like 250ms, 10s, 1m or 1h"


def parse_duration(value: object) -> float:
    """`"250ms"` → 0.25; numbers are seconds. Raises ValueError with the accepted forms."""
    if isinstance(value, bool):
        raise ValueError(f"a duration is {DURATION_FORMS}")
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise ValueError(f"a duration must be finite: {DURATION_FORMS}")
        if value < 0:
            raise ValueError("a duration cannot be negative")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.match(value)
        if m:
            return float(m.group(1)) * _UNIT_S[m.group(2)]
    raise ValueError(f"{value!r} is not a duration; write {DURATION_FORMS}")


def format_duration(seconds: float) -> str | float:
    """The shortest of `2h`, `5m`, `10s`, `250ms` that parses back to exactly `seconds`.

    Values no unit renders exactly (e.g. 1e-7) come back as a plain float, which
    `parse_duration` also reads, so dumping and loading a config is lossless.
    """
    if seconds == 0:
        return "0s"
    for unit in ("h", "m", "s", "ms"):
        count = seconds / _UNIT_S[unit]
        if count.is_integer() and parse_duration(f"{int(count)}{unit}") == seconds:
            return f"{int(count)}{unit}"
    text = repr(seconds)
    if "e" not in text and "n" not in text and parse_duration(f"{text}s") == seconds:
        return f"{text}s"
    return seconds


Duration = Annotated[
    float,
    BeforeValidator(parse_duration),
    PlainSerializer(format_duration, return_type=str | float),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "pattern": DURATION_PATTERN},
                {"type": "number", "minimum": 0},
            ],
            "description": f"A duration: {DURATION_FORMS}.",
        }
    ),
]


def _check_cidr(value: str) -> str:
    ipaddress.ip_network(value, strict=False)
    return value


def _check_ip(value: str) -> str:
    ipaddress.ip_address(value)
    return value


def _check_regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"invalid regular expression: {exc}") from None
    return value


Cidr = Annotated[str, AfterValidator(_check_cidr)]
IPAddress = Annotated[str, AfterValidator(_check_ip)]
Port = Annotated[int, Field(ge=1, le=65535)]
Percent = Annotated[float, Field(ge=0, le=100)]
Name = Annotated[str, Field(pattern=r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", max_length=253)]


class ListenerProtocol(enum.Enum):
    HTTP = "HTTP"
    HTTPS = "HTTPS"
    TLS = "TLS"  # TLS passthrough: route on SNI, do not terminate
    TCP = "TCP"


class PathMatchType(enum.Enum):
    EXACT = "Exact"
    PATH_PREFIX = "PathPrefix"
    REGULAR_EXPRESSION = "RegularExpression"


class StringMatchType(enum.Enum):
    EXACT = "Exact"
    REGULAR_EXPRESSION = "RegularExpression"


class LbPolicy(enum.Enum):
    ROUND_ROBIN = "round_robin"
    LEAST_REQUEST = "least_request"
    RANDOM = "random"
    RING_HASH = "ring_hash"
    MAGLEV = "maglev"


class HashSource(enum.Enum):
    CLIENT_IP = "client_ip"
    HEADER = "header"
    COOKIE = "cookie"


class AccessAction(enum.Enum):
    ALLOW = "allow"
    DENY = "deny"


# ---- listeners -------------------------------------------------------------


@dataclass(frozen=True, slots=True, config=CONFIG)
class Certificate:
    """A certificate served for the given SNI hostnames (wildcards allowed)."""

    cert_file: str
    key_file: str
    hostnames: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class ListenerTls:
    """TLS termination settings of an HTTPS listener."""

    certificates: tuple[Certificate, ...] = Field(min_length=1)
    min_version: Literal["TLSv1.2", "TLSv1.3"] = "TLSv1.2"
    alpn: tuple[str, ...] = ("http/1.1",)


@dataclass(frozen=True, slots=True, config=CONFIG)
class Listener:
    """A socket the gateway accepts on, and how it speaks."""

    name: Name
    protocol: ListenerProtocol
    port: Port
    address: IPAddress = "127.0.0.1"
    tls: ListenerTls | None = None
    hostnames: tuple[str, ...] = ()


# ---- matches and filters ---------------------------------------------------


@dataclass(frozen=True, slots=True, config=CONFIG)
class PathMatch:
    type: PathMatchType = PathMatchType.PATH_PREFIX
    value: str = "/"


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderMatch:
    """Match on a header (case-insensitive name); `RegularExpression` uses re.fullmatch."""

    name: str
    value: str
    type: StringMatchType = StringMatchType.EXACT


@dataclass(frozen=True, slots=True, config=CONFIG)
class QueryParamMatch:
    name: str
    value: str
    type: StringMatchType = StringMatchType.EXACT


@dataclass(frozen=True, slots=True, config=CONFIG)
class RouteMatch:
    """All conditions must hold (AND); a rule's matches are alternatives (OR)."""

    path: PathMatch = PathMatch()
    headers: tuple[HeaderMatch, ...] = ()
    query_params: tuple[QueryParamMatch, ...] = ()
    method: str | None = Field(default=None, pattern=r"^[A-Z]+$")


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderMatchValue:
    name: str
    value: str


@dataclass(frozen=True, slots=True, config=CONFIG)
class HeaderModifier:
    """Gateway API RequestHeaderModifier / ResponseHeaderModifier."""

    set: tuple[HeaderMatchValue, ...] = ()
    add: tuple[HeaderMatchValue, ...] = ()
    remove: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class UrlRewrite:
    """Rewrite the Host and/or path before forwarding (Gateway API URLRewrite)."""

    hostname: str | None = None
    replace_prefix_match: str | None = None
    replace_full_path: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class RequestRedirect:
    """Answer with a redirect instead of forwarding (Gateway API RequestRedirect)."""

    scheme: Literal["http", "https"] | None = None
    hostname: str | None = None
    port: Port | None = None
    path: str | None = None
    status_code: Literal[301, 302, 303, 307, 308] = 302


@dataclass(frozen=True, slots=True, config=CONFIG)
class Filters:
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    url_rewrite: UrlRewrite | None = None
    redirect: RequestRedirect | None = None
    preserve_host: bool = True


# ---- resilience blocks -----------------------------------------------------


@dataclass(frozen=True, slots=True, config=CONFIG)
class Timeouts:
    """`request`: whole exchange incl. retries; `backend_request`: one try; `idle`: no bytes."""

    request_s: Duration = Field(default=15.0, alias="request")
    backend_request_s: Duration | None = Field(default=None, alias="backendRequest")
    connect_s: Duration = Field(default=2.0, alias="connect")
    idle_s: Duration = Field(default=300.0, alias="idle")


@dataclass(frozen=True, slots=True, config=CONFIG)
class RetryBudget:
    """Envoy-style: retries may add at most `percent` of active requests (min `min_concurrency`)."""

    percent: Percent = 20.0
    min_concurrency: int = Field(default=3, ge=0)


@dataclass(frozen=True, slots=True, config=CONFIG)
class Retry:
    attempts: int = Field(default=2, ge=0, le=10)
    on: tuple[
        Literal[
            "connect-failure", "refused-stream", "reset", "5xx", "gateway-error", "retriable-4xx"
        ],
        ...,
    ] = ("connect-failure", "gateway-error")
    per_try_timeout_s: Duration | None = Field(default=None, alias="perTryTimeout")
    backoff_base_s: Duration = Field(default=0.025, alias="backoffBase")
    backoff_max_s: Duration = Field(default=0.25, alias="backoffMax")
    budget: RetryBudget = RetryBudget()
    idempotent_only: bool = True


@dataclass(frozen=True, slots=True, config=CONFIG)
class HealthCheck:
    """Active checks against each endpoint (HTTP GET or TCP connect)."""

    protocol: Literal["http", "tcp"] = "http"
    path: str = "/healthz"
    port: Port | None = None
    interval_s: Duration = Field(default=5.0, alias="interval")
    timeout_s: Duration = Field(default=1.0, alias="timeout")
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)
    expected_statuses: tuple[int, ...] = (200,)
    use_health_check_node_port: bool = True


@dataclass(frozen=True, slots=True, config=CONFIG)
class OutlierDetection:
    """Passive ejection of endpoints that fail (Envoy's consecutive 5xx / gateway errors)."""

    consecutive_5xx: int = Field(default=5, ge=1, alias="consecutive5xx")
    consecutive_gateway_errors: int = Field(default=3, ge=1)
    interval_s: Duration = Field(default=10.0, alias="interval")
    base_ejection_time_s: Duration = Field(default=30.0, alias="baseEjectionTime")
    max_ejection_percent: Percent = 50.0


@dataclass(frozen=True, slots=True, config=CONFIG)
class CircuitBreaker:
    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=0)
    max_requests: int = Field(default=1024, ge=1)
    max_retries: int = Field(default=3, ge=0)


@dataclass(frozen=True, slots=True, config=CONFIG)
class RateLimit:
    """Token bucket: `requests` per `per`, with `burst` extra, keyed by client IP or header."""

    requests: int = Field(ge=1)
    per_s: Duration = Field(default=1.0, alias="per")
    burst: int = Field(default=0, ge=0)
    key: Literal["client_ip", "header", "route"] = "client_ip"
    header: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class AccessRule:
    """First matching rule wins; `default` applies when none matches."""

    action: AccessAction
    cidrs: tuple[Cidr, ...] = ()
    countries: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class AccessPolicy:
    rules: tuple[AccessRule, ...] = ()
    default: AccessAction = AccessAction.ALLOW


@dataclass(frozen=True, slots=True, config=CONFIG)
class ApiKeyAuth:
    header: str = "x-api-key"
    keys_file: str | None = None
    keys: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class JwtAuth:
    issuer: str
    audiences: tuple[str, ...] = ()
    jwks_file: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")


@dataclass(frozen=True, slots=True, config=CONFIG)
class Auth:
    api_key: ApiKeyAuth | None = None
    jwt: JwtAuth | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class RolloutStep:
    percent: Percent
    pause_s: Duration = Field(default=60.0, alias="pause")


@dataclass(frozen=True, slots=True, config=CONFIG)
class Rollout:
    """Progressive canary: walk the steps while the canary's error rate stays under the limit."""

    steps: tuple[RolloutStep, ...] = Field(min_length=1)
    max_error_rate: Percent = 1.0
    rollback_on_failure: bool = True


# ---- backends --------------------------------------------------------------


@dataclass(frozen=True, slots=True, config=CONFIG)
class ServiceRef:
    """A Service published to the registry by the clusters' controllers."""

    namespace: str
    name: str
    port: str | int
    clusters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class StaticEndpoint:
    """An endpoint declared by hand (on-prem hosts, VMs)."""

    address: IPAddress
    port: Port
    cluster: str = "static"
    region: str = ""
    zone: str = ""
    weight: int = Field(default=1, ge=1, le=128)


@dataclass(frozen=True, slots=True, config=CONFIG)
class HashOn:
    """What a ring_hash / maglev picker hashes on."""

    source: HashSource = HashSource.CLIENT_IP
    name: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class LoadBalancer:
    policy: LbPolicy = LbPolicy.ROUND_ROBIN
    hash_on: HashOn | None = None
    choice_count: int = Field(default=2, ge=2, le=8)
    ring_size: int = Field(default=1024, ge=64, le=65536)
    maglev_table_size: int = Field(default=65537, ge=251)


@dataclass(frozen=True, slots=True, config=CONFIG)
class SessionAffinityConfig:
    """Kubernetes-style ClientIP affinity: same client → same endpoint for `timeout`."""

    type: Literal["None", "ClientIP"] = "None"
    timeout_s: Duration = Field(default=10800.0, alias="timeout")


@dataclass(frozen=True, slots=True, config=CONFIG)
class LocalityPriority:
    """A priority level: endpoints whose region/zone match belong to it (empty = any)."""

    regions: tuple[str, ...] = ()
    zones: tuple[str, ...] = ()
    clusters: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class Locality:
    """Envoy's priority rule: level 0 takes what it covers × overprovisioning; the rest spills."""

    prefer: Literal["zone", "region", "none"] = "zone"
    priorities: tuple[LocalityPriority, ...] = ()
    overprovisioning_factor: float = Field(default=1.4, ge=1.0, le=10.0)
    panic_threshold: Percent = 50.0


@dataclass(frozen=True, slots=True, config=CONFIG)
class Backend:
    """A named set of endpoints: a registry service, or static endpoints, not both."""

    name: Name
    service: ServiceRef | None = None
    endpoints: tuple[StaticEndpoint, ...] = ()
    load_balancer: LoadBalancer = LoadBalancer()
    session_affinity: SessionAffinityConfig = SessionAffinityConfig()
    locality: Locality = Locality()
    allowed_regions: tuple[str, ...] = ()
    health_check: HealthCheck | None = None
    outlier_detection: OutlierDetection | None = None
    circuit_breaker: CircuitBreaker = CircuitBreaker()
    tls: bool = False


# ---- routes ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, config=CONFIG)
class BackendRef:
    name: str
    weight: int = Field(default=1, ge=0, le=1_000_000)


@dataclass(frozen=True, slots=True, config=CONFIG)
class CanaryOverride:
    """Requests carrying this header (or cookie) with this value always go to the canary."""

    name: str
    value: str = "always"


@dataclass(frozen=True, slots=True, config=CONFIG)
class Canary:
    """Send `percent` of traffic to `backend`; overrides force it; sticky pins a client."""

    backend: str
    percent: Percent = 0.0
    header: CanaryOverride | None = None
    cookie: CanaryOverride | None = None
    sticky: bool = False
    sticky_cookie: str = "portway-canary"
    rollout: Rollout | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class Rule:
    """One routing rule of a route: matches (OR) → weighted backends (+ canary)."""

    backend_refs: tuple[BackendRef, ...] = Field(min_length=1)
    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    canary: Canary | None = None
    filters: Filters = Filters()
    timeouts: Timeouts = Timeouts()
    retry: Retry | None = None
    rate_limit: RateLimit | None = None
    name: str | None = None


@dataclass(frozen=True, slots=True, config=CONFIG)
class Route:
    """An HTTPRoute (for HTTP/HTTPS listeners) or a TCPRoute/TLSRoute (for TCP/TLS ones)."""

    name: Name
    rules: tuple[Rule, ...] = Field(min_length=1)
    listeners: tuple[str, ...] = ()
    hostnames: tuple[str, ...] = ()
    allowed_regions: tuple[str, ...] = ()
    access: AccessPolicy | None = None
    auth: Auth | None = None


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
    via: str = "portway"


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
