"""Who may call a route: CIDR/geo access rules and authentication (API key, JWT)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, model_validator
from pydantic.dataclasses import dataclass

from gateway.config.values import CONFIG, AccessAction, Cidr, Duration


@dataclass(frozen=True, slots=True, config=CONFIG)
class AccessRule:
    """Matches an address in any of `cidrs` or located in any of `countries` (ISO 3166 codes)."""

    action: AccessAction
    cidrs: tuple[Cidr, ...] = ()
    countries: tuple[Annotated[str, Field(pattern=r"^[A-Za-z]{2}$")], ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class AccessPolicy:
    """Who may connect: first matching rule wins; `default` applies when none matches.

    The client address is the socket peer, the PROXY protocol's source on a
    listener that enables it, or the last X-Forwarded-For hop when the peer is
    one of `gateway.trustedProxies`. Refused: 403 `portway-error: access`
    (HTTP), connection closed (TCP/TLS passthrough).
    """

    rules: tuple[AccessRule, ...] = ()
    default: AccessAction = AccessAction.ALLOW
    geoip_database: str | None = None
    """A MaxMind-format (.mmdb) country or city database; needed by rules with `countries`."""

    @model_validator(mode="after")
    def _countries_need_database(self) -> AccessPolicy:
        if any(rule.countries for rule in self.rules) and not self.geoip_database:
            raise ValueError("rules with countries need geoipDatabase (a MaxMind .mmdb file)")
        return self


@dataclass(frozen=True, slots=True, config=CONFIG)
class ApiKey:
    """One accepted API key, stored as the SHA-256 of the key (hex), never the key itself."""

    id: str = Field(pattern=r"^[A-Za-z0-9._@:-]{1,128}$")
    """The identity passed upstream for requests carrying this key."""
    sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")


@dataclass(frozen=True, slots=True, config=CONFIG)
class ApiKeyAuth:
    """API keys from a header (or a query parameter), checked against stored hashes.

    `keysFile` holds one key a line, `ID SHA256HEX` (or just the hash, its
    first 12 hex digits then being the id); `#` starts a comment. The key is
    removed from the request before it is forwarded.
    """

    header: str = "x-api-key"
    query_param: str | None = None
    keys_file: str | None = None
    keys: tuple[ApiKey, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class ClaimHeader:
    """Pass a token claim upstream in a request header."""

    claim: str
    header: str


@dataclass(frozen=True, slots=True, config=CONFIG)
class JwtAuth:
    """Bearer JWTs signed with a key of `jwksFile` (reloaded when the file changes).

    `iss` must be `issuer`, `aud` one of `audiences` (when given), `exp` and
    `nbf` hold within `clockSkew`. The token is removed before forwarding; the
    `sub` claim is the identity, other claims go up as `claimHeaders` say. A
    token that verified is remembered (up to 1,024 per route, forgotten when the
    JWKS changes): its next requests only have the clock checked again.
    """

    issuer: str
    jwks_file: str
    audiences: tuple[str, ...] = ()
    algorithms: tuple[Literal["HS256", "RS256", "ES256"], ...] = ("RS256", "ES256")
    clock_skew_s: Duration = Field(default=30.0, alias="clockSkew")
    claim_headers: tuple[ClaimHeader, ...] = ()


@dataclass(frozen=True, slots=True, config=CONFIG)
class Auth:
    """Who the caller is: an API key or a JWT (either one when both are configured).

    Refused: 401 with `WWW-Authenticate`. Accepted: the identity (key id or
    token subject) goes upstream in `identityHeader`; a client-sent header of
    that name (or of a claim header) is always removed.
    """

    api_key: ApiKeyAuth | None = None
    jwt: JwtAuth | None = None
    identity_header: str = "x-portway-identity"

    @model_validator(mode="after")
    def _something_to_check(self) -> Auth:
        if self.api_key is None and self.jwt is None:
            raise ValueError("auth needs apiKey or jwt")
        return self
