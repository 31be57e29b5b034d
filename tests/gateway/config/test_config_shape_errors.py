"""Shape errors: every pydantic error lands on the right file:line:col with a useful message."""

from __future__ import annotations

import textwrap

import pytest

from gateway.config.errors import ConfigError
from gateway.config.loader import check_config_text, load_config_text


def issues(text: str) -> list[str]:
    report = check_config_text(textwrap.dedent(text).lstrip("\n"), "cfg.yaml")
    return [str(issue) for issue in report.issues]


def test_unknown_key_points_at_the_key_and_suggests_the_alias() -> None:
    found = issues(
        """
        listeners:
          - name: web
            protocol: HTTP
            port: 80
            adress: 10.0.0.1
        """
    )
    assert found == [
        "cfg.yaml:5:5: listeners[0].adress: unknown key 'adress'; did you mean 'address'? "
        "(allowed keys: name, protocol, port, address, tls, hostnames, proxyProtocol, access, "
        "maxRequestBodyBytes)"
    ]


def test_unknown_top_level_key_suggests_by_case_and_underscores() -> None:
    found = issues(
        """
        version: 1
        back_end_s: []
        """
    )
    assert len(found) == 1
    assert found[0].startswith("cfg.yaml:2:1: back_end_s: unknown key 'back_end_s'")
    assert "did you mean 'backends'?" in found[0]


def test_enum_error_lists_choices_and_guesses_case() -> None:
    found = issues(
        """
        listeners:
          - {name: web, protocol: https, port: 443}
        """
    )
    assert found == [
        "cfg.yaml:2:27: listeners[0].protocol: 'https' is not allowed; "
        "expected one of: HTTP, HTTPS, TLS, TCP; did you mean 'HTTPS'?"
    ]


def test_literal_error_lists_choices() -> None:
    found = issues(
        """
        registry:
          type: zookeeper
        """
    )
    assert found == [
        "cfg.yaml:2:9: registry.type: 'zookeeper' is not allowed; "
        "expected one of: files, etcd, consul"
    ]


def test_out_of_range_number_states_the_range() -> None:
    found = issues(
        """
        listeners:
          - name: web
            protocol: HTTP
            port: 70000
        """
    )
    assert found == ["cfg.yaml:4:11: listeners[0].port: 70000 is out of range; allowed: 1 to 65535"]


def test_missing_field_points_at_the_enclosing_mapping() -> None:
    found = issues(
        """
        backends:
          - name: api
            service:
              namespace: shop
              port: http
        """
    )
    assert found == ["cfg.yaml:4:7: backends[0].service.name: missing required key 'name'"]


def test_missing_field_in_flow_mapping_points_at_the_brace() -> None:
    found = issues(
        """
        listeners:
          - {name: web, port: 80}
        """
    )
    assert found == ["cfg.yaml:2:5: listeners[0].protocol: missing required key 'protocol'"]


def test_bad_duration_names_the_accepted_forms() -> None:
    found = issues(
        """
        registry:
          debounce: 5 minutes
        """
    )
    assert found == [
        "cfg.yaml:2:13: registry.debounce: '5 minutes' is not a duration; "
        "write a number of seconds or a string like 250ms, 10s, 1m or 1h"
    ]


def test_invalid_name_explains_the_naming_rule() -> None:
    found = issues(
        """
        backends:
          - name: Shop_API
            endpoints: [{address: 10.0.0.1, port: 80}]
        """
    )
    assert found == [
        "cfg.yaml:2:11: backends[0].name: 'Shop_API' is not valid: names use lowercase "
        "letters, digits, '-' and '.', and start and end with a letter or digit"
    ]


def test_invalid_ip_address_points_at_the_value_in_a_flow_list() -> None:
    found = issues(
        """
        backends:
          - name: api
            endpoints: [{address: 10.0.0.1, port: 80}, {address: 10.0.0, port: 80}]
        """
    )
    assert found == [
        "cfg.yaml:3:58: backends[0].endpoints[1].address: "
        "'10.0.0' does not appear to be an IPv4 or IPv6 address"
    ]


def test_wrong_type_for_a_block_says_a_mapping_with_its_keys() -> None:
    found = issues(
        """
        admin: 9901
        """
    )
    assert found == [
        "cfg.yaml:1:8: admin: 9901 is not valid here; expected a mapping with keys: address, port"
    ]


def test_union_member_errors_merge_into_one_issue() -> None:
    found = issues(
        """
        backends:
          - name: api
            service: {namespace: a, name: b, port: [80]}
        """
    )
    assert found == [
        "cfg.yaml:3:44: backends[0].service.port: a list is not allowed here; "
        "expected a string or an integer"
    ]


def test_empty_required_list_says_how_many_items() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules: []
        """
    )
    assert found == ["cfg.yaml:3:12: routes[0].rules: needs at least 1 item(s), got 0"]


def test_a_failing_list_item_is_not_echoed_as_too_short() -> None:
    found = issues(
        """
        routes:
          - name: r
            rules:
              - backendRefs: [{name: b, weight: -1}]
        """
    )
    assert found == [
        "cfg.yaml:4:41: routes[0].rules[0].backendRefs[0].weight: "
        "-1 is out of range; allowed: 0 to 1000000"
    ]


def test_all_errors_are_collected_in_file_order() -> None:
    found = issues(
        """
        listeners:
          - name: web
            protocol: HTTPX
            port: 0
        registry:
          type: files
          debounce: soon
        telemetry:
          traceSampleRatio: 2
        """
    )
    assert [line.split(": ")[0] for line in found] == [
        "cfg.yaml:3:15",
        "cfg.yaml:4:11",
        "cfg.yaml:7:13",
        "cfg.yaml:9:21",
    ]


def test_yaml_syntax_error_is_positioned() -> None:
    found = issues(
        """
        listeners:
          - name: web
            port: [80
        routes: []
        """
    )
    assert len(found) == 1
    assert found[0].startswith("cfg.yaml:4:")
    assert "YAML syntax error" in found[0]


def test_duplicate_yaml_key_is_a_syntax_error_at_the_second_key() -> None:
    found = issues(
        """
        admin:
          port: 1
          port: 2
        """
    )
    assert len(found) == 1
    assert found[0].startswith("cfg.yaml:3:3: YAML syntax error")
    assert "duplicate key" in found[0]


def test_top_level_must_be_a_mapping() -> None:
    found = issues("- a\n- b\n")
    assert found == [
        "cfg.yaml:1:1: the top level must be a mapping with keys: version, gateway, "
        "listeners, routes, backends, registry, admin, telemetry; got a list"
    ]


def test_json_config_is_positioned_too() -> None:
    text = '{\n  "listeners": [\n    {"name": "web", "protocol": "HTTP", "port": "x"}\n  ]\n}\n'
    found = [str(i) for i in check_config_text(text, "cfg.json").issues]
    assert found == ["cfg.json:3:49: listeners[0].port: 'x' is not valid here; expected an integer"]


def test_empty_file_is_the_default_config() -> None:
    config = load_config_text("", "empty.yaml")
    assert config.listeners == () and config.admin.port == 9901


def test_load_config_text_raises_config_error_with_every_issue() -> None:
    with pytest.raises(ConfigError) as caught:
        load_config_text("admin: {port: 0, address: nowhere}\n", "a.yaml")
    error = caught.value
    assert len(error.errors) == 2
    assert str(error).splitlines() == [
        "a.yaml:1:15: admin.port: 0 is out of range; allowed: 1 to 65535",
        "a.yaml:1:27: admin.address: 'nowhere' does not appear to be an IPv4 or IPv6 address",
    ]
