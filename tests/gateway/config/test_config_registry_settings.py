"""Registry settings one backend type reads and another would ignore are errors."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config.loader import check_config_text


def messages(text: str) -> list[str]:
    return [str(issue) for issue in check_config_text(textwrap.dedent(text), "gw.yaml").issues]


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (
            "{type: etcd, path: /var/lib/reg}",
            "gw.yaml:2:24: registry.path: `path` is read only by the files registry, not etcd; "
            "remove it or set `type: files`",
        ),
        (
            "{type: files, endpoints: ['http://127.0.0.1:2379']}",
            "gw.yaml:2:25: registry.endpoints: `endpoints` are read only by the etcd and consul "
            "registries; the files registry reads `path`",
        ),
        (
            "{type: consul, endpoints: [a:8500, b:8500]}",
            "gw.yaml:2:37: registry.endpoints: the consul registry talks to one agent address; "
            "got 2",
        ),
        (
            "{type: files, prefix: x/portway/v1/services/}",
            "gw.yaml:2:25: registry.prefix: `prefix` is read only by the etcd and consul "
            "registries",
        ),
        (
            "{type: etcd, prefix: portway/}",
            "gw.yaml:2:32: registry.prefix: a registry prefix ends with 'portway/v1/services/'",
        ),
    ],
)
def test_ignored_registry_settings_are_errors(registry: str, expected: str) -> None:
    assert messages(f"version: 1\nregistry: {registry}\n") == [expected]


def test_each_type_with_its_own_settings_passes() -> None:
    assert messages("registry: {type: files, path: reg}\n") == []
    assert messages("registry: {type: etcd, endpoints: ['http://127.0.0.1:2379']}\n") == []
    assert messages("registry: {type: consul, endpoints: ['127.0.0.1:8500']}\n") == []
