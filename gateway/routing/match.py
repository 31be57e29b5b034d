"""Request matching: one compiled `RouteMatch` and the per-host index of them.

Theory of operation. Gateway API orders the matches of all routes that share
a hostname by: Exact path > longest PathPrefix > RegularExpression; then a
method match; then the most header matches; then the most query matches;
then config order. `MatchSet` holds one hostname tier's matches so the first
hit in that order is found without scanning everything:

- Exact paths sit in a dict keyed by path;
- PathPrefix values, normalised without their trailing `/` (so `/abc` and
  `/abc/` are the same prefix and `/abcd` never matches it), sit in a dict
  keyed by prefix; the request path is cut only at the lengths some prefix
  has, longest first, and only where the next character is `/`;
- regular expressions (`re.fullmatch`) are tried last, in order.

Each dict bucket is already sorted by the remaining precedence keys, and a
match without method/header/query conditions (`plain`) is taken at once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import parse_qsl

from gateway.config.model import PathMatchType, RouteMatch, StringMatchType
from gateway.routing.facts import RequestFacts
from gateway.routing.route import CompiledRoute, CompiledRule, normalize_prefix

ValueMatch = tuple[str, str, "re.Pattern[str] | None"]


@dataclass(frozen=True, slots=True, eq=False)
class CompiledMatch:
    """One `RouteMatch` of one rule, ready to test against request facts."""

    route: CompiledRoute
    rule: CompiledRule
    path_type: PathMatchType
    path: str
    path_regex: re.Pattern[str] | None
    method: str | None
    headers: tuple[ValueMatch, ...]
    queries: tuple[ValueMatch, ...]
    order: tuple[int, int, int]
    plain: bool = field(init=False)

    def __post_init__(self) -> None:
        plain = self.method is None and not self.headers and not self.queries
        object.__setattr__(self, "plain", plain)

    @classmethod
    def build(
        cls,
        route: CompiledRoute,
        rule: CompiledRule,
        match: RouteMatch,
        order: tuple[int, int, int],
    ) -> CompiledMatch:
        ptype = match.path.type
        value = match.path.value
        regex = re.compile(value) if ptype is PathMatchType.REGULAR_EXPRESSION else None
        if ptype is PathMatchType.PATH_PREFIX:
            value = normalize_prefix(value)
        return cls(
            route=route,
            rule=rule,
            path_type=ptype,
            path=value,
            path_regex=regex,
            method=match.method,
            headers=tuple(_value_match(h.name.lower(), h.value, h.type) for h in match.headers),
            queries=tuple(_value_match(q.name, q.value, q.type) for q in match.query_params),
            order=order,
        )

    def precedence(self) -> tuple[int, int, int, int, int, tuple[int, int, int]]:
        """Sort key: smaller wins (see module docstring)."""
        kind = {
            PathMatchType.EXACT: 0,
            PathMatchType.PATH_PREFIX: 1,
            PathMatchType.REGULAR_EXPRESSION: 2,
        }[self.path_type]
        length = -len(self.path) if self.path_type is PathMatchType.PATH_PREFIX else 0
        return (
            kind,
            length,
            0 if self.method else 1,
            -len(self.headers),
            -len(self.queries),
            self.order,
        )

    def path_holds(self, path: str) -> bool:
        if self.path_type is PathMatchType.EXACT:
            return path == self.path
        if self.path_type is PathMatchType.PATH_PREFIX:
            p = self.path
            return path == p or path.startswith(p + "/") or (p == "" and path.startswith("/"))
        assert self.path_regex is not None
        return self.path_regex.fullmatch(path) is not None

    def conditions_hold(self, facts: RequestFacts) -> bool:
        """Method, headers and query parameters (the path is checked by the index)."""
        return self.why_not_conditions(facts) is None

    def why_not_conditions(self, facts: RequestFacts) -> str | None:
        """None when method/headers/query hold, else a human reason."""
        if self.method is not None and facts.method != self.method:
            return f"method {facts.method} is not {self.method}"
        headers = facts.headers
        for name, value, regex in self.headers:
            got = headers.get(name)
            if not _value_holds(got, value, regex):
                return f"header {name}: {got!r} does not match {value!r}"
        if self.queries:
            params: dict[str, str] = {}
            for k, v in parse_qsl(facts.query, keep_blank_values=True):
                params.setdefault(k, v)
            for name, value, regex in self.queries:
                got = params.get(name)
                if not _value_holds(got, value, regex):
                    return f"query {name}: {got!r} does not match {value!r}"
        return None

    def why_not(self, facts: RequestFacts) -> str | None:
        """None when the whole match holds, else a human reason (for explain)."""
        if not self.path_holds(facts.path):
            return f"path {facts.path!r} does not match {self.describe_path()}"
        return self.why_not_conditions(facts)

    def describe_path(self) -> str:
        if self.path_type is PathMatchType.PATH_PREFIX:
            return f"PathPrefix {self.path or '/'!r}"
        return f"{self.path_type.value} {self.path!r}"

    def describe(self) -> str:
        parts = [self.describe_path()]
        if self.method:
            parts.append(f"method {self.method}")
        parts += [f"header {n}={v!r}" for n, v, _ in self.headers]
        parts += [f"query {n}={v!r}" for n, v, _ in self.queries]
        return ", ".join(parts)


def _value_match(name: str, value: str, kind: StringMatchType) -> ValueMatch:
    regex = re.compile(value) if kind is StringMatchType.REGULAR_EXPRESSION else None
    return (name, value, regex)


def _value_holds(got: str | None, value: str, regex: re.Pattern[str] | None) -> bool:
    if got is None:
        return False
    if regex is None:
        return got == value
    return regex.fullmatch(got) is not None


class MatchSet:
    """The matches of one hostname tier, indexed for first-hit-in-precedence lookup."""

    __slots__ = ("_exact", "_lengths", "_prefix", "_regex", "matches")

    def __init__(self, matches: Sequence[CompiledMatch]) -> None:
        ordered = sorted(matches, key=CompiledMatch.precedence)
        self.matches: tuple[CompiledMatch, ...] = tuple(ordered)
        exact: dict[str, list[CompiledMatch]] = {}
        prefix: dict[str, list[CompiledMatch]] = {}
        regex: list[CompiledMatch] = []
        for m in ordered:
            if m.path_type is PathMatchType.EXACT:
                exact.setdefault(m.path, []).append(m)
            elif m.path_type is PathMatchType.PATH_PREFIX:
                prefix.setdefault(m.path, []).append(m)
            else:
                regex.append(m)
        self._exact = {k: tuple(v) for k, v in exact.items()}
        self._prefix = {k: tuple(v) for k, v in prefix.items()}
        self._lengths = tuple(sorted({len(k) for k in prefix}, reverse=True))
        self._regex = tuple(regex)

    def find(self, facts: RequestFacts) -> CompiledMatch | None:
        """The first match in precedence order that holds for `facts`, or None."""
        path = facts.path
        bucket = self._exact.get(path)
        if bucket is not None:
            for m in bucket:
                if m.plain or m.conditions_hold(facts):
                    return m
        n = len(path)
        prefix = self._prefix
        for length in self._lengths:
            if length > n:
                continue
            if length == n:
                bucket = prefix.get(path)
            elif path[length] == "/":
                bucket = prefix.get(path[:length])
            else:
                continue
            if bucket is not None:
                for m in bucket:
                    if m.plain or m.conditions_hold(facts):
                        return m
        for m in self._regex:
            regex = m.path_regex
            if (
                regex is not None
                and regex.fullmatch(path) is not None
                and (m.plain or m.conditions_hold(facts))
            ):
                return m
        return None
