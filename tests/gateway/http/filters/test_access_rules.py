"""Access rules as plain values: CIDR (v4, v6, mapped), countries from a MaxMind DB, trusted XFF."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from mmdb_writer import MMDBWriter
from netaddr import IPSet

from gateway.config.access import AccessPolicy, AccessRule
from gateway.config.values import AccessAction
from gateway.http.exchange import Exchange
from gateway.http.filters.access import AccessCheck, AccessFilter, access_check
from gateway.http.filters.geo import CountryDatabase
from gateway.http.filters.networks import NetworkSet, client_address
from gateway.routing.facts import RequestFacts

ALLOW, DENY = AccessAction.ALLOW, AccessAction.DENY


def write_country_db(path: Path) -> str:
    """A tiny GeoIP2-Country-shaped database (never a real GeoLite2 file)."""
    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoIP2-Country")
    writer.insert_network(IPSet(["81.2.69.0/24"]), {"country": {"iso_code": "GB"}})
    writer.insert_network(IPSet(["89.160.20.0/24"]), {"country": {"iso_code": "SE"}})
    writer.insert_network(IPSet(["2001:480::/32"]), {"registered_country": {"iso_code": "US"}})
    writer.to_db_file(str(path))
    return str(path)


def test_network_set_matches_ipv4_ipv6_and_ipv4_mapped_addresses() -> None:
    nets = NetworkSet(["10.0.0.0/8", "10.1.0.0/16", "192.168.1.0/24", "2001:db8::/32"])
    addr = ipaddress.ip_address
    assert addr("10.200.3.4") in nets
    assert addr("192.168.1.255") in nets
    assert addr("192.168.2.0") not in nets
    assert addr("2001:db8::1") in nets
    assert addr("2001:db9::1") not in nets
    assert addr("11.0.0.0") not in nets
    check = AccessCheck(AccessPolicy((AccessRule(ALLOW, ("10.0.0.0/8",)),), DENY))
    assert check.allows("::ffff:10.1.2.3")
    assert not check.allows("::ffff:11.1.2.3")


@given(
    st.lists(st.tuples(st.integers(0, 2**32 - 1), st.integers(0, 32)), max_size=12),
    st.integers(0, 2**32 - 1),
)
def test_network_set_agrees_with_ipaddress_membership(
    specs: list[tuple[int, int]], probe: int
) -> None:
    cidrs = [str(ipaddress.ip_network((value, bits), strict=False)) for value, bits in specs]
    addr = ipaddress.IPv4Address(probe)
    expected = any(addr in ipaddress.ip_network(c) for c in cidrs)
    assert (addr in NetworkSet(cidrs)) is expected


def test_first_matching_rule_wins_and_default_applies_otherwise() -> None:
    policy = AccessPolicy(
        (AccessRule(DENY, ("10.9.0.0/16",)), AccessRule(ALLOW, ("10.0.0.0/8", "fd00::/8"))),
        DENY,
    )
    check = AccessCheck(policy)
    assert check.allows("10.1.1.1")
    assert not check.allows("10.9.1.1")
    assert check.allows("fd12::1")
    assert not check.allows("203.0.113.9")
    assert not check.allows("not-an-address")


def test_countries_come_from_the_maxmind_database(tmp_path: Path) -> None:
    path = write_country_db(tmp_path / "countries.mmdb")
    policy = AccessPolicy(
        (AccessRule(DENY, countries=("se",)), AccessRule(ALLOW, countries=("GB", "US"))),
        DENY,
        geoip_database=path,
    )
    check = access_check(policy)
    assert check.allows("81.2.69.160")  # GB
    assert not check.allows("89.160.20.112")  # SE, denied first
    assert check.allows("2001:480::1")  # registered country US
    assert not check.allows("127.0.0.1")  # unknown: default
    assert CountryDatabase(path).country("::1") == ""


def test_countries_without_a_database_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="geoipDatabase"):
        AccessPolicy((AccessRule(DENY, countries=("SE",)),))


def test_client_address_believes_only_the_last_hop_of_a_trusted_proxy() -> None:
    assert client_address("10.0.0.5", None) == "10.0.0.5"
    assert client_address("10.0.0.5", b"1.2.3.4, 198.51.100.7") == "198.51.100.7"
    assert client_address("10.0.0.5", b"[2001:db8::1]") == "2001:db8::1"
    assert client_address("10.0.0.5", b"garbage") == "10.0.0.5"


def test_access_filter_answers_403_with_cause_access_and_caches_verdicts() -> None:
    check = AccessCheck(AccessPolicy((AccessRule(ALLOW, ("127.0.0.0/8",)),), DENY))
    access = AccessFilter(check)
    ex = Exchange(b"GET", b"/", b"", "1.1", b"h", [], b"", None)
    assert access.on_request(ex, RequestFacts("GET", "h", "/", client_ip="127.0.0.1"), 0.0) is None
    answer = access.on_request(ex, RequestFacts("GET", "h", "/", client_ip="192.0.2.1"), 0.0)
    assert answer is not None and answer.status == 403 and answer.cause == "access"
    # a trusted proxy's X-Forwarded-For decides
    ex.fwd = {b"x-forwarded-for": b"127.0.0.9, 192.0.2.1"}
    assert access.on_request(ex, RequestFacts("GET", "h", "/", client_ip="127.0.0.1"), 0.0)
    assert set(check.memo) == {"127.0.0.1", "192.0.2.1"}
