"""What a gateway process holds of its config's loads: the one in force, the last refused.

Plain values. The reloader (`gateway.runtime.reload`) makes them; the admin
API and dashboard (`gateway.ops`) and the rollout runner (`gateway.rollout`)
read them, and all three sit below the runtime, so the values live here, with
the config language every one of them already imports.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.config.model import GatewayConfig


@dataclass(frozen=True, slots=True)
class ActiveConfig:
    """The config currently serving: its digest (version), file and load time.

    `table_version` counts the routing tables built in this process; it grows
    with every swap, a registry update of the same config's table included.
    """

    config: GatewayConfig
    version: str
    source: str
    loaded_at: float
    table_version: int


@dataclass(frozen=True, slots=True)
class ReloadFailure:
    """Why the last reload was rejected (cleared by the next successful one).

    `issues` are rendered `file:line:col: path: message` lines.
    """

    at: float
    issues: tuple[str, ...]
