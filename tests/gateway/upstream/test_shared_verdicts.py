"""One worker probes, every worker knows: the shared health verdict table and its followers."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from random import Random

import aiohttp
import pytest

from gateway.shared_table import tag64
from gateway.upstream.health import Health
from gateway.upstream.health_driver import HealthDriver
from gateway.upstream.shared_verdicts import (
    MIN_SLOTS,
    RING,
    SharedVerdicts,
    VerdictFollower,
    attach,
)
from tests.gateway.conftest import GatewayFactory, ProbedUpstream, Upstream, simple_config


def test_a_verdict_published_in_one_mapping_is_read_in_another() -> None:
    prober = SharedVerdicts.create(64)
    reader = SharedVerdicts(prober.fd)
    assert reader.read("c0/10.0.0.1:30080") is Health.UNKNOWN
    assert prober.publish("c0/10.0.0.1:30080", Health.UNHEALTHY)
    assert reader.read("c0/10.0.0.1:30080") is Health.UNHEALTHY
    assert reader.read("c0/10.0.0.2:30080") is Health.UNKNOWN
    prober.publish("c0/10.0.0.1:30080", Health.HEALTHY)
    assert reader.read("c0/10.0.0.1:30080") is Health.HEALTHY
    assert reader.version == 2
    prober.forget("c0/10.0.0.1:30080")
    assert reader.read("c0/10.0.0.1:30080") is Health.UNKNOWN
    assert reader.version == 3


def test_another_process_reads_the_verdicts_through_the_descriptor() -> None:
    prober = SharedVerdicts.create(64)
    prober.publish("far/127.0.0.21:31000", Health.UNHEALTHY)
    code = (
        "import sys; from gateway.upstream.shared_verdicts import SharedVerdicts;"
        f"t = SharedVerdicts({prober.fd});"
        "print(t.read('far/127.0.0.21:31000').value, t.read('far/127.0.0.22:31000').value)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        pass_fds=(prober.fd,),
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.split() == ["unhealthy", "unknown"]


def test_changes_name_the_tags_since_a_version_until_the_ring_wraps() -> None:
    table = SharedVerdicts.create(MIN_SLOTS)
    table.publish("a", Health.UNHEALTHY)
    table.publish("b", Health.HEALTHY)
    assert table.changes(0) == (2, [tag64("a"), tag64("b")])
    assert table.changes(1) == (2, [tag64("b")])
    assert table.changes(2) == (2, [])
    for n in range(RING):
        table.publish(f"k{n}", Health.HEALTHY)
    assert table.changes(1) == (RING + 2, None)  # fell behind: read every target
    assert table.changes(2)[1] is not None


def test_a_full_table_says_so_and_refuses_the_key() -> None:
    table = SharedVerdicts.create(8)  # one set of 8 slots: both choices are the same
    assert all(table.publish(f"k{n}", Health.HEALTHY) for n in range(8))
    assert not table.overflowed
    assert not table.publish("k8", Health.UNHEALTHY)
    assert table.overflowed
    assert table.read("k8") is Health.UNKNOWN
    table.forget("k3")
    assert table.publish("k9", Health.UNHEALTHY)  # a freed slot is taken again


def test_a_descriptor_without_a_table_is_refused() -> None:
    import os

    fd = os.memfd_create("not-a-table")
    os.ftruncate(fd, 4096)
    with pytest.raises(ValueError, match="no shared health verdict table"):
        SharedVerdicts(fd)
    os.close(fd)


def test_attach_makes_worker_0_the_prober_and_none_without_a_supervisor() -> None:
    table = SharedVerdicts.create(64)
    first, second = attach(table.fd, 0), attach(table.fd, 1)
    assert first is not None and first.writer
    assert second is not None and not second.writer
    with pytest.raises(AssertionError):
        second.publish("k", Health.HEALTHY)  # only the prober writes
    with pytest.raises(AssertionError):
        second.forget("k")
    assert attach(None, 0) is None


def test_a_follower_reports_moved_verdicts_of_its_own_keys_only() -> None:
    table = SharedVerdicts.create(MIN_SLOTS)
    follower = VerdictFollower(SharedVerdicts(table.fd))
    follower.track(["a", "b"])
    assert follower.changed(100) == []
    table.publish("a", Health.UNHEALTHY)
    table.publish("x", Health.UNHEALTHY)  # not a target of this worker
    assert follower.changed(100) == [("a", Health.UNKNOWN, Health.UNHEALTHY)]
    assert follower.changed(100) == []  # nothing new
    table.publish("a", Health.HEALTHY)
    table.publish("b", Health.HEALTHY)
    assert sorted(follower.changed(100)) == [
        ("a", Health.UNHEALTHY, Health.HEALTHY),
        ("b", Health.UNKNOWN, Health.HEALTHY),
    ]
    table.forget("a")  # withdrawn (left the prober's table): nothing to apply
    assert follower.changed(100) == []


def test_a_follower_reads_a_key_it_starts_tracking_and_reads_in_slices() -> None:
    table = SharedVerdicts.create(MIN_SLOTS)
    for n in range(10):
        table.publish(f"k{n}", Health.UNHEALTHY)
    follower = VerdictFollower(SharedVerdicts(table.fd))
    follower.track(f"k{n}" for n in range(10))  # published before it tracked them
    first = follower.changed(4)
    assert len(first) == 4
    rest = follower.changed(100)
    assert sorted(k for k, _, _ in first + rest) == sorted(f"k{n}" for n in range(10))


async def answers(url: str, n: int) -> list[str]:
    async with aiohttp.ClientSession() as s:
        out = []
        for _ in range(n):
            async with s.get(url) as r:
                out.append(await r.text())
        return out


async def eventually(check: object, timeout_s: float = 3.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not callable(check) or not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the time"
        await asyncio.sleep(0.02)


async def test_only_the_prober_probes_and_the_follower_takes_its_verdicts(
    make_gateway: GatewayFactory, upstream: Upstream, probed: ProbedUpstream
) -> None:
    cfg = simple_config([probed.port, upstream.port])
    cfg["backends"][0]["healthCheck"] = {
        "path": "/healthz",
        "interval": "100ms",
        "timeout": "500ms",
        "healthyThreshold": 2,
        "unhealthyThreshold": 2,
    }
    table = SharedVerdicts.create(MIN_SLOTS)
    first = await make_gateway(cfg)
    second = await make_gateway(cfg)
    prober = HealthDriver(first.ctx, rng=Random(1), verdicts=table)
    follower = HealthDriver(second.ctx, rng=Random(2), verdicts=SharedVerdicts(table.fd))
    prober.start()
    follower.start()
    key = f"c0/127.0.0.1:{probed.port}"
    try:
        await asyncio.sleep(1.0)
        assert 6 <= probed.probes <= 14  # one prober at 100 ms (+-10 % jitter), not two
        probed.health = 503
        await eventually(lambda: key in second.ctx.state.unhealthy)
        assert key in first.ctx.state.unhealthy
        assert follower.reasons[key] == "health check failed: worker 0's probe"
        assert "probed" not in await answers(second.url("/x"), 10)
        probed.health = 200
        await eventually(lambda: key not in second.ctx.state.unhealthy)
        assert key in second.ctx.state.returning  # back gradually, as in the prober
        assert "probed" in await answers(second.url("/x"), 20)
        assert prober.stats.health_changes[("app", "unhealthy")] == 1  # counted once, there
        assert not follower.stats.health_changes
    finally:
        await prober.stop()
        await follower.stop()


async def test_a_follower_probes_for_itself_once_the_table_overflows(
    make_gateway: GatewayFactory, probed: ProbedUpstream
) -> None:
    cfg = simple_config([probed.port])
    cfg["backends"][0]["healthCheck"] = {"path": "/healthz", "interval": "100ms"}
    table = SharedVerdicts.create(8)
    for n in range(8):
        table.publish(f"other/{n}", Health.HEALTHY)
    gw = await make_gateway(cfg)
    follower = HealthDriver(gw.ctx, rng=Random(2), verdicts=SharedVerdicts(table.fd))
    follower.start()
    try:
        await asyncio.sleep(0.5)
        assert probed.probes == 0
        table.publish(f"c0/127.0.0.1:{probed.port}", Health.HEALTHY)  # no room: overflowed
        await eventually(lambda: probed.probes > 0)
        assert follower.follower is None
    finally:
        await follower.stop()
