"""The drill's gateway config, checked for the drill: the scenario's faults against it.

`check_gateway_config` runs `portway check` on it; certificates the drill
will make (HTTPS listeners with relative paths, `drill_certificates`) do not
exist yet, so the check runs on the text with throwaway ones in their place.
`gateway_issues` checks what the scenario needs of the config (its registry,
the routes and listeners faults name), `shifted_config_issues` that every
weight shift leaves a config the gateway accepts; both report at the
scenario's positions.
"""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from gateway.config.errors import ConfigIssue, format_path
from gateway.config.errors import Path as DataPath
from gateway.config.loader import ConfigReport, check_config_file, check_config_text
from gateway.config.model import GatewayConfig
from gateway.config.source import SourceMap
from portway.drill.scenario import Fault, FaultKind, Scenario

CertificateFiles = tuple[str, str, tuple[str, ...]]  # cert file, key file, names
DrillCertificates = dict[str, tuple[CertificateFiles, ...]]  # by listener


@dataclass(frozen=True, slots=True)
class Positions:
    """Where the scenario's values are, to report at them."""

    filename: str
    source: SourceMap

    def at(self, path: DataPath, message: str) -> ConfigIssue:
        line, column = self.source.value_at(path)
        return ConfigIssue(self.filename, line + 1, column + 1, format_path(path), message)


def drill_certificates(data: Any) -> DrillCertificates:
    """HTTPS listeners whose certificate paths are all relative: the drill makes those."""
    made: DrillCertificates = {}
    for lst in (data or {}).get("listeners") or ():
        certs = ((lst.get("tls") or {}).get("certificates")) or ()
        paths = [(str(c.get("certFile", "")), str(c.get("keyFile", ""))) for c in certs]
        if not certs or any(os.path.isabs(p) or not p for pair in paths for p in pair):
            continue
        address = str(lst.get("address", "127.0.0.1"))
        made[str(lst.get("name"))] = tuple(
            (cert, key, tuple(dict.fromkeys((*(c.get("hostnames") or ()), address))))
            for (cert, key), c in zip(paths, certs, strict=True)
        )
    return made


def check_gateway_config(
    path: Path,
) -> tuple[ConfigReport, dict[str, tuple[CertificateFiles, ...]]]:
    """`portway check` on the drill's gateway config. Certificates the drill will make do not
    exist yet: the check runs on the text with throwaway ones in their place (same lines)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = YAML(typ="rt").load(text)
    except (OSError, YAMLError):
        return check_config_file(path), {}
    made = drill_certificates(data) if isinstance(data, dict) else {}
    if not made:
        return check_config_file(path), {}
    from portway.drill.certs import DrillCa, install

    ca = DrillCa()
    with tempfile.TemporaryDirectory(prefix="portway-drill-check-") as tmp:
        for lst in data["listeners"]:
            for index, cert in enumerate((lst.get("tls") or {}).get("certificates") or ()):
                if str(lst.get("name")) not in made:
                    continue
                names = made[str(lst["name"])][index][2]
                cert_file, key_file = Path(tmp, cert["certFile"]), Path(tmp, cert["keyFile"])
                install(ca.issue(names), cert_file, key_file)
                cert["certFile"], cert["keyFile"] = str(cert_file), str(key_file)
        yaml = YAML(typ="rt")
        yaml.width = 1 << 16
        out = io.StringIO()
        yaml.dump(data, out)
        report = check_config_text(out.getvalue(), str(path))
    return report, made


def gateway_issues(
    scenario: Scenario, config: GatewayConfig, certificates: DrillCertificates, where: Positions
) -> Iterator[ConfigIssue]:
    at = where.at

    registry = config.registry
    if scenario.registry.type == "etcd":
        loopback = [e for e in registry.endpoints if e.startswith("http://127.")]
        if registry.type != "etcd" or len(registry.endpoints) != 1 or not loopback:
            yield at(
                ("gateway", "config"),
                "an etcd drill's gateway config needs an etcd registry with one endpoint "
                "http://127.x.x.x:PORT (where the drill runs its etcd)",
            )
    elif registry.type != "files" or not registry.path or os.path.isabs(registry.path):
        yield at(
            ("gateway", "config"),
            "the drill's gateway config needs a files registry with a relative path "
            "(the drill runs the gateway in its own working directory)",
        )
    routes = {r.name: r for r in config.routes}
    listeners = {lst.name: lst for lst in config.listeners}
    for fi, fault in enumerate(scenario.faults):
        path: DataPath = ("faults", fi)
        if fault.kind is FaultKind.ROTATE_CERTIFICATE and fault.listener:
            listener = listeners.get(fault.listener)
            if listener is None or listener.tls is None:
                yield at((*path, "listener"), f"no HTTPS listener {fault.listener!r} in the config")
            elif fault.listener not in certificates:
                yield at(
                    (*path, "listener"),
                    "its certificate paths must be relative: the drill makes and rotates them",
                )
        if fault.kind is not FaultKind.SHIFT_WEIGHTS or not fault.route:
            continue
        route = routes.get(fault.route)
        if route is None:
            yield at((*path, "route"), f"no route {fault.route!r} in the gateway config")
            continue
        if fault.rule >= len(route.rules):
            yield at((*path, "rule"), f"route {route.name} has {len(route.rules)} rule(s)")
            continue
        rule = route.rules[fault.rule]
        refs = {ref.name for ref in rule.backend_refs}
        for name in sorted(set(fault.weights or ()) - refs):
            yield at((*path, "weights"), f"the rule has no backendRef {name!r}")
        if fault.canary_percent is not None and rule.canary is None:
            yield at((*path, "canaryPercent"), "the rule has no canary")


def shifted_config_issues(
    scenario: Scenario, config_path: Path, where: Positions
) -> Iterator[ConfigIssue]:
    """A weight shift must leave a config the gateway accepts; else the gateway would keep
    its last good config and the drill would judge a shift that never happened."""
    text = config_path.read_text(encoding="utf-8")
    for fi, fault in enumerate(scenario.faults):
        if fault.kind is not FaultKind.SHIFT_WEIGHTS:
            continue
        try:
            shifted = shifted_config(text, fault)
        except (KeyError, IndexError, StopIteration, TypeError) as exc:
            yield where.at(("faults", fi), f"cannot apply to the config: {exc}")
            continue
        for issue in check_config_text(shifted, str(config_path)).errors:
            message = f"the shifted gateway config would be rejected: {issue.path}: {issue.message}"
            yield where.at(("faults", fi), message)


def shifted_config(text: str, fault: Fault) -> str:
    """The config text with the fault's rule re-weighted; comments and layout kept."""
    yaml = YAML(typ="rt")
    data: Any = yaml.load(text)
    route = next(r for r in data["routes"] if r["name"] == fault.route)
    rule = route["rules"][fault.rule]
    for ref in rule["backendRefs"]:
        if fault.weights and ref["name"] in fault.weights:
            ref["weight"] = fault.weights[ref["name"]]
    if fault.canary_percent is not None:
        rule["canary"]["percent"] = fault.canary_percent
    out = io.StringIO()
    yaml.dump(data, out)
    return out.getvalue()
