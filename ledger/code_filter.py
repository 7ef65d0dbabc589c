"""A Bloom filter over the store's deposit code keys: "certainly absent" without a read.

Why
---
Every validator checks every new deposit code against its store (an exact guard:
two deposits must never share a code, docs/data_model.md).  Almost every answer
is "absent", and LevelDB pays for an absent key twice: the lookup itself, and the
*seek compactions* it triggers — LevelDB charges a lookup that consults more than
one table file to the first one, and compacts a file once it has been charged
about once per 16 KiB of its size.  Appending two million items through the store
in one process, the compaction thread used 12.1 s of CPU with a lookup per new
code and 2.8 s without them; in a 10-minute cluster benchmark it was 44 % of a
node's CPU late in the batch phase (docs/performance.md).

How
---
``bits`` bits (default 2**26: 8 MiB, fixed, so memory stays flat), two bit
positions per key from its Python ``hash`` (randomised per process, which is fine:
the filter is rebuilt at every open).  A key that was added is always reported as
possibly present (no false negatives); a key never added is reported present with
probability about ``(1 - exp(-2 n / bits)) ** 2``: 0.4 % at two million codes,
6.6 % at ten million, 20 % at twenty million (a third probe would gain little
there and cost a third more per key).  Past that the store does more LevelDB
reads, never a wrong answer: every "possibly present" is read from LevelDB.

The store adds every code key it appends *before* the write that stores it, and
builds the filter from the stored keys when it opens; adds take a lock (a
read-modify-write of a byte must not lose a concurrent add's bit).
"""

from __future__ import annotations

import threading
from typing import Iterable, Sequence

DEFAULT_BITS = 1 << 26
_M64 = (1 << 64) - 1


class CodeFilter:
    """Fixed-size Bloom filter of byte-string keys, two probes per key."""

    __slots__ = ("bits", "mask", "array", "count", "lock")

    def __init__(self, bits: int = DEFAULT_BITS):
        if bits < 64 or bits > 1 << 32 or bits & (bits - 1):
            raise ValueError("bits must be a power of two from 64 to 2**32")
        self.bits = bits
        self.mask = bits - 1
        self.array = bytearray(bits // 8)
        self.count = 0  # keys added (with repeats)
        self.lock = threading.Lock()

    def add(self, keys: Iterable[bytes]) -> None:
        array, mask = self.array, self.mask
        added = 0
        with self.lock:
            for key in keys:
                h = hash(key) & _M64
                a, b = h & mask, (h >> 32) & mask
                array[a >> 3] |= 1 << (a & 7)
                array[b >> 3] |= 1 << (b & 7)
                added += 1
            self.count += added

    def maybe_present(self, keys: Sequence[bytes]) -> list[bytes]:
        """The keys that may have been added; every key that was added is among them."""
        array, mask = self.array, self.mask
        out = []
        for key in keys:
            h = hash(key) & _M64
            a, b = h & mask, (h >> 32) & mask
            if array[a >> 3] >> (a & 7) & 1 and array[b >> 3] >> (b & 7) & 1:
                out.append(key)
        return out

    def false_positive_rate(self) -> float:
        """The expected rate for the keys added so far."""
        from math import exp

        return (1.0 - exp(-2.0 * self.count / self.bits)) ** 2
