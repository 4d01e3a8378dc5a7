"""The key table (`prefect_intercom.batch.keys`): a dict of 64-bit keys in 12 bytes a slot."""

from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from prefect_intercom.batch.keys import KeyTable, key64

from .bounded import bounded


@bounded(50)
@given(st.lists(st.tuples(st.integers(1, 2**64 - 1), st.integers(0, 2**32 - 1)), max_size=3000))
def test_the_key_table_behaves_like_a_dict(pairs: list[tuple[int, int]]) -> None:
    table, reference = KeyTable(capacity=4), {}
    for key, value in pairs:
        assert table.setdefault(key, value) == reference.setdefault(key, value)
    assert len(table) == len(reference)
    for key, value in reference.items():
        assert table.get(key) == value and key in table
    for key, value in pairs[: len(pairs) // 2]:
        table.put(key, value ^ 1)
        reference[key] = value ^ 1
    assert all(table.get(key) == value for key, value in reference.items())
    assert table.get(12345678901234567) == reference.get(12345678901234567)


def test_a_digest_never_maps_to_the_empty_slot_marker() -> None:
    assert key64(bytes(12)) == 1
    assert key64(bytes.fromhex("00" * 7 + "05" + "ff" * 4)) == 5


def test_the_key_table_keeps_a_hundred_thousand_keys_in_about_twelve_bytes_a_slot() -> None:
    table = KeyTable()
    for index in range(100_000):
        table.setdefault(random.getrandbits(64) | 1, index)
    slots = table._mask + 1
    assert len(table) == 100_000 and slots <= 2 * 100_000 / 0.7
    assert table._keys.itemsize + table._values.itemsize == 12


def test_setting_a_word_keeps_the_rest_of_the_value() -> None:
    table = KeyTable()
    table.set_word(7, 2)  # a new key: its word on 0
    table.put(8, (5 << 2) | 1)
    table.set_word(8, 3)
    assert (table.get(7), table.get(8)) == (2, (5 << 2) | 3)
