"""The rollouts a config declares, and the config with their weights applied.

A rule whose canary has a `rollout` is a rollout target, named
`<route>/<rule>` (the rule's `name`, else its index). Its spec (steps and
limits, the canary and the stable backends) has a digest; a stored status
of another digest belongs to an earlier rollout and counts as none, so
changing the rollout, the canary or the stable side starts a new one from
pending.

`with_weights` is how rollout state reaches routing: the compile input is
the file's config with each target rule's canary `percent` replaced by its
rollout's weight, so a table is a pure function of config, records and
rollout states (`gateway.runtime.reload`, through `RolloutWeights`). At 0%
and at 100% the sticky cookie stops pinning clients, so a rollback really
returns every client to the stable side and a promotion sends every client
to the canary.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, replace

from gateway.config.model import Canary, GatewayConfig, Rollout, Route, Rule
from gateway.rollout.machine import RolloutSpec, RolloutStatus, Step, initial


@dataclass(frozen=True, slots=True)
class RolloutTarget:
    """One rule under a rollout."""

    name: str
    route: str
    route_index: int
    rule_index: int
    canary: str
    stable: tuple[tuple[str, int], ...]
    """The rule's backendRefs: (backend, weight)."""
    spec: RolloutSpec


def rule_name(rule: Rule, index: int) -> str:
    return rule.name if rule.name else str(index)


def spec_of(rollout: Rollout, canary: Canary, stable: tuple[tuple[str, int], ...]) -> RolloutSpec:
    steps = tuple(Step(s.percent, s.pause_s) for s in rollout.steps)
    identity = {
        "canary": canary.backend,
        "stable": [list(ref) for ref in stable],
        "steps": [[s.percent, s.hold_s] for s in steps],
        "maxErrorRate": rollout.max_error_rate,
        "maxP99": rollout.max_p99_s,
        "minRequests": rollout.min_requests,
        "rollbackOnFailure": rollout.rollback_on_failure,
    }
    digest = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]
    return RolloutSpec(
        steps=steps,
        max_error_rate=rollout.max_error_rate,
        max_p99_s=rollout.max_p99_s,
        min_requests=rollout.min_requests,
        rollback_on_failure=rollout.rollback_on_failure,
        digest=digest,
    )


def rollout_targets(config: GatewayConfig) -> tuple[RolloutTarget, ...]:
    """Every rule of `config` with a rollout, in config order."""
    out: list[RolloutTarget] = []
    for ri, route in enumerate(config.routes):
        for ui, rule in enumerate(route.rules):
            canary = rule.canary
            if canary is None or canary.rollout is None:
                continue
            stable = tuple((ref.name, ref.weight) for ref in rule.backend_refs)
            out.append(
                RolloutTarget(
                    name=f"{route.name}/{rule_name(rule, ui)}",
                    route=route.name,
                    route_index=ri,
                    rule_index=ui,
                    canary=canary.backend,
                    stable=stable,
                    spec=spec_of(canary.rollout, canary, stable),
                )
            )
    return tuple(out)


def effective(target: RolloutTarget, stored: RolloutStatus | None) -> RolloutStatus:
    """The stored status when it belongs to this spec, else a new pending one."""
    if stored is None or stored.spec != target.spec.digest:
        return initial(target.spec)
    return stored


def weights_for(
    targets: tuple[RolloutTarget, ...], states: Mapping[str, RolloutStatus]
) -> dict[str, float]:
    """Each target's canary weight under `states` (rollout name → stored status)."""
    return {t.name: effective(t, states.get(t.name)).weight for t in targets}


def with_weights(
    config: GatewayConfig,
    weights: Mapping[str, float],
    targets: tuple[RolloutTarget, ...] | None = None,
) -> GatewayConfig:
    """`config` with each rollout rule's canary at its weight (see the module docstring).

    Returns `config` itself when it has no rollout, so a config without one
    compiles exactly as before. `targets` are `rollout_targets(config)` when the
    caller has them already.
    """
    targets = rollout_targets(config) if targets is None else targets
    if not targets:
        return config
    by_route: dict[int, dict[int, float]] = {}
    for t in targets:
        by_route.setdefault(t.route_index, {})[t.rule_index] = weights.get(t.name, 0.0)
    routes = list(config.routes)
    for ri, rules in by_route.items():
        routes[ri] = _route_with(routes[ri], rules)
    return replace(config, routes=tuple(routes))


def _route_with(route: Route, weights: Mapping[int, float]) -> Route:
    rules = list(route.rules)
    for ui, weight in weights.items():
        canary = rules[ui].canary
        assert canary is not None
        sticky = canary.sticky and 0.0 < weight < 100.0
        rules[ui] = replace(rules[ui], canary=replace(canary, percent=weight, sticky=sticky))
    return replace(route, rules=tuple(rules))


class RolloutWeights:
    """The rollouts' stored statuses as a reloader last heard them, and the weights in force.

    Statuses are polled often and most polls change no weight: `changed`
    tells whether a recompile is due. Each config's targets are found once.
    """

    def __init__(self) -> None:
        self._statuses: dict[str, RolloutStatus] = {}
        self._targets_of: tuple[GatewayConfig | None, tuple[RolloutTarget, ...]] = (None, ())
        self.in_force: Mapping[str, float] = {}
        """Each rollout's canary weight in the table in force, by rollout name."""

    def heard(self, statuses: Mapping[str, RolloutStatus]) -> None:
        """Every stored rollout status, by rollout name (the rollout runner's poll)."""
        self._statuses = dict(statuses)

    def targets(self, config: GatewayConfig) -> tuple[RolloutTarget, ...]:
        cached, targets = self._targets_of
        if cached is not config:
            targets = rollout_targets(config)
            self._targets_of = (config, targets)
        return targets

    def changed(self, config: GatewayConfig) -> bool:
        """Whether the statuses heard give `config` other weights than those in force."""
        return weights_for(self.targets(config), self._statuses) != self.in_force

    def weighted(self, config: GatewayConfig) -> tuple[GatewayConfig, dict[str, float]]:
        """`config` at the statuses' weights (what to compile), and those weights."""
        targets = self.targets(config)
        weights = weights_for(targets, self._statuses)
        return with_weights(config, weights, targets), weights
