"""Who may call a route: CIDR/geo access rules and authentication (API key, JWT)."""

from __future__ import annotations

from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, AccessAction, Cidr


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
