"""A bounded memo of pure results, shared by the record, code and signature caches."""

from __future__ import annotations


class BoundedMemo:
    """A bounded memo of pure results (oldest forgotten first); ``weight`` bounds the memory.

    A node meets every record several times (its own admission or a peer's forward,
    the pre-prepare, the commit); what depends only on signed bytes is computed once
    (records in ``ledger.model``, codes and signature checks in ``ledger.state``)."""

    __slots__ = ("data", "weight", "limit")

    def __init__(self, limit: int):
        self.data: dict = {}
        self.weight = 0
        self.limit = limit

    def get(self, key):
        hit = self.data.get(key)
        return None if hit is None else hit[0]

    def put(self, key, value, weight: int = 1) -> None:
        data = self.data
        old = data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        while data and self.weight + weight > self.limit:
            self.weight -= data.pop(next(iter(data)))[1]
        data[key] = (value, weight)
        self.weight += weight

    def discard(self, key) -> None:
        """Forget ``key`` (a value no longer needed frees its memory now, not when pushed out)."""
        old = self.data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
