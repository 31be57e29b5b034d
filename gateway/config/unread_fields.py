"""Fields another setting makes unread: written, valid, and ignored by the runtime.

A field can be enforced in general and still be dead in one config: `path`
of a registry whose `type` is etcd, `ringSize` of a least_request balancer,
`retry` on a TCP route (the TCP proxy retries connects by itself), `prefer`
beside explicit `priorities`. The gateway would accept such a config and do
something other than what it says, so each case is an error at the key that
should go, saying which setting makes it unread. A field is reported when
its value differs from its default (positions are found lazily, so whether
a key was written at all is not asked of every config).

Used by `gateway.config.semantic`; every check takes the report's `add` so
it reports with file:line:col like the rest.
"""

from __future__ import annotations

from typing import Final, Protocol

from gateway.config.errors import Path
from gateway.config.model import (
    Backend,
    LbPolicy,
    Listener,
    ListenerProtocol,
    LoadBalancer,
    Locality,
    Registry,
    Route,
    Rule,
    Timeouts,
)
from portway.model import KEY_PREFIX


class AddIssue(Protocol):
    def __call__(
        self, path: Path, message: str, *, at_key: bool = False, warn: bool = False
    ) -> None: ...


DEFAULT_PREFIX: Final = Registry().prefix
DEFAULT_TIMEOUTS: Final = Timeouts()
DEFAULT_BALANCER: Final = LoadBalancer()
DEFAULT_PREFER: Final = Locality().prefer
HASH_POLICIES: Final = frozenset({LbPolicy.RING_HASH, LbPolicy.MAGLEV})
POLICY_FIELDS: Final[dict[str, frozenset[LbPolicy]]] = {
    "hashOn": HASH_POLICIES,
    "choiceCount": frozenset({LbPolicy.LEAST_REQUEST}),
    "ringSize": frozenset({LbPolicy.RING_HASH}),
    "maglevTableSize": frozenset({LbPolicy.MAGLEV}),
}
"""Load balancer fields and the policies that read them."""


def check_registry(add: AddIssue, registry: Registry) -> None:
    """Settings one registry type reads and another would silently ignore."""
    path: Path = ("registry",)
    if registry.type != "files" and registry.path is not None:
        add(
            (*path, "path"),
            f"`path` is read only by the files registry, not {registry.type}; "
            "remove it or set `type: files`",
            at_key=True,
        )
    if registry.type == "files" and registry.endpoints:
        add(
            (*path, "endpoints"),
            "`endpoints` are read only by the etcd and consul registries; the files registry "
            "reads `path`",
            at_key=True,
        )
    if registry.type == "consul" and len(registry.endpoints) > 1:
        add(
            (*path, "endpoints"),
            f"the consul registry talks to one agent address; got {len(registry.endpoints)}",
        )
    if registry.type == "files" and registry.prefix != DEFAULT_PREFIX:
        add(
            (*path, "prefix"),
            "`prefix` is read only by the etcd and consul registries",
            at_key=True,
        )
    elif not registry.prefix.endswith(KEY_PREFIX):
        add((*path, "prefix"), f"a registry prefix ends with {KEY_PREFIX!r}")


def check_balancer(add: AddIssue, path: Path, backend: Backend) -> None:
    """Balancer fields the chosen policy does not read; `prefer` beside `priorities`."""
    balancer = backend.load_balancer
    policy = balancer.policy
    changed = {
        "hashOn": balancer.hash_on is not None,
        "choiceCount": balancer.choice_count != DEFAULT_BALANCER.choice_count,
        "ringSize": balancer.ring_size != DEFAULT_BALANCER.ring_size,
        "maglevTableSize": balancer.maglev_table_size != DEFAULT_BALANCER.maglev_table_size,
    }
    for key, readers in POLICY_FIELDS.items():
        key_path = (*path, "loadBalancer", key)
        if policy not in readers and changed[key]:
            names = " and ".join(sorted(reader.value for reader in readers))
            add(
                key_path,
                f"`{key}` is read only by {names}, not {policy.value}; "
                "remove it or change `policy`",
                at_key=True,
            )
    prefer_path = (*path, "locality", "prefer")
    if backend.locality.priorities and backend.locality.prefer != DEFAULT_PREFER:
        add(
            prefer_path,
            "`prefer` is not read when `priorities` are given (they define the levels); "
            "remove one of them",
            at_key=True,
        )


def check_tcp_listener(add: AddIssue, path: Path, listener: Listener) -> None:
    if listener.protocol is ListenerProtocol.TCP and listener.hostnames:
        add(
            (*path, "hostnames"),
            "a TCP listener cannot tell hostnames apart (use protocol TLS to route on SNI)",
            at_key=True,
        )


def check_layer4_route(add: AddIssue, path: Path, route: Route) -> None:
    """Route and rule fields a TCP/TLS connection has no use for."""
    if route.auth is not None:
        add(
            (*path, "auth"),
            "`auth` is read only by HTTP routes: a TCP/TLS connection carries no credentials "
            "the gateway can see (use `access` to limit who connects)",
            at_key=True,
        )
    for index, rule in enumerate(route.rules):
        _check_layer4_rule(add, (*path, "rules", index), rule)


def _check_layer4_rule(add: AddIssue, path: Path, rule: Rule) -> None:
    http_only = {"retry": rule.retry, "rateLimit": rule.rate_limit}
    for key, value in http_only.items():
        if value is not None:
            add(
                (*path, key),
                f"`{key}` is read only by HTTP routes; a TCP/TLS route tries another endpoint "
                "on a failed connect by itself and has no requests to count",
                at_key=True,
            )
    timeouts = rule.timeouts
    if timeouts.request_s != DEFAULT_TIMEOUTS.request_s or timeouts.backend_request_s:
        add(
            (*path, "timeouts"),
            "a TCP/TLS route reads `timeouts.connect` and `timeouts.idle` only; `request` and "
            "`backendRequest` bound HTTP requests",
            at_key=True,
        )
    if rule.canary is not None and rule.canary.sticky:
        add(
            (*path, "canary", "sticky"),
            "a TCP/TLS canary cannot be sticky: a connection carries no cookie",
            at_key=True,
        )
