"""The shared-memory table machinery both the rate limit and health verdict tables use."""

from __future__ import annotations

import hashlib
import os

import pytest

from gateway.shared_table import (
    HEADER_BYTES,
    WAYS,
    check_slots,
    create_table_fd,
    map_table,
    set_pair,
    tag64,
)

MAGIC = b"PWTEST01"


def size_of(fields: tuple[int, ...]) -> int:
    return HEADER_BYTES + fields[0] * 8


def test_a_created_table_maps_with_its_header_fields_and_zeroed_body() -> None:
    fd = create_table_fd("portway-test", MAGIC, (16, 3), size_of((16,)))
    try:
        mapping, fields = map_table(fd, MAGIC, "test table", size_of)
        assert fields[:2] == (16, 3)
        assert set(fields[2:]) == {0}
        assert len(mapping) == HEADER_BYTES + 16 * 8
        assert bytes(mapping[HEADER_BYTES:]) == bytes(16 * 8)
        mapping.close()
    finally:
        os.close(fd)


def test_a_wrong_magic_or_size_is_refused_naming_the_table() -> None:
    fd = create_table_fd("portway-test", MAGIC, (16,), size_of((16,)) + 8)
    try:
        with pytest.raises(ValueError, match="holds no test table"):
            map_table(fd, b"PWOTHER1", "test table", size_of)
        with pytest.raises(ValueError, match=r"test table in descriptor \d+ is 200 bytes"):
            map_table(fd, MAGIC, "test table", size_of)
    finally:
        os.close(fd)


def test_slot_counts_must_be_powers_of_two_of_at_least_a_set() -> None:
    check_slots(WAYS)
    check_slots(1 << 16)
    for bad in (WAYS // 2, 100, 0):
        with pytest.raises(ValueError, match="power of two"):
            check_slots(bad)


def test_the_two_sets_come_from_the_tags_low_and_high_bits() -> None:
    assert set_pair((5 << 32) | 3, 7) == (3, 5)
    assert set_pair((13 << 32) | 9, 7) == (1, 5)


def test_tags_are_blake2b_salted_and_never_zero() -> None:
    plain = int.from_bytes(hashlib.blake2b(b"k", digest_size=8).digest(), "little")
    assert tag64("k") == plain
    assert tag64("k", b"salt") != tag64("k")
    assert tag64("\udcff") != 0  # a surrogate (from a raw header) still hashes
