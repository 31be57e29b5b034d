"""Following the registry: only a config with a backend fed by it follows one."""

from __future__ import annotations

from pathlib import Path

from gateway.config.loader import load_config_text
from gateway.runtime.registry_follower import RegistryFollower, needs_registry
from gateway.runtime.reload import Reloader

STATIC = """\
version: 1
routes:
  - name: r
    rules: [{backendRefs: [{name: api}]}]
backends:
  - name: api
    endpoints: [{address: 127.0.0.1, port: 9}]
"""
WITH_SERVICE = STATIC.replace(
    "endpoints: [{address: 127.0.0.1, port: 9}]",
    "service: {namespace: shop, name: api, port: http}",
)


def test_needs_registry_only_when_a_backend_names_a_service() -> None:
    assert not needs_registry(load_config_text(STATIC))
    assert needs_registry(load_config_text(WITH_SERVICE))


async def test_a_config_of_static_endpoints_opens_no_registry(tmp_path: Path) -> None:
    follower = RegistryFollower(Reloader(tmp_path / "gw.yaml", lambda table, active: None))
    await follower.start(load_config_text(STATIC))
    assert follower.feed is None
    await follower.close()


async def test_a_config_fed_by_the_registry_follows_it_into_the_reloader(tmp_path: Path) -> None:
    reloader = Reloader(tmp_path / "gw.yaml", lambda table, active: None)
    follower = RegistryFollower(reloader)
    config = load_config_text(
        WITH_SERVICE + f"registry: {{type: files, path: {tmp_path / 'registry'}}}\n"
    )
    await follower.start(config)
    try:
        assert follower.feed is not None
        assert follower.feed.registry.backend == "files"
    finally:
        await follower.close()
