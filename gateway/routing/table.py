"""The routing table: an immutable snapshot the request path consults.

Built by `gateway.routing.compiler.compile_table` from a config and a
registry snapshot, or derived from the table in force by
`gateway.routing.update.update_table` when registry records change (it
shares every route, rule, match and untouched backend, see `with_backends`),
and swapped whole by the server. Its routing methods are pure
in what they depend on (facts, the `EndpointState` passed in, the injected
`now`) except for the table's own seeded `Random` and the pickers' rotation
positions, which are the load balancer's memory, not configuration.

`route_http` is the hot path and is written for it: one dict lookup picks the
listener (for listeners sharing a socket, the proxy first asks `listener_for`
which of them the request's host belongs to), a memoised host resolution
gives the hostname tiers, an indexed `MatchSet.find` gives the match, the
rule's split gives the backend (no work for a single backend), and the
backend's cached locality plan gives the endpoint. `gateway.routing.explain`
walks the same chain slowly, through this table's public methods, and says why.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from random import Random
from typing import Any

from gateway.config.model import GatewaySettings, Listener, ListenerProtocol
from gateway.config.ports import socket_groups
from gateway.routing.backend import CompiledBackend
from gateway.routing.decision import (
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    REDIRECT,
    Decision,
    RequestFacts,
)
from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.failover import failover_slot, fails_over
from gateway.routing.hosts import HostIndex, ListenerHosts
from gateway.routing.layout import BackendLayout
from gateway.routing.match import CompiledMatch
from gateway.routing.redirect import redirect_location
from gateway.routing.route import CompiledRoute, CompiledRule


class RoutingTable:
    """Listeners → hosts → routes → backends → endpoints, compiled."""

    __slots__ = (
        "_http",
        "_l4",
        "_protocols",
        "_shared",
        "backends",
        "gateway",
        "layout",
        "listeners",
        "rng",
        "routes",
        "slots",
        "variants",
        "version",
    )

    def __init__(
        self,
        *,
        version: str,
        gateway: GatewaySettings,
        listeners: tuple[Listener, ...],
        routes: tuple[CompiledRoute, ...],
        slots: tuple[CompiledBackend, ...],
        layout: BackendLayout,
        backends: Mapping[str, CompiledBackend],
        variants: Mapping[tuple[str, tuple[str, ...]], CompiledBackend],
        http: Mapping[str, HostIndex],
        l4: Mapping[str, HostIndex],
        rng: Random,
    ) -> None:
        self.version = version
        self.gateway = gateway
        self.listeners = listeners
        self.routes = routes
        self.slots = slots
        self.layout = layout
        self.backends = backends
        self.variants = variants
        self._http = dict(http)
        self._l4 = dict(l4)
        self._protocols = {lst.name: lst.protocol for lst in listeners}
        self._shared = {
            key: ListenerHosts(tuple((lst.name, lst.hostnames) for lst in group))
            for key, group in socket_groups(listeners).items()
            if len(group) > 1
        }
        self.rng = rng

    def warm(self) -> None:
        """Build every lazily built lookup structure now (see `CompiledBackend.warm`)."""
        for backend in self.slots:
            backend.warm()

    def with_backends(
        self,
        version: str,
        slots: tuple[CompiledBackend, ...],
        backends: Mapping[str, CompiledBackend],
        variants: Mapping[tuple[str, tuple[str, ...]], CompiledBackend],
    ) -> RoutingTable:
        """A new table with other compiled backends in the same layout, sharing the rest.

        Routes, rules (and what was built per rule), matches, host indexes,
        listeners and the load balancer's `rng` are the same objects as in
        this table; `slots` must follow `self.layout`.
        """
        table = RoutingTable(
            version=version,
            gateway=self.gateway,
            listeners=self.listeners,
            routes=self.routes,
            slots=slots,
            layout=self.layout,
            backends=backends,
            variants=variants,
            http={},
            l4={},
            rng=self.rng,
        )
        table._http = self._http
        table._l4 = self._l4
        table._protocols = self._protocols
        table._shared = self._shared
        return table

    def listener_for(self, socket: str, host: str) -> str | None:
        """Which listener of shared socket `socket` (`config.ports.socket_groups` key) the
        host (without port) belongs to; None when none of them takes it, or the socket is
        not shared in this table (a connection accepted before a reload changed it)."""
        hosts = self._shared.get(socket)
        return hosts.listener_for(host) if hosts is not None else None

    def backend_in(self, slot: int) -> CompiledBackend | None:
        """The backend in `slot`, None for `NO_SLOT` (admin API, CLI, explain)."""
        return self.slots[slot] if slot >= 0 else None

    def route_http(self, facts: RequestFacts, state: EndpointState, now: float = 0.0) -> Decision:
        """Route one HTTP request (see module docstring); `now` is monotonic seconds."""
        index = self._http.get(facts.listener)
        if index is None:
            return Decision(error=NO_ROUTE)
        for _, tier in index.tiers(facts.host):
            m = tier.find(facts)
            if m is not None:
                break
        else:
            return Decision(error=NO_ROUTE)
        return self._finish(m, facts, state, now)

    def _finish(
        self, m: CompiledMatch, facts: RequestFacts, state: EndpointState, now: float
    ) -> Decision:
        rule = m.rule
        if rule.redirect is not None:
            return self._redirect(m, facts)
        split = rule.split
        slot = split.single
        cookie = ""
        if slot < 0:
            slot, cookie = split.choose(facts, self.rng)
            if slot < 0:
                return Decision(m.route, rule, None, None, NO_HEALTHY_UPSTREAM)
            backend = self.slots[slot]
            if backend.usable_count(state, self.rng) == 0:
                backend = self._failover(rule, slot, backend, state)
        else:
            backend = self.slots[slot]
        endpoint = backend.pick(facts, state, self.rng, now, m.route.fail_closed)
        if endpoint is None:
            return Decision(m.route, rule, backend, None, NO_HEALTHY_UPSTREAM, set_cookie=cookie)
        if cookie:
            return Decision(m.route, rule, backend, endpoint, set_cookie=cookie)
        return Decision(m.route, rule, backend, endpoint)

    def _failover(
        self, rule: CompiledRule, slot: int, backend: CompiledBackend, state: EndpointState
    ) -> CompiledBackend:
        """The backend to use instead of empty `backend` (`gateway.routing.failover`)."""
        if not fails_over(rule):
            return backend
        other = failover_slot(rule.split, slot, self.slots, state, self.rng)
        return self.slots[other] if other >= 0 else backend

    def _redirect(self, m: CompiledMatch, facts: RequestFacts) -> Decision:
        rule = m.rule
        assert rule.redirect is not None
        https = self._protocols.get(facts.listener) is ListenerProtocol.HTTPS
        location = redirect_location(
            rule.redirect,
            rule.prefixes,
            scheme="https" if https else "http",
            host=facts.host,
            port=None,
            path=facts.path,
            query=facts.query,
        )
        return Decision(
            m.route,
            rule,
            error=REDIRECT,
            redirect_location=location,
            redirect_status=rule.redirect.status_code,
        )

    def match_http(self, facts: RequestFacts) -> CompiledMatch | None:
        """Only the match stage of `route_http` (admin API, tests)."""
        index = self._http.get(facts.listener)
        if index is None:
            return None
        for _, tier in index.tiers(facts.host):
            m = tier.find(facts)
            if m is not None:
                return m
        return None

    def route_tcp(
        self,
        listener: str,
        sni: str | None,
        client_ip: str,
        state: EndpointState,
        now: float = 0.0,
    ) -> Decision:
        """Route a TCP connection or TLS passthrough (route hostnames against SNI)."""
        index = self._l4.get(listener)
        if index is None:
            return Decision(error=NO_ROUTE)
        tiers = index.tiers(sni or "")
        if not tiers:
            return Decision(error=NO_ROUTE)
        m = tiers[0][1].matches[0]
        facts = RequestFacts(method="", host=sni or "", path="/", client_ip=client_ip)
        facts.listener = listener
        return self._finish(m, facts, state, now)

    def retry_pick(
        self, decision: Decision, tried: Iterable[str], state: EndpointState
    ) -> Endpoint | None:
        """Another endpoint of the decision's backend for a retry (None: nothing left)."""
        if decision.backend is None:
            return None
        return decision.backend.retry_pick(tried, state, self.rng)

    def http_index(self, listener: str) -> HostIndex | None:
        return self._http.get(listener)

    def listener_protocol(self, listener: str) -> ListenerProtocol | None:
        return self._protocols.get(listener)

    def describe(self) -> dict[str, Any]:
        """A JSON-able snapshot of what was compiled (admin API, CLI, equality)."""
        return {
            "version": self.version,
            "listeners": [
                {"name": lst.name, "protocol": lst.protocol.value, "port": lst.port}
                for lst in self.listeners
            ],
            "routes": [
                {
                    "name": r.name,
                    "listeners": list(r.listeners),
                    "hostnames": list(r.hostnames),
                    "allowedRegions": list(r.allowed_regions),
                    "rules": [
                        {
                            "name": u.name,
                            "backends": [
                                {"name": n, "weight": w, "endpoints": len(self.slots[s].endpoints)}
                                for s, n, w in zip(
                                    u.split.slots, u.split.names, u.split.weights, strict=True
                                )
                            ],
                            "canary": u.split.canary_name or None,
                        }
                        for u in r.rules
                    ],
                }
                for r in self.routes
            ],
            "backends": {
                name: {**b.describe(), "endpoints": [e.to_dict() for e in b.endpoints]}
                for name, b in self.backends.items()
            },
        }

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RoutingTable):
            return NotImplemented
        return self.describe() == other.describe()

    __hash__ = None  # type: ignore[assignment]
