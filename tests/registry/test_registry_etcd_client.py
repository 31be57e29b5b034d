"""The etcd JSON gateway client: key ranges, range answers, endpoint failover, error answers."""

from __future__ import annotations

import pytest

from portway.registry.base import RegistryUnavailable
from portway.registry.etcd_client import EtcdClient, EtcdError, b64, prefix_end, range_items

pytestmark = pytest.mark.timeout(60)


def test_prefix_end_covers_exactly_the_prefix() -> None:
    assert prefix_end(b"a/") == b"a0"
    assert prefix_end(b"a\xff") == b"b"
    assert prefix_end(b"\xff\xff") == b"\0"


def test_a_range_answer_gives_its_revision_and_pairs_and_an_unreadable_one_is_refused() -> None:
    data = (
        b'{"header": {"revision": "7"}, "kvs": [{"key": "YQ==", "value": "Yg=="}, {"key": "Yw=="}]}'
    )
    revision, more, pairs = range_items(data)
    assert revision == 7 and not more
    assert list(pairs) == [(b"a", b"b"), (b"c", b"")]
    assert range_items(b'{"header": {"revision": "8"}, "kvs": [], "more": true}')[:2] == (8, True)
    with pytest.raises(EtcdError, match="unreadable answer"):
        range_items(b"{not json")
    with pytest.raises(EtcdError, match="etcdserver: mvcc: required revision"):
        range_items(b'{"error": "etcdserver: mvcc: required revision has been compacted"}')


async def test_no_answering_endpoint_raises_registry_unavailable() -> None:
    client = EtcdClient(["http://127.0.0.1:9"], request_timeout_s=0.5, failover_s=0.2)
    try:
        with pytest.raises(RegistryUnavailable, match="no etcd endpoint answered"):
            await client.call("/v3/kv/range", {"key": b64("x")})
    finally:
        await client.close()


async def test_calls_stick_to_the_endpoint_that_answered_and_an_error_answer_is_an_etcd_error(
    etcd_endpoints: list[str],
) -> None:
    dead = "http://127.0.0.1:9"
    client = EtcdClient([dead, *etcd_endpoints], request_timeout_s=1.0, failover_s=2.0)
    try:
        await client.call("/v3/kv/put", {"key": b64("client-test/k"), "value": b64("v")})
        assert client.current == 1
        out = await client.call("/v3/kv/range", {"key": b64("client-test/k")})
        assert out["kvs"][0]["value"] == b64("v")
        with pytest.raises(EtcdError, match="lease not found"):
            await client.call("/v3/lease/revoke", {"ID": "123456789"})
        assert client.current == 1
    finally:
        await client.close()
