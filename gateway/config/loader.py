"""Load a routing config file: parse, validate shape, check cross references.

Three stages, each reporting `ConfigIssue`s with file:line:column:

1. `source.parse_source`: YAML/JSON syntax (one issue, parsing stops there);
2. `validation.validate_shape`: pydantic against the model, every error,
   and `unsupported.unsupported_issues`: fields written that the gateway
   does not enforce yet;
3. `semantic.check_semantics`: names that must resolve, combinations that
   cannot work; runs only when the shape is valid, and may add warnings;
   with it, `referenced_files`: every file the config names exists and is
   what it must be (certificate, key matching it, JWKS, ...).

`check_config_text` returns everything found (for `portway check` and for
hot reload, which logs warnings and keeps the last good config on errors);
`load_config` / `load_config_text` return the config or raise `ConfigError`.
`config_digest` names a config version for the admin API and metrics.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import os
from dataclasses import dataclass

from gateway.config.errors import ConfigError, ConfigIssue, Severity, sort_issues
from gateway.config.model import GatewayConfig
from gateway.config.referenced_files import check_referenced_files
from gateway.config.semantic import check_semantics
from gateway.config.source import SourceSyntaxError, parse_source
from gateway.config.unsupported import unsupported_issues
from gateway.config.validation import validate_shape

DIGEST_CHARS = 12
DEMO_RESOURCE = "demo.yaml"


def config_digest(text: str) -> str:
    """A short, stable version id of a config's text: the first 12 hex digits of SHA-256."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:DIGEST_CHARS]


@dataclass(frozen=True, slots=True)
class ConfigReport:
    """The outcome of checking one config: the config if usable, and every issue."""

    filename: str
    digest: str
    config: GatewayConfig | None
    issues: tuple[ConfigIssue, ...]

    @property
    def errors(self) -> tuple[ConfigIssue, ...]:
        return tuple(issue for issue in self.issues if issue.is_error)

    @property
    def warnings(self) -> tuple[ConfigIssue, ...]:
        return tuple(issue for issue in self.issues if not issue.is_error)

    @property
    def ok(self) -> bool:
        """True when the config can be used (warnings allowed)."""
        return self.config is not None and not self.errors


def check_config_text(text: str, filename: str = "<string>") -> ConfigReport:
    """Run all three stages on `text`; never raises for problems in the text."""
    digest = config_digest(text)
    try:
        parsed = parse_source(text, filename)
    except SourceSyntaxError as exc:
        return ConfigReport(filename, digest, None, (exc.issue,))
    unsupported = unsupported_issues(parsed.data, parsed.positions, filename)
    config, issues = validate_shape(parsed.data, parsed.positions, filename)
    if config is None:
        return ConfigReport(filename, digest, None, sort_issues([*issues, *unsupported]))
    found = sort_issues(
        [
            *check_semantics(config, parsed.positions, filename),
            *check_referenced_files(parsed.data, parsed.positions, filename),
            *unsupported,
        ]
    )
    usable = config if not any(issue.is_error for issue in found) else None
    return ConfigReport(filename, digest, usable, found)


def check_config_file(path: str | os.PathLike[str]) -> ConfigReport:
    """Read and check a file; an unreadable file is reported as an issue at 1:1."""
    filename = os.fspath(path)
    try:
        with open(filename, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        issue = ConfigIssue(filename, 1, 1, "", f"cannot read the file: {reason}", Severity.ERROR)
        return ConfigReport(filename, "", None, (issue,))
    return check_config_text(text, filename)


def load_config_text(text: str, filename: str = "<string>") -> GatewayConfig:
    """The config in `text`, or `ConfigError` listing every issue (warnings included)."""
    return _usable(check_config_text(text, filename))


def load_config(path: str | os.PathLike[str]) -> GatewayConfig:
    """The config in the file at `path`, or `ConfigError` listing every issue."""
    return _usable(check_config_file(path))


def _usable(report: ConfigReport) -> GatewayConfig:
    if report.config is None:
        raise ConfigError(report.issues)
    return report.config


def demo_config_text() -> str:
    """The text of the embedded demo config (`portway demo` runs it; also config/demo.yaml)."""
    resource = importlib.resources.files("gateway.config.defaults").joinpath(DEMO_RESOURCE)
    return resource.read_text(encoding="utf-8")


def load_demo_config() -> GatewayConfig:
    """The embedded demo config, validated like any other."""
    return load_config_text(demo_config_text(), f"<portway>/{DEMO_RESOURCE}")
