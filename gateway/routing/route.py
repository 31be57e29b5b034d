"""Compiled routes and rules: what the HTTP proxy reads once a request matched.

A `CompiledRule` carries what routing needs per request (the chosen backends
in `split`, the timeouts and retry policy) and, in `plan`, whatever the
protocol layer built for it once: the compiler calls the `RulePlanner` it was
given (the HTTP proxy's is `gateway.http.plan.build_plan`, which builds the
rule's filter chain) when it compiles the rule, so nothing per rule is built
or looked up on the request path. Routing itself never reads `plan` and
never imports the protocol layer. Values are frozen; `config` keeps the
config objects for the planner and the admin API.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

from gateway.config.model import (
    AccessPolicy,
    Auth,
    PathMatchType,
    RateLimit,
    RequestRedirect,
    Retry,
    Route,
    Rule,
    Timeouts,
)
from gateway.routing.split import BackendSplit


def normalize_prefix(value: str) -> str:
    """`/abc/` → `/abc`; the root prefix `/` becomes `` (matches every path)."""
    return value.rstrip("/")


Plan = object
"""What a `RulePlanner` builds for a rule: routing carries it and never reads it
(the HTTP proxy's is `gateway.http.plan.RulePlan`). A module-level name, not
`object` in the annotation: compiled dataclasses resolve their field types in
the module's globals, where builtins are not."""


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRule:
    """One rule: backends, timeouts and retry policy, and the plan built for it."""

    name: str
    index: int
    split: BackendSplit
    timeouts: Timeouts
    retry: Retry | None
    rate_limit: RateLimit | None
    redirect: RequestRedirect | None = None
    """Set when the rule answers with a redirect: routing then picks no backend."""
    prefixes: tuple[str, ...] = ()
    """The rule's PathPrefix values, normalised, longest first (for prefix rewrites)."""
    config: Rule | None = field(default=None, repr=False)
    plan: Plan = field(default=None, repr=False)
    """What the compiler's `RulePlanner` built for this rule (None without one)."""


RulePlanner = Callable[[CompiledRule, Route], Plan]
"""Builds a rule's plan once, when the rule is compiled (see the module docstring)."""


def compile_rule(
    rule: Rule,
    index: int,
    route_name: str,
    split: BackendSplit,
    route: Route | None = None,
    plan_rule: RulePlanner | None = None,
) -> CompiledRule:
    prefixes = sorted(
        {
            normalize_prefix(m.path.value)
            for m in rule.matches
            if m.path.type is PathMatchType.PATH_PREFIX
        },
        key=len,
        reverse=True,
    )
    compiled = CompiledRule(
        name=rule.name or f"{route_name}/{index}",
        index=index,
        split=split,
        timeouts=rule.timeouts,
        retry=rule.retry,
        rate_limit=rule.rate_limit,
        redirect=rule.filters.redirect,
        prefixes=tuple(prefixes),
        config=rule,
    )
    if plan_rule is None or route is None:
        return compiled
    return replace(compiled, plan=plan_rule(compiled, route))


@dataclass(frozen=True, slots=True, eq=False)
class CompiledRoute:
    """A route attached to its listeners, with its rules in config order."""

    name: str
    index: int
    listeners: tuple[str, ...]
    hostnames: tuple[str, ...]
    allowed_regions: tuple[str, ...]
    rules: tuple[CompiledRule, ...]
    access: AccessPolicy | None = None
    auth: Auth | None = None
    config: Route | None = field(default=None, repr=False)
    fail_closed: bool = field(init=False)
    """The route's `panic: closed` (module `gateway.routing.backend`, `pick`)."""

    def __post_init__(self) -> None:
        closed = self.config is not None and self.config.panic == "closed"
        object.__setattr__(self, "fail_closed", closed)
