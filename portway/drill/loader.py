"""Load a drill scenario: parse, validate shape, check references; errors at file:line:col.

The same three stages as `gateway.config.loader`, with the same positioned
issues (`gateway.config.errors.ConfigIssue`): YAML syntax, the shape of
every value (pydantic against `portway.drill.scenario`), then the cross
references a drill depends on: fault targets that exist, times inside the
drill, fields that mean something for the fault's kind, expectations that
some fault can exercise, and the gateway config the scenario names (checked
with the gateway's own loader, `gateway_checks`). A registry the runner
cannot drive yet (Consul) is an error saying "not supported yet", never
silently ignored.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from gateway.config.errors import ConfigError, ConfigIssue, format_path
from gateway.config.errors import Path as DataPath
from gateway.config.model import GatewayConfig
from gateway.config.source import SourceMap, SourceSyntaxError, parse_source
from gateway.config.validation import did_you_mean
from portway.drill.gateway_checks import (
    DrillCertificates,
    Positions,
    check_gateway_config,
    gateway_issues,
    shifted_config_issues,
)
from portway.drill.scenario import FaultKind, Scenario

SUPPORTED_REGISTRIES = ("files", "etcd")
CLUSTER_KINDS = frozenset(
    {FaultKind.KILL_ENDPOINTS, FaultKind.STOP_CONTROLLER, FaultKind.BLACK_HOLE, FaultKind.SLOW}
)
FAILOVER_KINDS = CLUSTER_KINDS - {FaultKind.SLOW}
_FIELDS_OF_KIND: dict[FaultKind, frozenset[str]] = {
    FaultKind.KILL_ENDPOINTS: frozenset({"cluster", "service", "nodes", "publishNotReady"}),
    FaultKind.STOP_CONTROLLER: frozenset({"cluster", "service"}),
    FaultKind.BLACK_HOLE: frozenset({"cluster", "service", "nodes"}),
    FaultKind.SLOW: frozenset({"cluster", "service", "nodes", "delay"}),
    FaultKind.REGISTRY_OUTAGE: frozenset(),
    FaultKind.ROTATE_CERTIFICATE: frozenset({"listener"}),
    FaultKind.SHIFT_WEIGHTS: frozenset({"route", "rule", "weights", "canaryPercent"}),
}
_COMMON_FAULT_FIELDS = frozenset({"kind", "at", "until"})


@dataclass(frozen=True, slots=True)
class LoadedScenario:
    """A scenario ready to run: where it came from and the gateway config it starts.

    `certificates` are the HTTPS listeners' certificates the drill makes (by
    listener: relative cert and key paths, and the names to issue them for).
    """

    scenario: Scenario
    path: Path
    gateway_config_path: Path
    gateway_config: GatewayConfig
    certificates: DrillCertificates


class ScenarioError(ConfigError):
    """A scenario that cannot run; every issue at file:line:col."""


@functools.cache
def _adapter() -> TypeAdapter[Scenario]:
    return TypeAdapter(Scenario)


def load_scenario(path: str | os.PathLike[str]) -> LoadedScenario:
    """Read, validate and cross-check a scenario file; raises `ScenarioError`."""
    filename = os.fspath(path)
    try:
        text = Path(filename).read_text(encoding="utf-8-sig")
    except OSError as exc:
        issue = ConfigIssue(filename, 1, 1, "", f"cannot read: {exc.strerror}")
        raise ScenarioError([issue]) from None
    return load_scenario_text(text, filename)


def load_scenario_text(text: str, filename: str) -> LoadedScenario:
    try:
        parsed = parse_source(text, filename)
    except SourceSyntaxError as exc:
        raise ScenarioError([exc.issue]) from None
    data = parsed.data if parsed.data is not None else {}
    if not isinstance(data, dict):
        raise ScenarioError([_at(filename, parsed.positions, (), "a scenario is a mapping")])
    try:
        scenario = _adapter().validate_python(data)
    except ValidationError as exc:
        raise ScenarioError(_shape_issues(exc, data, parsed.positions, filename)) from None
    issues = list(_semantic_issues(scenario, data, parsed.positions, filename))
    config_path = (Path(filename).parent / scenario.gateway.config).resolve()
    report, certificates = check_gateway_config(config_path)
    issues.extend(report.errors)
    if report.config is not None:
        where = Positions(filename, parsed.positions)
        issues.extend(gateway_issues(scenario, report.config, certificates, where))
        issues.extend(shifted_config_issues(scenario, config_path, where))
    if issues or report.config is None:
        raise ScenarioError(issues)
    return LoadedScenario(scenario, Path(filename), config_path, report.config, certificates)


def _at(filename: str, positions: SourceMap, path: DataPath, message: str) -> ConfigIssue:
    line, column = positions.value_at(path)
    return ConfigIssue(filename, line + 1, column + 1, format_path(path), message)


def _key_at(filename: str, positions: SourceMap, path: DataPath, message: str) -> ConfigIssue:
    line, column = positions.key_at(path)
    return ConfigIssue(filename, line + 1, column + 1, format_path(path), message)


def _shape_issues(
    exc: ValidationError, data: Any, positions: SourceMap, filename: str
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    for error in exc.errors():
        path = _data_path(error["loc"], data)
        kind = error["type"]
        if kind == "missing":
            key = str(error["loc"][-1])
            issues.append(_at(filename, positions, path, f"missing required key '{key}'"))
        elif kind in ("unexpected_keyword_argument", "extra_forbidden"):
            key = str(error["loc"][-1])
            guess = did_you_mean(key, _allowed_keys(path[:-1], data))
            hint = f"; did you mean '{guess}'?" if guess else ""
            issues.append(_key_at(filename, positions, path, f"unknown key '{key}'{hint}"))
        else:
            message = str(error["msg"]).removeprefix("Value error, ")
            issues.append(_at(filename, positions, path, f"{message} (got {error['input']!r})"))
    return issues


def _data_path(loc: tuple[int | str, ...], data: Any) -> DataPath:
    path: list[int | str] = []
    node = data
    for part in loc:
        in_dict = isinstance(node, dict) and part in node
        in_list = isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)
        if in_dict or in_list:
            node = node[part]
            path.append(part)
        elif isinstance(node, dict):
            path.append(part)  # a key that is missing or not allowed
            break
    return tuple(path)


def _allowed_keys(path: DataPath, data: Any) -> list[str]:
    """Keys the scenario's JSON Schema allows at `path` (best effort, for "did you mean")."""
    schema = _adapter().json_schema(by_alias=True)
    node: dict[str, Any] = schema
    for part in path:
        node = _resolve(schema, node)
        if isinstance(part, int):
            node = node.get("items", {})
        else:
            node = node.get("properties", {}).get(part, {})
    return sorted(_resolve(schema, node).get("properties", {}))


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = schema["$defs"][node["$ref"].rsplit("/", 1)[-1]]
    for alternative in node.get("anyOf", ()):
        if "$ref" in alternative or "properties" in alternative:
            return _resolve(schema, alternative)
    return node


