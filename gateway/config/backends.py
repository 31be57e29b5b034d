"""Backends: registry services or static endpoints, with balancing and locality."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from gateway.config.resilience import CircuitBreaker, HealthCheck, OutlierDetection
from gateway.config.values import (
    CONFIG,
    Duration,
    HashSource,
    IPAddress,
    LbPolicy,
    Name,
    Percent,
    Port,
)


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
    slow_start_s: Duration = Field(default=2.0, alias="slowStart")
    """An endpoint back in rotation (recovered, let back from ejection, its cluster's
    record back) counts in its level's health gradually over this window (0: at once)."""


@dataclass(frozen=True, slots=True, config=CONFIG)
class UpstreamTlsValidation:
    """How the gateway checks an upstream's certificate (Gateway API's BackendTLSPolicy).

    Without this block, `tls: true` verifies against the system's CA bundle and
    the endpoint's address. Turning verification off must be written out
    (`insecureSkipVerify: true`) and is logged at startup: never silent.
    """

    ca_file: str | None = None
    """PEM CA bundle the upstream certificates must chain to (else the system's)."""
    hostname: str | None = None
    """Name sent as SNI and checked against the certificate (else the endpoint address)."""
    insecure_skip_verify: bool = False


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
    """Speak TLS to the endpoints, verified as `tlsValidation` says."""
    tls_validation: UpstreamTlsValidation | None = None

    @model_validator(mode="after")
    def _validation_needs_tls(self) -> Backend:
        if self.tls_validation is not None and not self.tls:
            raise ValueError("tlsValidation needs tls: true")
        return self
