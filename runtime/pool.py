"""Admission of client deposits in front of consensus: pre-checked, bounded, fair.

Theory of operation
-------------------
A deposit reaches consensus only after this node has checked it against the chain
state as it stands (``ledger.state.check_record``: member, role, limits, time
window, category, signature, not already on chain).  That matters for liveness,
not only for cost: every validator keeps the requests it has been given and
starts a view-change timer if they are not ordered; a request the primary would
rightly refuse must never sit in a backup's queue.

The pool counts *items* (digests) pending per client and in total.  A client over
its quota, or a full node, is told to come back later (HTTP 429 / 503 with
``Retry-After``) instead of the node growing without bound.  Items leave the pool
when the block that holds them is delivered (``committed``) or when consensus
refuses them (``dropped``).

Outcomes per record, in request order: ``pending`` (admitted now or earlier and
not yet committed), ``committed`` (a resubmission of a deposit already on chain:
same codes, its height), or a rejection with the state layer's reason.  A request
is admitted whole or not at all: when one of its records is rejected, or it does
not fit, none of its records is admitted (the client is told the request failed,
so nothing of it may reach the chain).

Forwarded records count only against ``max_pending``, not against their client's
quota here: the node that took a record has already held it to that quota, and a
forward refused for a quota would leave the records the other validators hold
unordered, so their progress timers would ask for a view change.  A client may
therefore hold up to its quota at every node; ``max_pending`` should allow for it
(``docs/cli.md``).

A resubmission of a committed deposit is answered ``committed`` even after its
``client_time`` has left the time window: the record is checked as of its own
``client_time`` (signature, limits, every code on chain), so a late retry is as
idempotent as an early one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Sequence

from ledger.codes import DepositCode, codes_from_keys, derive_code_keys
from ledger.errors import EntryRejected
from ledger.model import Deposit, EntryRecord
from ledger.state import Rules, check_record_keys, deposit_code_keys, entry_key


class PoolFull(Exception):
    """The node or this client has too much pending; retry after ``retry_after_s``."""

    def __init__(self, message: str, *, per_client: bool, retry_after_s: int = 1):
        super().__init__(message)
        self.per_client = per_client
        self.retry_after_s = retry_after_s


@dataclass
class Outcome:
    """What happened to one submitted record."""

    record: EntryRecord
    state: str  # "pending", "committed" or "rejected"
    heights: list[int | None] = field(default_factory=list)
    error: EntryRejected | None = None
    keys: tuple[bytes, ...] = ()  # a deposit's code keys (compact form), in item order

    @property
    def codes(self) -> list[DepositCode]:
        """The deposit's codes (made from the keys on demand)."""
        return codes_from_keys(self.keys)


@dataclass
class _Pending:
    client: str
    codes: tuple[bytes, ...]
    items: int
    record: EntryRecord


