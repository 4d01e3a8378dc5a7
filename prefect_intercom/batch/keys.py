"""A compact table of 64-bit item keys: the batch's memory of what it has seen, flat at a million items.

Each key takes 8 bytes and its value 4 (about 24 MB for a million items; a `dict` costs 70-100 MB).
"""

from __future__ import annotations

import secrets
from array import array
from collections.abc import Callable
from itertools import compress

_EMPTY = 0
_MAX_LOAD = 0.7
_MASK64 = (1 << 64) - 1


def key64(digest: bytes) -> int:
    """The table key of an item digest: its first 8 bytes, never 0 (0 marks an empty slot)."""
    return int.from_bytes(digest[:8], "big") or 1


class KeyTable:
    """A set of 64-bit keys, each with a 32-bit value (open addressing, linear probing).

    Example:
        ```python
        seen = KeyTable()
        assert seen.setdefault(key64(digest), index) == index  # first time: stored
        ```
    """

    def __init__(self, capacity: int = 1024) -> None:
        size = 16
        while size * _MAX_LOAD < capacity:
            size *= 2
        # Each table its own odd multiplier: one table's slot order says nothing of another's, so
        # copying a large table into a small one, in slot order, never piles keys into one run.
        self._multiplier = secrets.randbits(64) | 1
        self._allocate(size)

    def _allocate(self, size: int) -> None:
        """Empty the table into `size` slots (a power of two)."""
        self._keys = array("Q", [0]) * size
        self._values = array("I", [0]) * size
        self._mask = size - 1
        self._shift = 64 - (size.bit_length() - 1)  # the top bits of the product pick the slot
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def __contains__(self, key: int) -> bool:
        return self.get(key) is not None

    def get(self, key: int, default: int | None = None) -> int | None:
        """The value stored for `key`, or `default`."""
        slot = self._slot(key)
        return self._values[slot] if self._keys[slot] == key else default

    def setdefault(self, key: int, value: int) -> int:
        """Store `value` for `key` unless it is there; return the stored value."""
        slot = self._slot(key)
        if self._keys[slot] == key:
            return self._values[slot]
        self._place(slot, key, value)
        return value

    def put(self, key: int, value: int) -> None:
        """Store `value` for `key`, replacing any earlier value."""
        slot = self._slot(key)
        if self._keys[slot] == key:
            self._values[slot] = value
        else:
            self._place(slot, key, value)

    def set_word(self, key: int, word: int) -> None:
        """Set the low two bits of `key`'s value (an item's word; 0 when new), keeping the rest."""
        slot = self._slot(key)  # one probe, not `get` then `put`: twice per item sent
        if self._keys[slot] == key:
            self._values[slot] = (self._values[slot] & ~3) | word
        else:
            self._place(slot, key, word)

    def items(self) -> tuple[array, array]:
        """Every key and its value, as two arrays in slot order."""
        return array("Q", compress(self._keys, self._keys)), array("I", compress(self._values, self._keys))

    def relabel(self, change: Callable[[int], int]) -> None:
        """Replace every stored value by `change(value)` (the keys stay where they are)."""
        pairs = zip(self._keys, self._values, strict=True)
        self._values = array("I", (change(value) if key else 0 for key, value in pairs))

    def update(self, keys: array, values: array) -> None:
        """Store each key's value (`put` for each pair)."""
        for key, value in zip(keys, values, strict=True):
            self.put(key, value)

    def _slot(self, key: int) -> int:
        """Where `key` is, or the empty slot where it would go (linear probing from the product's top bits)."""
        keys, mask = self._keys, self._mask
        slot = (key * self._multiplier & _MASK64) >> self._shift
        while True:
            found = keys[slot]
            if found == key or found == _EMPTY:
                return slot
            slot = (slot + 1) & mask

    def _place(self, slot: int, key: int, value: int) -> None:
        self._keys[slot] = key
        self._values[slot] = value
        self._count += 1
        if self._count > (self._mask + 1) * _MAX_LOAD:  # grow: every key into a table twice the size
            keys, values = self.items()
            self._allocate((self._mask + 1) * 2)
            self.update(keys, values)
