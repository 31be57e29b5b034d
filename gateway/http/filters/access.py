"""Access rules: who may call a route or a listener, by CIDR and by country.

An `AccessPolicy` (config) is a list of rules, first match wins, and a
default action. A rule matches an address inside any of its CIDRs or located
in any of its countries (a MaxMind-format database, `geo.CountryDatabase`).
`AccessCheck` is the compiled policy: a `networks.NetworkSet` per rule, the
country codes as a frozenset, and a bounded memo of verdicts per client
address (a client repeats its address on every request of a connection and on
its next connections), so the request path pays one dict lookup.

`AccessFilter` is the HTTP filter (`FilterStage.ACCESS`): the client address
is `networks.client_address` (socket peer, PROXY protocol, or the last hop a
trusted proxy vouched for); a refusal is `403` with `portway-error: access`,
nothing forwarded. TCP and TLS-passthrough listeners ask the same
`AccessCheck` when a connection is accepted and close it when refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Final

from gateway.config.access import AccessPolicy
from gateway.config.values import AccessAction
from gateway.http.filters.base import ExchangeView, FilterStage, LocalAnswer, RequestFilter
from gateway.http.filters.geo import CountryDatabase, country_database
from gateway.http.filters.networks import NetworkSet, client_address, parse_address

if TYPE_CHECKING:
    from gateway.routing.facts import RequestFacts

MEMO_LIMIT: Final = 65_536
"""Verdicts remembered per policy; the memo is dropped whole when full (bounded memory)."""

DENIED: Final = LocalAnswer(
    403,
    ((b"content-type", b"text/plain; charset=utf-8"), (b"portway-error", b"access")),
    b"portway: access denied\n",
    "access",
)


class AccessCheck:
    """A compiled `AccessPolicy`: `allows(address)` (see module docstring)."""

    __slots__ = ("countries", "default", "memo", "rules")

    def __init__(self, policy: AccessPolicy, countries: CountryDatabase | None = None) -> None:
        self.rules = tuple(
            (
                rule.action is AccessAction.ALLOW,
                NetworkSet(rule.cidrs),
                frozenset(code.upper() for code in rule.countries),
            )
            for rule in policy.rules
        )
        self.default = policy.default is AccessAction.ALLOW
        self.countries = countries
        self.memo: dict[str, bool] = {}

    def allows(self, address: str) -> bool:
        verdict = self.memo.get(address)
        if verdict is None:
            verdict = self.decide(address)
            if len(self.memo) >= MEMO_LIMIT:
                self.memo.clear()
            self.memo[address] = verdict
        return verdict

    def decide(self, address: str) -> bool:
        """The policy's verdict for `address`, uncached; an unparsable address gets the default."""
        addr = parse_address(address)
        if addr is None:
            return self.default
        country: str | None = None
        for allow, networks, codes in self.rules:
            if addr in networks:
                return allow
            if codes:
                if country is None:
                    country = self.countries.country(str(addr)) if self.countries else ""
                if country in codes:
                    return allow
        return self.default


def access_check(policy: AccessPolicy) -> AccessCheck:
    """Compile `policy`, opening its country database if it names one (table compile time)."""
    db = country_database(policy.geoip_database) if policy.geoip_database else None
    return AccessCheck(policy, db)


class AccessFilter:
    """The HTTP request filter of a route's or listener's access policy."""

    __slots__ = ("check",)

    stage: Final = FilterStage.ACCESS

    def __init__(self, check: AccessCheck) -> None:
        self.check = check

    def on_request(self, ex: ExchangeView, facts: RequestFacts, now: float) -> LocalAnswer | None:
        fwd = ex.fwd
        address = client_address(
            facts.client_ip, fwd.get(b"x-forwarded-for") if fwd is not None else None
        )
        return None if self.check.allows(address) else DENIED


def route_access(request_filters: Iterable[RequestFilter]) -> tuple[AccessCheck, ...]:
    """The access checks among a rule's request filters (`RulePlan.request_filters`): TCP
    routes ask them once per connection, having no request to run the whole chain on."""
    checks: list[AccessCheck] = []
    for found in request_filters:
        if isinstance(found, AccessFilter):
            checks.append(found.check)
    return tuple(checks)
