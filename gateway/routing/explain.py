"""Why a request goes where it goes: `explain_http(table, ...)`, slowly and in words.

Walks the same chain as `route_http` (listener → hostname tiers → matches in
precedence order → backend split → locality levels → picker) and records a
human line per decision. The result is a real decision drawn with the table's
own randomness, so explaining a canary request twice may land on different
sides, exactly as two real requests would.
"""

from __future__ import annotations

from gateway.routing.backend import CompiledBackend
from gateway.routing.decision import (
    NO_HEALTHY_UPSTREAM,
    NO_ROUTE,
    Decision,
    RequestFacts,
)
from gateway.routing.endpoints import Endpoint, EndpointState
from gateway.routing.failover import failover_slot, fails_over
from gateway.routing.match import CompiledMatch, MatchSet
from gateway.routing.table import RoutingTable


def explain_http(
    table: RoutingTable, facts: RequestFacts, state: EndpointState, now: float = 0.0
) -> Decision:
    """Route like `table.route_http`, with `steps` saying why at each stage."""
    steps: list[str] = []
    target = f"{facts.method} {facts.host}{facts.path}" + (f"?{facts.query}" if facts.query else "")
    listener = facts.listener or "(any HTTP listener)"
    steps.append(f"request {target} from {facts.client_ip or '?'} on listener {listener}")
    index = table.http_index(facts.listener)
    if index is None:
        steps.append(f"no HTTP listener named {facts.listener!r}")
        return Decision(error=NO_ROUTE, steps=steps)
    _unattached(table, facts, index.tiers(facts.host), steps)
    winner: CompiledMatch | None = None
    for label, tier in index.tiers(facts.host):
        names = sorted({m.route.name for m in tier.matches})
        steps.append(f"hostname tier {label}: routes {', '.join(names)}")
        for m in tier.matches:
            where = f"  route {m.route.name} rule {m.rule.name} [{m.describe()}]"
            if winner is not None:
                steps.append(f"{where}: not considered (lower precedence than the winner)")
                continue
            reason = m.why_not(facts)
            if reason is None:
                winner = m
                steps.append(f"{where}: MATCHES (first in precedence order)")
            else:
                steps.append(f"{where}: no, {reason}")
        if winner is not None:
            break
    if winner is None:
        steps.append("no route matches → 404 no_route")
        return Decision(error=NO_ROUTE, steps=steps)
    rule = winner.rule
    if rule.redirect is not None:
        decision = table.route_http(facts, state, now)
        steps.append(
            f"rule redirects: {decision.redirect_status} Location: {decision.redirect_location}"
        )
        decision.steps = steps
        return decision
    why: list[str] = []
    slot, cookie = rule.split.choose(facts, table.rng, why)
    backend = table.backend_in(slot)
    steps += [f"backend: {w}" for w in why]
    if backend is None:
        steps.append("no backend to send to → 503 no_healthy_upstream")
        return Decision(winner.route, rule, None, None, NO_HEALTHY_UPSTREAM, steps=steps)
    if rule.split.single < 0 and backend.usable_count(state, table.rng) == 0:
        if not fails_over(rule):
            steps.append(f"backend {backend.name} has no usable endpoint; onEmpty: fail")
        else:
            moved: list[str] = []
            other = failover_slot(rule.split, slot, table.slots, state, table.rng, moved)
            steps += [f"failover: {w}" for w in moved]
            if other >= 0:
                steps.append(
                    f"failover: backend {backend.name} has no usable endpoint; its share goes "
                    f"to the rule's other backends by weight → {table.slots[other].name}"
                )
                backend = table.slots[other]
            else:
                steps.append("failover: no other backend of the rule has a usable endpoint")
    describe_backend(backend, state, table, steps)
    fail_closed = winner.route.fail_closed
    if fail_closed and backend.plan(state, table.rng).load.panic:
        steps.append("  route panic: closed → only usable endpoints, 503 when there are none")
    endpoint = backend.pick(facts, state, table.rng, now, fail_closed)
    if endpoint is None:
        steps.append("no endpoint may take the request → 503 no_healthy_upstream")
        return Decision(
            winner.route, rule, backend, None, NO_HEALTHY_UPSTREAM, set_cookie=cookie, steps=steps
        )
    steps.append(
        f"endpoint {endpoint.key} (node {endpoint.node or '-'}, zone {endpoint.zone or '-'}, "
        f"region {endpoint.region or '-'}) by {backend.policy.value}"
    )
    return Decision(winner.route, rule, backend, endpoint, set_cookie=cookie, steps=steps)


def describe_backend(
    backend: CompiledBackend, state: EndpointState, table: RoutingTable, steps: list[str]
) -> None:
    """Lines about the backend's levels, their health and shares, and panic."""
    plan = backend.plan(state, table.rng)
    load = plan.load
    regions = (
        f", allowed regions {list(backend.allowed_regions)}" if backend.allowed_regions else ""
    )
    steps.append(
        f"backend {backend.name}: {len(backend.endpoints)} endpoints in "
        f"{len(backend.levels)} locality levels{regions}, policy {backend.policy.value}"
    )
    factor = backend.locality.overprovisioning_factor
    for i, (name, level) in enumerate(zip(backend.level_names, backend.levels, strict=True)):
        up = [e for e in level if e.ready and state.available(e.key)]
        line = (
            f"  level {i} ({name}): {len(up)}/{len(level)} available, health "
            f"{load.health[i]:.1f}% (×{factor:g}, capped at 100), gets {load.shares[i]:.1f}%"
        )
        if load.shares[i] <= 0 and not load.panic:
            line += (
                " — skipped: no endpoint may take traffic"
                if not up
                else " — skipped: the levels before it cover all traffic"
            )
        steps.append(line)
        out = [e for e in level if e not in up]
        for e in out[:5]:
            steps.append(f"    {e.key} out: {_why_out(e, state)}")
        if len(out) > 5:
            steps.append(f"    … and {len(out) - 5} more out of rotation")
    if load.panic:
        steps.append(
            f"  PANIC: total health {load.total_health:.1f}% < threshold "
            f"{backend.locality.panic_threshold:g}%: routing over all endpoints, ignoring health"
        )
    elif backend.levels:
        steps.append(
            f"  no panic: total health {load.total_health:.1f}% ≥ threshold "
            f"{backend.locality.panic_threshold:g}%"
        )


def _why_out(endpoint: Endpoint, state: EndpointState) -> str:
    key = endpoint.key
    reasons = []
    if not endpoint.ready:
        reasons.append("node NotReady in its cluster's record")
    if key in state.unhealthy:
        reasons.append("failed active health checks")
    if key in state.ejected:
        reasons.append("ejected by outlier detection")
    if key in state.draining:
        reasons.append("draining")
    return ", ".join(reasons) or "?"


def _unattached(
    table: RoutingTable,
    facts: RequestFacts,
    tiers: tuple[tuple[str, MatchSet], ...],
    steps: list[str],
) -> None:
    considered = {m.route.name for _, tier in tiers for m in tier.matches}
    for route in table.routes:
        if route.name in considered:
            continue
        if facts.listener and route.listeners and facts.listener not in route.listeners:
            steps.append(f"route {route.name}: not attached to listener {facts.listener}")
        elif route.hostnames:
            steps.append(f"route {route.name}: hostnames {list(route.hostnames)} do not match")
        else:
            steps.append(f"route {route.name}: not attached to this listener")
