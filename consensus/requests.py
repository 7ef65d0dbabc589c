"""Pending client requests: a bounded FIFO with de-duplication.

Every validator keeps the requests it has received, so a backup can tell that the
primary is not ordering them (the progress timer, TOCS'02 §4.5.2).  A request id is
the entry's Merkle leaf hash.  Requests leave the queue when a block containing
them is delivered; the ids of the last ``capacity`` delivered requests are
remembered so a late duplicate is not queued again (which would keep the progress
timer running and cause spurious view changes, cf. bft-smart #57).
"""

from __future__ import annotations

from collections import OrderedDict

from ledger.model import EntryRecord


_IDS: dict[EntryRecord, bytes] = {}


def request_id(record: EntryRecord) -> bytes:
    """The entry's leaf hash, memoised (encoding an entry costs far more than hashing it)."""
    rid = _IDS.get(record)
    if rid is None:
        if len(_IDS) > 200_000:
            _IDS.clear()
        rid = _IDS[record] = record.entry.leaf_hash()
    return rid


class RequestQueue:
    __slots__ = ("capacity", "pending", "in_flight", "recent")

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.pending: OrderedDict[bytes, tuple[EntryRecord, int, int]] = OrderedDict()  # id -> (record, size, t)
        self.in_flight: set[bytes] = set()
        self.recent: OrderedDict[bytes, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self.pending)

    def add(self, record: EntryRecord, now: int) -> tuple[bytes, str | None]:
        """Queue ``record``; return its id and a refusal reason or ``None``."""
        rid = request_id(record)
        if rid in self.pending:
            return rid, "duplicate"
        if rid in self.recent:
            return rid, "already_committed"
        if len(self.pending) >= self.capacity:
            return rid, "pending_full"
        self.pending[rid] = (record, len(record.encode()), now)
        return rid, None

    def remove(self, rid: bytes) -> None:
        self.pending.pop(rid, None)
        self.in_flight.discard(rid)

    def delivered(self, rid: bytes) -> None:
        self.remove(rid)
        self.recent[rid] = None
        if len(self.recent) > self.capacity:
            self.recent.popitem(last=False)

    def waiting(self) -> int:
        """Number of pending requests not yet in a proposed block."""
        return len(self.pending) - len(self.in_flight & self.pending.keys())

    def oldest_waiting(self) -> int | None:
        for rid, (_, _, t) in self.pending.items():
            if rid not in self.in_flight:
                return t
        return None

    def batch(self, max_entries: int, max_bytes: int) -> tuple[list[EntryRecord], int, int]:
        """Oldest waiting requests up to the limits: (records, total bytes, oldest arrival)."""
        records: list[EntryRecord] = []
        size = 0
        oldest = 0
        for rid, (record, rsize, t) in self.pending.items():
            if rid in self.in_flight:
                continue
            if records and size + rsize > max_bytes:
                break
            if not records:
                oldest = t
            records.append(record)
            size += rsize
            if len(records) >= max_entries:
                break
        return records, size, oldest
