"""Following the registry a config names, into a reloader (none when nothing needs it).

A process (worker or supervisor) starts one `RegistryFollower` with its
first config: it opens the registry that `registry:` names and runs an
`EndpointFeed` on it, whose per-key changes go to `Reloader.on_changes`. The
`registry` section is read at startup only: a reload that changes it needs a
restart (the worker says so).
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING

from gateway.config.model import GatewayConfig
from gateway.runtime.reload import Reloader

if TYPE_CHECKING:
    from gateway.runtime.feed import EndpointFeed


def needs_registry(config: GatewayConfig) -> bool:
    """Whether any backend takes endpoints from the registry."""
    return any(backend.service is not None for backend in config.backends)


class RegistryFollower:
    """Runs the registry feed for a config (none when no backend uses the registry).

    A relative `registry.path` is relative to the working directory, as for
    every other `portway` verb.
    """

    def __init__(self, reloader: Reloader) -> None:
        self.reloader = reloader
        self.feed: EndpointFeed | None = None

    async def start(self, config: GatewayConfig) -> None:
        if not needs_registry(config):
            return
        from gateway.runtime.feed import EndpointFeed
        from portway.registry.backends import open_registry, root_from_prefix

        settings = config.registry
        registry = open_registry(
            settings.type,
            path=settings.path,
            endpoints=settings.endpoints,
            root=root_from_prefix(settings.prefix),
        )
        feed = EndpointFeed(registry, self.reloader.on_changes, debounce_s=settings.debounce_s)
        feed.start()
        self.feed = feed

    async def close(self) -> None:
        if self.feed is not None:
            await self.feed.stop()
            with contextlib.suppress(Exception):
                await self.feed.registry.close()
