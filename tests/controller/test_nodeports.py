"""NodePort range validation: cluster range, per-tier ranges, missing nodePorts."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controller.nodeports import check_health_check_port, check_ports, tier_of
from controller.objects import (
    ClusterSettings,
    PortInfo,
    PortRange,
    ServiceInfo,
    ServiceType,
    frozen_map,
)
from portway.model import TrafficPolicy

SETTINGS = ClusterSettings(
    cluster="east",
    tier_ranges={"web": PortRange(30200, 30299), "db": PortRange(31000, 31099)},
)


def svc(
    *node_ports: int | None, tier: str | None = None, label_tier: str | None = None
) -> ServiceInfo:
    return ServiceInfo(
        "shop",
        "web",
        ServiceType.NODE_PORT,
        tuple(PortInfo(f"p{i}", 80 + i, n) for i, n in enumerate(node_ports)),
        annotations=frozen_map({"portway.io/tier": tier} if tier else {}),
        labels=frozen_map({"portway.io/tier": label_tier} if label_tier else {}),
    )


def test_default_range_is_the_apiservers() -> None:
    assert ClusterSettings(cluster="c").node_port_range == PortRange(30000, 32767)


@pytest.mark.parametrize(
    ("node_port", "ok"),
    [(29999, False), (30000, True), (31234, True), (32767, True), (32768, False)],
)
def test_cluster_range_bounds_are_inclusive(node_port: int, ok: bool) -> None:
    good, bad = check_ports(SETTINGS, svc(node_port))
    assert (len(good), len(bad)) == ((1, 0) if ok else (0, 1))
    if not ok:
        assert bad[0].service == "shop/web"
        assert bad[0].port == "p0"
        assert bad[0].node_port == node_port
        assert "outside the NodePort range 30000-32767" in bad[0].reason


def test_tier_range_is_enforced() -> None:
    good, bad = check_ports(SETTINGS, svc(30250, 30300, tier="web"))
    assert [p.node_port for p in good] == [30250]
    assert [(v.port, v.node_port) for v in bad] == [("p1", 30300)]
    assert "tier 'web' range 30200-30299" in bad[0].reason


def test_tier_from_label_when_no_annotation_and_annotation_wins() -> None:
    assert tier_of(svc(label_tier="db")) == "db"
    assert tier_of(svc(tier="web", label_tier="db")) == "web"
    assert tier_of(svc()) is None
    _, bad = check_ports(SETTINGS, svc(30250, label_tier="db"))
    assert len(bad) == 1


def test_undeclared_tier_rejects_every_port() -> None:
    good, bad = check_ports(SETTINGS, svc(30250, 31050, tier="cache"))
    assert good == ()
    assert len(bad) == 2
    assert "tier 'cache' has no declared nodePort range (declared tiers: db, web)" in bad[0].reason


def test_missing_node_port_is_a_violation() -> None:
    _, bad = check_ports(SETTINGS, svc(None))
    assert bad[0].node_port is None
    assert "no nodePort" in bad[0].reason


def test_custom_cluster_range() -> None:
    settings = ClusterSettings(cluster="c", node_port_range=PortRange.parse("20000-20999"))
    good, bad = check_ports(settings, svc(20500, 30500))
    assert [p.node_port for p in good] == [20500]
    assert len(bad) == 1


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30000-32767", PortRange(30000, 32767)), ("30000+100", PortRange(30000, 30099))],
)
def test_port_range_parses_like_the_apiserver_flag(text: str, expected: PortRange) -> None:
    assert PortRange.parse(text) == expected


@pytest.mark.parametrize("text", ["30000", "a-b", "32767-30000", "0-10", "1-70000"])
def test_port_range_rejects_nonsense(text: str) -> None:
    with pytest.raises(ValueError):
        PortRange.parse(text)


def test_health_check_port_checked_against_cluster_range() -> None:
    local = ServiceInfo(
        "shop",
        "web",
        ServiceType.LOAD_BALANCER,
        external_traffic_policy=TrafficPolicy.LOCAL,
        health_check_node_port=10256,
    )
    v = check_health_check_port(SETTINGS, local)
    assert v is not None and v.port == "healthCheckNodePort" and v.node_port == 10256
    ok = ServiceInfo("shop", "web", health_check_node_port=32000)
    assert check_health_check_port(SETTINGS, ok) is None


@given(
    st.lists(st.one_of(st.none(), st.integers(1, 65535)), max_size=6),
    st.sampled_from([None, "web", "db", "x"]),
)
def test_every_port_is_either_published_or_reported(
    ports: list[int | None], tier: str | None
) -> None:
    s = svc(*ports, tier=tier)
    good, bad = check_ports(SETTINGS, s)
    assert len(good) + len(bad) == len(ports)
    if tier is not None and tier not in SETTINGS.tier_ranges:
        assert good == ()
        return
    allowed = SETTINGS.tier_ranges[tier] if tier else SETTINGS.node_port_range
    assert all(p.node_port in allowed for p in good)
    assert all(v.node_port not in allowed for v in bad)
