"""Byte builders of the HTTP proxy that connections share."""

from __future__ import annotations

from gateway.http import plan as http_plan
from gateway.http.plan import forwarding_lines, plain_forwarding_lines, shared


def test_plain_forwarding_lines_are_the_forwarding_lines_and_shared_per_client_and_host() -> None:
    a = plain_forwarding_lines("10.0.0.7", b"http", b"shop.example")
    expected = forwarding_lines(
        None, trusted=False, client_ip=b"10.0.0.7", proto=b"http", host=b"shop.example"
    )
    assert a == expected
    assert b"X-Forwarded-For: 10.0.0.7\r\n" in a
    assert plain_forwarding_lines("10.0.0.7", b"http", b"shop.example") is a
    other = plain_forwarding_lines("10.0.0.8", b"http", b"shop.example")
    assert other != a and b"10.0.0.8" in other


def test_shared_returns_one_copy_and_stays_bounded() -> None:
    one = b"".join([b"\r\nVia: 1.1 portway", b"\r\n"])
    two = b"".join([b"\r\nVia: 1.1 portway", b"\r\n"])
    assert one is not two
    assert shared(one) is shared(two)
    for i in range(http_plan._MAX_PLAIN_FORWARDING + 10):
        shared(str(i).encode())
    assert len(http_plan._SHARED) <= http_plan._MAX_PLAIN_FORWARDING
