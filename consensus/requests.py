"""Pending client requests: a bounded FIFO with de-duplication.

Every validator keeps the requests it has received, so a backup can tell that the
primary is not ordering them (the progress timer, TOCS'02 §4.5.2).  A request id is
the entry's Merkle leaf hash.  ``pending`` holds every request not yet delivered;
``waiting`` (a sub-sequence, same order) those not in any block proposed in the
current view, which is what the primary batches from, in O(batch).  The count and
total size of ``waiting`` are kept as it changes, so whether a full block is
waiting (:meth:`RequestQueue.fills_block`) is known without building one.  Requests leave
the queue when a block containing them is delivered; the ids of the last
``capacity`` delivered requests are remembered so a late duplicate is not queued
again (it would keep the progress timer running and cause spurious view changes,
cf. bft-smart #57).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Iterable

from ledger.model import EntryRecord

def _id_and_size(record: EntryRecord) -> tuple[bytes, int]:
    # Remembered on the record itself (EntryRecord.memo): lives exactly as long as it.
    got = record.memo.get("request")
    if got is None:
        from ledger.merkle import leaf_hash

        data = record.entry.encode()
        got = record.memo["request"] = (leaf_hash(data), len(data) + 64 * len(record.items))
    return got


def request_id(record: EntryRecord) -> bytes:
    """The entry's leaf hash, memoised (encoding an entry costs far more than hashing it)."""
    return _id_and_size(record)[0]


class RequestQueue:
    __slots__ = ("capacity", "pending", "waiting", "recent", "waiting_bytes")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.pending: dict[bytes, tuple[EntryRecord, int, int]] = {}  # id -> (record, size, arrival)
        self.waiting: OrderedDict[bytes, None] = OrderedDict()
        self.recent: OrderedDict[bytes, None] = OrderedDict()
        self.waiting_bytes = 0  # total size of the requests in ``waiting``

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, record: EntryRecord, now: int) -> tuple[bytes, str | None]:
        """Queue ``record``; return its id and a refusal reason or ``None``."""
        rid, size = _id_and_size(record)
        if rid in self.pending:
            return rid, "duplicate"
        if rid in self.recent:
            return rid, "already_committed"
        if len(self.pending) >= self.capacity:
            return rid, "pending_full"
        self.pending[rid] = (record, size, now)
        self.waiting[rid] = None
        self.waiting_bytes += size
        return rid, None

    def _unwait(self, rid: bytes) -> None:
        if rid in self.waiting:
            del self.waiting[rid]
            self.waiting_bytes -= self.pending[rid][1]

    def remove(self, rid: bytes) -> None:
        self._unwait(rid)
        self.pending.pop(rid, None)

    def proposed(self, rid: bytes) -> None:
        """``rid`` is in a block proposed in the current view."""
        self._unwait(rid)

    def reset_proposed(self, still_proposed: Iterable[bytes]) -> None:
        """New view: everything not in ``still_proposed`` is waiting again (FIFO order)."""
        keep = set(still_proposed)
        self.waiting = OrderedDict((rid, None) for rid in self.pending if rid not in keep)
        self.waiting_bytes = sum(self.pending[rid][1] for rid in self.waiting)

    def fills_block(self, max_entries: int, max_bytes: int) -> bool:
        """Whether the waiting requests make a full block: ``max_entries`` of them, or at
        least ``max_bytes`` (so :meth:`batch` stops at a limit, not at the end)."""
        return len(self.waiting) >= max_entries or self.waiting_bytes >= max_bytes

    def delivered(self, rid: bytes) -> None:
        self.remove(rid)
        self.recent[rid] = None
        if len(self.recent) > self.capacity:
            self.recent.popitem(last=False)

    def oldest_waiting(self) -> int | None:
        for rid in self.waiting:
            return self.pending[rid][2]
        return None

    def batch(self, max_entries: int, max_bytes: int) -> tuple[list[EntryRecord], int, int]:
        """Oldest waiting requests up to the limits: (records, total bytes, oldest arrival)."""
        records: list[EntryRecord] = []
        size = 0
        oldest = 0
        for rid in self.waiting:
            record, rsize, t = self.pending[rid]
            if records and size + rsize > max_bytes:
                break
            if not records:
                oldest = t
            records.append(record)
            size += rsize
            if len(records) >= max_entries:
                break
        return records, size, oldest