class DepositPool:
    """Pending deposits of one node.  Not thread-safe: used from the event loop only."""

    def __init__(self, rules: Rules, store, locate_height: Callable[[bytes], int | None], *,
                 max_pending: int, per_client: int):
        self.rules, self.store, self.locate_height = rules, store, locate_height
        self.max_pending, self.per_client = max_pending, per_client
        self.by_request: dict[bytes, _Pending] = {}  # entry leaf hash -> pending record
        self.by_code: dict[bytes, bytes] = {}  # code key -> entry leaf hash
        self.client_items: dict[str, int] = {}
        self.items = 0
        self.local: dict[bytes, EntryRecord] = {}  # entry leaf hash -> record submitted to this node

    def local_records(self) -> list[EntryRecord]:
        """The pending records submitted to this node (not forwarded to it), oldest first."""
        return list(self.local.values())

    def __len__(self) -> int:
        return self.items

    def state_of(self, code_key: bytes) -> str | None:
        return "pending" if code_key in self.by_code else None

    def pending_item(self, code_key: bytes) -> tuple[EntryRecord, int] | None:
        """The pending record holding ``code_key`` and the item's index in it, or ``None``."""
        rid = self.by_code.get(code_key)
        if rid is None:
            return None
        pending = self.by_request[rid]
        return pending.record, pending.codes.index(code_key)

    def check(self, records: Sequence[EntryRecord], now_ms: int) -> list[Outcome]:
        """Check records without admitting them (no quota change)."""
        return [self._check_one(record, now_ms) for record in records]

    def _check_one(self, record: EntryRecord, now_ms: int) -> Outcome:
        rid = record.entry.leaf_hash()
        keys = deposit_code_keys(self.rules.chain_id, record)  # derived once, then memoised
        blank = [None] * len(keys)
        # The store first: a block is in the store (and reported committed) a moment
        # before the node releases its records from the pool, once the block is durable.
        try:
            check_record_keys(self.rules, self.store, record, now_ms)
        except EntryRejected as err:
            if self._committed(record, keys, err):
                return Outcome(record, "committed", [self.locate_height(k) for k in keys], keys=keys)
            if rid in self.by_request:
                return Outcome(record, "pending", blank, keys=keys)
            return Outcome(record, "rejected", error=err, keys=keys)
        return Outcome(record, "pending" if rid in self.by_request else "new", blank, keys=keys)

    def _committed(self, record: EntryRecord, keys: tuple[bytes, ...], err: EntryRejected) -> bool:
        """Whether a refused record is a valid deposit whose every code is on chain: refused as
        ``already_deposited``, or as outside the time window but ``already_deposited`` when
        checked as of its own ``client_time`` (every other check passing)."""
        if err.reason not in ("already_deposited", "stale_timestamp") or not keys:
            return False  # other refusals never read the store
        if len(set(self.store.codes_present(keys))) != len(set(keys)):  # the code filter first, then reads
            return False
        if err.reason == "already_deposited":
            return True
        if not isinstance(record.entry.body, Deposit):
            return False
        try:
            check_record_keys(self.rules, self.store, record, record.entry.body.client_time)
        except EntryRejected as again:
            return again.reason == "already_deposited"
        return False

    def admit(self, records: Sequence[EntryRecord], now_ms: int) -> list[Outcome]:
        """Check and admit ``records``; raise :class:`PoolFull` (admitting none) if they do not fit.

        Returns one :class:`Outcome` per record.  When any is ``rejected``, none is
        admitted.  Otherwise those whose state is ``new`` are now pending and must
        be handed to consensus by the caller.
        """
        outcomes = self.check(records, now_ms)
        if any(o.state == "rejected" for o in outcomes):
            return outcomes
        fresh = [o for o in outcomes if o.state == "new"]
        demand: dict[str, int] = {}
        for o in fresh:
            demand[o.record.entry.signer] = demand.get(o.record.entry.signer, 0) + _items(o.record)
        total = sum(demand.values())
        if self.items + total > self.max_pending:
            raise PoolFull("the node has %d items pending (limit %d)" % (self.items, self.max_pending),
                           per_client=False)
        for client, count in demand.items():
            if self.client_items.get(client, 0) + count > self.per_client:
                raise PoolFull("client %s has %d items pending (limit %d)"
                               % (client, self.client_items.get(client, 0), self.per_client), per_client=True)
        for o in fresh:
            self._add(o.record, o.keys, local=True)
        return outcomes

    def _add(self, record: EntryRecord, keys: tuple[bytes, ...], *, local: bool) -> None:
        rid = record.entry.leaf_hash()
        if rid in self.by_request:
            return
        if local:
            self.local[rid] = record
        items = _items(record)
        pending = _Pending(record.entry.signer, tuple(keys), items, record)
        self.by_request[rid] = pending
        for key in pending.codes:
            self.by_code[key] = rid
        self.client_items[pending.client] = self.client_items.get(pending.client, 0) + items
        self.items += items

    def add_forwarded(self, record: EntryRecord, now_ms: int) -> str:
        """Admit a record another node forwarded.

        Returns ``new`` (admitted now), ``pending`` (already here), ``committed``
        (already on chain: a forward that arrived after its block, dropped before
        any check), ``rejected`` (invalid) or ``full`` (no room).  A peer's forward
        needs no answer, so unlike a client's submission a committed one is
        recognised by its first code alone, without verifying its signature again.
        """
        if record.entry.leaf_hash() in self.by_request:  # the same signed bytes: checked when admitted
            return "pending"
        if self._on_chain(record):
            return "committed"
        outcome = self._check_one(record, now_ms)
        if outcome.state != "new":
            return outcome.state  # committed (every code stored) or rejected
        if self.items + _items(record) > self.max_pending:
            return "full"
        self._add(record, outcome.keys, local=False)
        return "new"

    def _on_chain(self, record: EntryRecord) -> bool:
        """Whether a record is already stored, by its first item's code (derived alone: a
        committed record's codes are no longer remembered) or its entry key.  A code is
        asked through ``codes_present``, whose filter answers most absent codes without
        a LevelDB read and remembers them absent for the checks that follow."""
        if not isinstance(record.entry.body, Deposit):
            return self.store.has_code(entry_key(record.entry))
        if not record.items:
            return False
        return bool(self.store.codes_present(derive_code_keys(self.rules.chain_id, record.entry.signature, 1)))

    def remove(self, request_id: bytes) -> None:
        """The record left consensus (delivered in a block, or refused)."""
        pending = self.by_request.pop(request_id, None)
        if pending is None:
            return
        self.local.pop(request_id, None)
        for key in pending.codes:
            self.by_code.pop(key, None)
        left = self.client_items.get(pending.client, 0) - pending.items
        if left > 0:
            self.client_items[pending.client] = left
        else:
            self.client_items.pop(pending.client, None)
        self.items -= pending.items


def _items(record: EntryRecord) -> int:
    body = record.entry.body
    return body.item_count if isinstance(body, Deposit) else 1
