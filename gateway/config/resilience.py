"""Resilience blocks: timeouts, retries, health checks, outlier detection, breakers, rate limits."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, Duration, Percent, Port


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
    """Active checks against each endpoint (`gateway.upstream.health`).

    `http`: GET `path` with `host` as Host (the endpoint's address when
    unset), healthy when the status is in `expected_statuses`. `tcp`: healthy
    when a connection opens. With `use_health_check_node_port` an endpoint
    whose record carries a healthCheckNodePort (externalTrafficPolicy Local)
    is asked kube-proxy's `/healthz` there instead: 200 with
    `localEndpoints` > 0 is healthy, 503 is not. Probes of one endpoint are
    `interval` apart (`unhealthy_interval` while it is failing), each start
    moved by up to `jitter_percent` of the interval, and the first probes of
    a backend's endpoints are spread over one interval. With `--workers N`
    the probes are sent once, by worker 0, and every worker acts on its
    verdicts (`gateway.upstream.shared_verdicts`).
    """

    protocol: Literal["http", "tcp"] = "http"
    path: str = "/healthz"
    host: str | None = None
    port: Port | None = None
    interval_s: Duration = Field(default=5.0, alias="interval")
    unhealthy_interval_s: Duration | None = Field(default=None, alias="unhealthyInterval")
    timeout_s: Duration = Field(default=1.0, alias="timeout")
    jitter_percent: Percent = 10.0
    healthy_threshold: int = Field(default=2, ge=1)
    unhealthy_threshold: int = Field(default=3, ge=1)
    expected_statuses: tuple[int, ...] = (200,)
    use_health_check_node_port: bool = True


@dataclass(frozen=True, slots=True, config=CONFIG)
class OutlierDetection:
    """Passive ejection of failing endpoints (`gateway.upstream.outlier`); on by default.

    Defaults are faster than Envoy's (5 consecutive errors, 10 s interval,
    30 s base ejection, 10 % max): 3 consecutive gateway failures (a dead
    node costs three retried tries, ~10 ms of traffic at 500 rps, not five);
    a 1 s interval (the sweep is a pass over a few counters per endpoint);
    a 2 s base ejection growing by 2 s per repeat up to 30 s (a node back
    from a restart serves again within seconds; a dead one is retried
    rarely); at most 50 % ejected (backends here are a few nodes in two or
    three clusters: 10 % of four nodes would leave a dark cluster's second
    node in rotation), and never the last endpoint that may take traffic.
    """

    enabled: bool = True
    consecutive_5xx: int = Field(default=5, ge=1, alias="consecutive5xx")
    consecutive_gateway_errors: int = Field(default=3, ge=1)
    interval_s: Duration = Field(default=1.0, alias="interval")
    base_ejection_time_s: Duration = Field(default=2.0, alias="baseEjectionTime")
    max_ejection_time_s: Duration = Field(default=30.0, alias="maxEjectionTime")
    max_ejection_percent: Percent = 50.0


@dataclass(frozen=True, slots=True, config=CONFIG)
class CircuitBreaker:
    """Hard caps (`gateway.upstream.breaker`); beyond one, 503 `portway-error: overflow`.

    `max_connections` and `max_pending_requests` hold per endpoint (its
    pool), `max_requests` and `max_retries` per backend. `max_retries`
    defaults high (Envoy: 3): the retry budget is the policy that stops
    storms, and a cap of 3 concurrent retries is what turns a burst of
    failures from one node (every in-flight request at once) into errors.
    """

    max_connections: int = Field(default=1024, ge=1)
    max_pending_requests: int = Field(default=1024, ge=0)
    max_requests: int = Field(default=1024, ge=1)
    max_retries: int = Field(default=1024, ge=0)


@dataclass(frozen=True, slots=True, config=CONFIG)
class RateLimit:
    """Token bucket: `requests` per `per`, with `burst` extra, one bucket per key.

    `key`: the client address (`client_ip`), a request header's value
    (`header`, named by `header`), the caller's authenticated identity
    (`identity`: the route's `auth.identityHeader`), or one bucket for the
    whole rule (`route`). `scope`: `shared` holds the limit across the
    workers of one gateway (`--workers N`; buckets in shared memory,
    `gateway.http.filters.shared_buckets`), `worker` keeps buckets per
    worker process, so a client spreading its connections may get up to N
    times the rate (it saves ~0.5 us a request, ~5-8 us on a key's first request
    to the gateway: a flood of new keys costs more shared). One process: both
    are the same. Several gateway replicas (hosts) each count alone either way. At
    most `maxKeys` buckets are kept per rule (with `shared`, the gateway's
    table is sized for them at startup).
    """

    requests: int = Field(ge=1)
    per_s: Duration = Field(default=1.0, alias="per", gt=0)
    burst: int = Field(default=0, ge=0)
    key: Literal["client_ip", "header", "identity", "route"] = "client_ip"
    header: str | None = None
    max_keys: int = Field(default=100_000, ge=1)
    scope: Literal["worker", "shared"] = "shared"

    @model_validator(mode="after")
    def _header_key_needs_header(self) -> RateLimit:
        if self.key == "header" and not self.header:
            raise ValueError("key: header needs header (the request header to key on)")
        return self
