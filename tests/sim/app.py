"""A small deterministic application for the simulator (and benchmarks).

Blocks carry real ``ledger`` objects: ``EntryRecord`` deposits, RFC 9162 entries
roots and a history tree kept as an immutable frontier of perfect-subtree roots
(``SimTip``), so building on a tentative parent is a pure function.  Entry
"signatures" are ``SHA-256(b"sim-client" | body)`` doubled (a fabricated entry is
rejected); duplicates of any entry already in the tip's history are rejected.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ledger import merkle
from ledger.block import ZERO_HASH, Block, BlockHeader
from ledger.model import Deposit, DepositItem, Entry, EntryRecord, items_root

from consensus.errors import AppRejected
from consensus.requests import request_id

CHAIN_ID = "sim"


@dataclass(frozen=True, slots=True)
class SimTip:
    header: BlockHeader | None
    height: int
    frontier: tuple[tuple[int, bytes], ...]  # (size, root) of perfect subtrees, largest first
    seen: frozenset

    @property
    def history_size(self) -> int:
        return sum(size for size, _ in self.frontier)

    def history_root(self) -> bytes:
        if not self.frontier:
            return merkle.EMPTY_ROOT
        acc = self.frontier[-1][1]
        for _, h in reversed(self.frontier[:-1]):
            acc = merkle.node_hash(h, acc)
        return acc


GENESIS_TIP = SimTip(None, 0, (), frozenset())


def _extend(frontier: tuple, leaves: list[bytes]) -> tuple:
    stack = list(frontier)
    for leaf in leaves:
        stack.append((1, leaf))
        while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
            (s, right), (_, left) = stack.pop(), stack.pop()
            stack.append((2 * s, merkle.node_hash(left, right)))
    return tuple(stack)


def client_signature(body: Deposit) -> bytes:
    d = hashlib.sha256(b"sim-client" + body.encode()).digest()
    return d + d


def make_record(client: str, index: int, client_time: int = 0) -> EntryRecord:
    digest = hashlib.sha256(("%s/%d" % (client, index)).encode()).digest()
    item = DepositItem(digest, None, "general", None, {}, None)
    body = Deposit(client, client_time, 1, items_root([item]))
    return EntryRecord(Entry(body, client_signature(body)), (item,), (None,))


class SimApp:
    def __init__(self, validator_set_hash: bytes, chain_id: str = CHAIN_ID):
        self.validator_set_hash = validator_set_hash
        self.chain_id = chain_id

    def _valid(self, parent: SimTip, rec: EntryRecord, batch: set) -> bool:
        rid = request_id(rec)
        if rid in parent.seen or rid in batch:
            return False
        return rec.entry.signature == client_signature(rec.entry.body)

    def _header(self, parent: SimTip, leaves: list[bytes], timestamp: int, view: int, proposer: str):
        frontier = _extend(parent.frontier, leaves)
        tip_hist = SimTip(None, 0, frontier, frozenset())
        header = BlockHeader(
            self.chain_id, parent.height + 1, parent.header.hash() if parent.header else ZERO_HASH,
            merkle.root(leaves), len(leaves), tip_hist.history_size, tip_hist.history_root(),
            timestamp, view, proposer, self.validator_set_hash,
        )
        return header, frontier

    def build(self, parent: SimTip, records, timestamp: int, view: int, proposer: str):
        chosen, ids = [], set()
        for rec in records:
            if self._valid(parent, rec, ids):
                ids.add(request_id(rec))
                chosen.append(rec)
        leaves = [request_id(r) for r in chosen]
        header, frontier = self._header(parent, leaves, timestamp, view, proposer)
        return Block(header, tuple(chosen)), SimTip(header, header.height, frontier, parent.seen | ids)

    def validate(self, parent: SimTip, block: Block) -> SimTip:
        h = block.header
        ids: set = set()
        for rec in block.records:
            if not self._valid(parent, rec, ids):
                raise AppRejected("invalid or duplicate entry", reason="bad_entry")
            ids.add(request_id(rec))
        leaves = [request_id(r) for r in block.records]
        expect, frontier = self._header(parent, leaves, h.timestamp, h.view, h.proposer)
        if expect != h:
            raise AppRejected("header does not match its contents and parent", reason="bad_header")
        return SimTip(h, h.height, frontier, parent.seen | ids)