def _semantic_issues(
    scenario: Scenario, data: dict[str, Any], positions: SourceMap, filename: str
) -> Iterator[ConfigIssue]:
    def at(path: DataPath, message: str) -> ConfigIssue:
        return _at(filename, positions, path, message)

    if scenario.registry.type not in SUPPORTED_REGISTRIES:
        yield at(
            ("registry", "type"),
            f"registry type {scenario.registry.type!r} is not supported yet "
            f"(supported: {', '.join(SUPPORTED_REGISTRIES)})",
        )
    nodes: dict[str, str] = {}
    addresses: set[str] = set()
    labels: set[str] = set()
    for ci, cluster in enumerate(scenario.clusters):
        for ni, node in enumerate(cluster.nodes):
            if node.name in nodes:
                yield at(("clusters", ci, "nodes", ni, "name"), f"node {node.name!r} twice")
            if node.address in addresses:
                yield at(("clusters", ci, "nodes", ni, "address"), f"{node.address} twice")
            nodes[node.name] = cluster.name
            addresses.add(node.address)
        own = {n.name for n in cluster.nodes}
        for si, service in enumerate(cluster.services):
            labels.add(service.label or cluster.name)
            for name in set(service.nodes) - own:
                yield at(("clusters", ci, "services", si, "nodes"), f"no node {name!r} here")
    duration = scenario.traffic.duration_s
    clusters = {c.name: c for c in scenario.clusters}
    for fi, fault in enumerate(scenario.faults):
        path: DataPath = ("faults", fi)
        if fault.at_s >= duration:
            yield at((*path, "at"), f"starts at {fault.at_s:g} s, after the drill ends")
        if fault.until_s is not None and not fault.at_s < fault.until_s <= duration:
            yield at((*path, "until"), f"must lie after 'at' and within {duration:g} s")
        written = set(data["faults"][fi]) - _COMMON_FAULT_FIELDS
        for key in sorted(written - _FIELDS_OF_KIND[fault.kind]):
            yield _key_at(filename, positions, (*path, key), f"not used by {fault.kind.value}")
        if fault.kind in CLUSTER_KINDS:
            target = clusters.get(fault.cluster or "")
            if target is None:
                yield at((*path, "cluster"), f"{fault.kind.value} needs a cluster of this drill")
                continue
            if fault.service and fault.service not in {s.name for s in target.services}:
                yield at((*path, "service"), f"cluster {target.name} has no {fault.service!r}")
            for name in set(fault.nodes) - {n.name for n in target.nodes}:
                yield at((*path, "nodes"), f"cluster {target.name} has no node {name!r}")
        if fault.kind is FaultKind.ROTATE_CERTIFICATE:
            if not fault.listener:
                yield at(path, "rotate-certificate needs a listener")
            if fault.until_s is not None:
                yield at((*path, "until"), "a rotation is not undone; leave out 'until'")
        if fault.kind is FaultKind.SLOW and not fault.delay_s:
            yield at(path, "slow needs a delay")
        shift = fault.weights or fault.canary_percent is not None
        if fault.kind is FaultKind.SHIFT_WEIGHTS and not (fault.route and shift):
            yield at(path, "shift-weights needs a route and weights or canaryPercent")
    yield from _expectation_issues(scenario, labels, at)


