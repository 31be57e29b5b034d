"""Every flag of the verbs says what it does and, when it has one, its default."""

from __future__ import annotations

import argparse
from collections.abc import Iterator

import pytest

from portway.cli import build_parser

VERBS = (
    "check",
    "controller",
    "demo",
    "doctor",
    "drill",
    "gateway",
    "registry",
    "rollout",
    "routes",
)


def _parsers(
    parser: argparse.ArgumentParser, name: str
) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


def _flags() -> Iterator[tuple[str, argparse.Action]]:
    root = build_parser()
    (verbs,) = [a for a in root._actions if isinstance(a, argparse._SubParsersAction)]
    for verb in VERBS:
        if verb not in verbs.choices:  # a verb whose module is not installed
            continue
        for name, parser in _parsers(verbs.choices[verb], verb):
            for action in parser._actions:
                if action.help == argparse.SUPPRESS or isinstance(
                    action, argparse._HelpAction | argparse._SubParsersAction
                ):
                    continue
                yield name, action


FLAGS = list(_flags())


@pytest.mark.parametrize(("where", "action"), FLAGS, ids=[f"{w} {a.dest}" for w, a in FLAGS])
def test_flag_has_help_and_states_its_default(where: str, action: argparse.Action) -> None:
    assert action.help, f"portway {where} {action.option_strings or action.dest}: no help text"
    silent_default = action.default in (None, False, [], argparse.SUPPRESS) or action.required
    if action.option_strings and not silent_default:
        assert "default" in action.help, (
            f"portway {where} {action.option_strings}: help does not state the default "
            f"{action.default!r}"
        )
