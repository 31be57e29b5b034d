"""Routes: rules binding matches to weighted backends, canaries and progressive rollouts."""

from __future__ import annotations

from typing import Literal

from pydantic import Field
from pydantic.dataclasses import dataclass

from gateway.config.access import AccessPolicy, Auth
from gateway.config.matches import BackendFilters, Filters, RouteMatch
from gateway.config.resilience import RateLimit, Retry, Timeouts
from gateway.config.values import CONFIG, Duration, Name, Percent


@dataclass(frozen=True, slots=True, config=CONFIG)
class RolloutStep:
    """Send `percent` of the rule's traffic to the canary, judged over at least `pause`."""

    percent: Percent
    pause_s: Duration = Field(default=60.0, alias="pause")
    """How long the step is held and measured before the next one."""


@dataclass(frozen=True, slots=True, config=CONFIG)
class Rollout:
    """Progressive canary: walk the steps while the canary's measurements stay in bounds.

    Run by `gateway.rollout`: the state lives in the registry, one gateway
    replica drives it, every replica applies its weight.
    """

    steps: tuple[RolloutStep, ...] = Field(min_length=1)
    max_error_rate: Percent = 1.0
    """Percent of the canary's requests in a step that may be answered 5xx."""
    max_p99_s: Duration | None = Field(default=None, alias="maxP99")
    """The canary's p99 latency limit over a step; unset: latency is not judged."""
    min_requests: int = Field(default=10, ge=1)
    """Canary requests a step needs before it is judged; a quieter step is held longer."""
    rollback_on_failure: bool = True
    """On a failed step: back to 0% (true) or pause at the current weight (false)."""


@dataclass(frozen=True, slots=True, config=CONFIG)
class BackendRef:
    name: str
    weight: int = Field(default=1, ge=0, le=1_000_000)
    filters: BackendFilters | None = None
    """Header modifiers applied, after the rule's, to requests sent to this backend."""


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
    """One routing rule of a route: matches (OR) → weighted backends (+ canary).

    A rule whose filters answer every request (a redirect) needs no backendRefs.
    """

    backend_refs: tuple[BackendRef, ...] = ()
    matches: tuple[RouteMatch, ...] = (RouteMatch(),)
    canary: Canary | None = None
    filters: Filters = Filters()
    timeouts: Timeouts = Timeouts()
    retry: Retry | None = None
    rate_limit: RateLimit | None = None
    max_request_body_bytes: int | None = Field(default=None, ge=0)
    """Largest request body this rule accepts: 413 from Content-Length before anything
    is forwarded, or as soon as a chunked body grows past it (the listener's limit,
    when lower, still applies)."""
    on_empty: Literal["failover", "fail"] = "failover"
    """A weighted backend with no endpoint that may take traffic: its share goes to the
    rule's other backends in proportion to their weights (`failover`), or its requests
    are answered 503 (`fail`)."""
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
    panic: Literal["open", "closed"] = "open"
    """When a backend's healthy share falls below its panic threshold: `open` spreads
    traffic over all its endpoints, ignoring health (Envoy's panic mode); `closed`
    keeps to the endpoints that may take traffic and answers 503 when none may.
    Either way only endpoints inside `allowedRegions` are ever candidates."""