def _expectation_issues(scenario: Scenario, labels: set[str], at: Any) -> Iterator[ConfigIssue]:
    expect = scenario.expect
    faults = scenario.faults
    duration = scenario.traffic.duration_s
    movers = [f for f in faults if f.kind in FAILOVER_KINDS]
    if expect.max_failover_s is not None and not movers:
        yield at(("expect", "maxFailoverSeconds"), "no fault here takes a cluster's endpoints away")
    if expect.max_failback_s is not None and not any(f.until_s is not None for f in movers):
        yield at(("expect", "maxFailbackSeconds"), "no fault here ends ('until') to fail back from")
    rotations = [f for f in faults if f.kind is FaultKind.ROTATE_CERTIFICATE]
    if expect.max_rotation_s is not None and not rotations:
        yield at(("expect", "maxCertificateRotationSeconds"), "no fault here rotates a certificate")
    if expect.max_p99_in_fault_ms is not None and not faults:
        yield at(("expect", "maxP99InFaultMs"), "the drill has no fault")
    ends = [f.until_s for f in faults]
    if expect.max_p99_after_fault_ms is not None and (not faults or None in ends):
        yield at(("expect", "maxP99AfterFaultMs"), "needs every fault to end ('until')")
    for i, bound in enumerate(expect.shares):
        if bound.label not in labels:
            known = ", ".join(sorted(labels))
            message = f"no service answers as {bound.label!r} (labels: {known})"
            yield at(("expect", "shares", i, "label"), message)
        if bound.min > bound.max:
            yield at(("expect", "shares", i), "min is above max")
        timed = bound.from_s is not None and bound.to_s is not None
        if (bound.window is None) == (not timed) or (bound.from_s is None) != (bound.to_s is None):
            yield at(("expect", "shares", i), "give either a window or both from and to")
        elif timed and not (bound.from_s or 0.0) < (bound.to_s or 0.0) <= duration:
            yield at(("expect", "shares", i, "to"), f"from < to <= {duration:g} s")
