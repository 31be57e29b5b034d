"""The drill refuses to start beside something holding its ports, in one line."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest

from portway.drill.loader import load_scenario
from portway.drill.site import DrillSite, SiteError

ROOT = Path(__file__).resolve().parents[3]


async def test_a_taken_gateway_port_stops_the_drill_before_anything_starts(
    tmp_path: Path,
) -> None:
    loaded = load_scenario(ROOT / "config" / "drills" / "certificate-rotation.yaml")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 18160))
        holder.listen()
        site = DrillSite(loaded, tmp_path, log=lambda _: None)
        with pytest.raises(SiteError, match=r"127\.0\.0\.1:18160 for listener https"):
            await site.start()
        await site.stop()
    assert not (tmp_path / "gateway.yaml").exists()
    assert all(not sim.up(n.name) for sim in site.sims.values() for n in sim.nodes)


async def test_a_taken_node_address_names_the_node(tmp_path: Path) -> None:
    loaded = load_scenario(ROOT / "config" / "drills" / "certificate-rotation.yaml")
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.70.12", 30080))
        holder.listen()
        site = DrillSite(loaded, tmp_path, log=lambda _: None)
        try:
            with pytest.raises(SiteError, match=r"node ta-2: 127\.0\.70\.12:30080 is already"):
                await asyncio.wait_for(site.start(), 10)
        finally:
            await site.stop()


async def test_a_gateway_that_accepts_and_never_answers_is_a_clear_error(tmp_path: Path) -> None:
    loaded = load_scenario(ROOT / "config" / "drills" / "zone-loss.yaml")
    with socket.socket() as silent:  # accepts (backlog) and never answers
        silent.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        silent.bind(("127.0.0.1", 18110))
        silent.listen()
        site = DrillSite(loaded, tmp_path, log=lambda _: None)
        with pytest.raises(SiteError, match="not answered by the drill's clusters"):
            await asyncio.wait_for(site.wait_serving(timeout_s=0.5), 10)
