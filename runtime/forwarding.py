"""Where a node sends the requests submitted to it: the primary, or every validator.

Theory of operation
-------------------
A deposit submitted to a backup is admitted there (checked, counted in the
pool) and sent to the primary only.  The other backups meet it once, in the
primary's PRE-PREPARE, instead of twice (once forwarded, once proposed): in the
benchmark this took a quarter off what a backup spends per single deposit.

Every validator gets a request:

* from the primary, for what was submitted to the primary itself: backups then
  hold what a crashed primary had accepted, and their timers watch it;
* during a view change: whoever becomes primary has it;
* from an observer, which does not follow views;
* from a backup whose request the primary did not order: the node's COMPLAINT
  (``consensus/view_change.py``) is followed by its pending local requests, to
  every validator, so the others start their progress timers too
  (:meth:`Forwarder.resend_local` on ``io.Complained``).  A view change needs
  f+1 complaints; when only one backup was given requests, the others complain
  one timeout after it, so that failover takes about two timeouts instead of one.

When a view begins, the requests submitted here and not committed yet go to
its primary (``io.ViewChanged``), whatever the old primary did with them.

A forward can also be lost while the view stands: a full peer queue drops its
oldest frames, a primary restarting loses what was in flight.  The progress timer
does not notice while other blocks keep being delivered, so every second the node
re-sends the requests submitted here that have been pending for ``resend_ms``
since they last left (:meth:`Forwarder.sweep`; the forward timeout of SmartBFT).
The primary drops what it already has.

Requests leave in coalesced ``requests`` frames: those answered in one turn of
the event loop share a frame (flushed with ``call_soon``, so no delay is added),
at most ``FLUSH_BYTES`` or half of ``peerwire.MAX_REQUEST_RECORDS`` records each.
"""

from __future__ import annotations

import asyncio
from typing import Callable, Protocol

from ledger.model import Deposit, EntryRecord
from runtime import peerwire

FLUSH_BYTES = 1024 * 1024


class _Transport(Protocol):
    def send(self, peer: str, payload: bytes) -> bool: ...

    def broadcast(self, payload: bytes) -> None: ...


def items_of(records: list[EntryRecord]) -> int:
    """Deposit items (one per other entry) in ``records``."""
    return sum(r.entry.body.item_count if isinstance(r.entry.body, Deposit) else 1 for r in records)


class Forwarder:
    """Sends records on; ``target()`` names the one validator to send to, or ``None`` for all."""

    def __init__(self, transport: _Transport, target: Callable[[], str | None],
                 local_records: Callable[[], list[EntryRecord]], name: str, on_resent: Callable[[int], None],
                 clock: Callable[[], int], resend_ms: int, is_primary: Callable[[], bool]):
        self.transport, self.target, self.local_records = transport, target, local_records
        self.name, self.on_resent = name, on_resent
        self.clock, self.resend_ms, self.is_primary = clock, resend_ms, is_primary
        self._queued: list[EntryRecord] = []
        self._queued_bytes = 0
        self._sent_at: dict[bytes, int] = {}  # request id -> when it last left this node (local records only)

    def _sent(self, records: list[EntryRecord]) -> None:
        now = self.clock()
        for record in records:
            self._sent_at[record.entry.leaf_hash()] = now

    def forward(self, records: list[EntryRecord]) -> None:
        """Queue records admitted here; they leave at the end of this turn of the event loop."""
        if not self._queued:
            asyncio.get_running_loop().call_soon(self.flush)
        self._queued.extend(records)
        self._queued_bytes += sum(len(r.encode()) for r in records)
        if self._queued_bytes > FLUSH_BYTES or len(self._queued) >= peerwire.MAX_REQUEST_RECORDS // 2:
            self.flush()

    def flush(self) -> None:
        if self._queued:
            records, self._queued, self._queued_bytes = self._queued, [], 0
            self._sent(records)
            self.send(records, self.target())

    def resend_local(self, target: str | None) -> None:
        """The pending records submitted here, again: to ``target``, or every validator for ``None``."""
        if target == self.name:
            return
        records = self.local_records()
        if records:
            self.on_resent(items_of(records))
            self._sent(records)
            self.send(records, target)

    def sweep(self) -> int:
        """Re-send the local requests pending for ``resend_ms`` since they last left; the items re-sent.

        Forgets the send times of requests no longer pending.  The primary re-sends
        nothing: its own replica holds what it was given.
        """
        now, primary = self.clock(), self.is_primary()
        sent_at, due = {}, []
        for record in self.local_records():
            rid = record.entry.leaf_hash()
            at = self._sent_at.get(rid, now)
            if now - at >= self.resend_ms and not primary:
                due.append(record)
                at = now
            sent_at[rid] = at
        self._sent_at = sent_at
        if not due:
            return 0
        items = items_of(due)
        self.on_resent(items)
        self.send(due, self.target())
        return items

    def send(self, records: list[EntryRecord], target: str | None) -> None:
        """``requests`` frames to ``target`` (or every validator), split by size and count."""
        start, size = 0, 0
        for i, record in enumerate(records):
            size += len(record.encode())
            if i + 1 == len(records) or size > FLUSH_BYTES or i + 1 - start >= peerwire.MAX_REQUEST_RECORDS // 2:
                frame = peerwire.requests(records[start:i + 1])
                if target is None:
                    self.transport.broadcast(frame)
                else:
                    self.transport.send(target, frame)
                start, size = i + 1, 0
