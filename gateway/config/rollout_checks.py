"""Cross-field checks of a progressive rollout (part of `gateway.config.semantic`).

What the shape cannot say: the rollout owns the canary's share, so a fixed
`percent` beside it would be overridden (an error, not a silent override);
steps only grow, from above 0%; the rule needs a stable side to move
traffic from; and the rule's name becomes part of the rollout's registry key
(`portway/v1/rollouts/<route>/<rule>`), so it keeps to a key-safe alphabet.
"""

from __future__ import annotations

import re
from typing import Final

from gateway.config.errors import Path
from gateway.config.filter_checks import Report
from gateway.config.model import Rule

RULE_NAME: Final = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def check_rollout(add: Report, path: Path, rule: Rule) -> None:
    """Report the problems of `rule`'s rollout (`path` is the rule's)."""
    canary = rule.canary
    if canary is None or canary.rollout is None:
        return
    canary_path = (*path, "canary")
    steps_path = (*canary_path, "rollout", "steps")
    if canary.percent:
        add(
            (*canary_path, "percent"),
            "the rollout sets the canary's share step by step; remove `percent`",
        )
    steps = canary.rollout.steps
    if steps[0].percent == 0:
        add((*steps_path, 0, "percent"), "a first step of 0% sends the canary nothing")
    for index in range(1, len(steps)):
        before, now = steps[index - 1].percent, steps[index].percent
        if now <= before:
            add(
                (*steps_path, index, "percent"),
                f"steps only grow: {now:g}% comes after {before:g}%",
            )
    if not rule.backend_refs:
        add(
            canary_path,
            "a rollout moves traffic from the rule's backendRefs to the canary; the rule has none",
        )
    if rule.name is not None and not RULE_NAME.match(rule.name):
        add(
            (*path, "name"),
            "a rule with a rollout names its registry key: letters, digits, '-', '_' and '.'",
        )
