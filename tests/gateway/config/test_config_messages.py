"""Syntax errors name the format the file is written in."""

from __future__ import annotations

from gateway.config.loader import check_config_text


def test_a_json_file_s_syntax_error_is_called_a_json_error() -> None:
    (issue,) = check_config_text('{"version": 1,\n "listeners": [}\n', "gw.json").issues
    assert str(issue).startswith("gw.json:2:16: JSON syntax error: ")


def test_a_yaml_file_s_syntax_error_is_called_a_yaml_error() -> None:
    (issue,) = check_config_text("routes: [oops\n", "gw.yaml").issues
    assert str(issue).startswith("gw.yaml:2:1: YAML syntax error: ")
