"""A bounded memo of pure results, shared by the record, code and signature caches."""

from __future__ import annotations

from collections import OrderedDict


class BoundedMemo:
    """A bounded memo of pure results (oldest forgotten first); ``weight`` bounds the memory.

    A node meets every record several times (its own admission or a peer's forward,
    the pre-prepare, the commit); what depends only on signed bytes is computed once
    (records in ``ledger.model``, codes and signature checks in ``ledger.state``).

    Entries are also bounded in age: each remembers the epoch it was put in, and
    :meth:`advance` (the node calls it every ``node.MEMO_EPOCH_SWEEPS`` seconds,
    through ``ledger.derived.age``) forgets those older than the previous epoch.  Committed records are forgotten at
    once (``ledger.derived.forget``); what is met and never committed (a message
    re-sent after its block was delivered, say) would otherwise sit until the weight
    bound pushes it out, hours later at a steady load: a slow climb of the node's
    memory.  Forgetting a pure result only costs recomputing it.

    An ``OrderedDict``: dropping the oldest is O(1) (``popitem(last=False)``).  With a
    plain dict, finding the first live entry after deleting from the front scans
    every slot deleted before it, so evicting m entries cost ~m²/2 (30,000 took
    0.6 s of the event loop; found in review)."""

    __slots__ = ("data", "weight", "limit", "epoch")

    def __init__(self, limit: int):
        self.data: OrderedDict = OrderedDict()  # key -> (value, weight, epoch), oldest first
        self.weight = 0
        self.limit = limit
        self.epoch = 0

    def get(self, key):
        hit = self.data.get(key)
        return None if hit is None else hit[0]

    def put(self, key, value, weight: int = 1) -> None:
        data = self.data
        old = data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
        while data and self.weight + weight > self.limit:
            self.weight -= data.popitem(last=False)[1][1]
        data[key] = (value, weight, self.epoch)
        self.weight += weight

    def advance(self) -> int:
        """Start a new epoch and forget what was put before the previous one; how many went."""
        self.epoch += 1
        data, oldest_kept, gone = self.data, self.epoch - 1, 0
        while data:
            key, entry = next(iter(data.items()))
            if entry[2] >= oldest_kept:
                break
            data.popitem(last=False)
            self.weight -= entry[1]
            gone += 1
        return gone

    def discard(self, key) -> None:
        """Forget ``key`` (a value no longer needed frees its memory now, not when pushed out)."""
        old = self.data.pop(key, None)
        if old is not None:
            self.weight -= old[1]
