"""Builders of real, valid chains for store tests (and anyone else who needs blocks).

``ChainBuilder`` owns a chain id, four validators and a depositor, and makes
signed entry records and the valid next block on top of any store: it reads the
head and the stored history nodes through the store's public API
(``head()``, ``history_node()``), so the block it returns passes every check of
``Store.append``.  Codes come from ``ledger.codes.derive_code(chain_id,
signature, item_index)``, as the state layer derives them; replay keys of
non-deposit entries come from ``ledger.state.entry_key``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ledger import merkle
from ledger.block import Block, BlockHeader, CommitCertificate, ValidatorSet, sign_commit
from ledger.codes import derive_code
from ledger.crypto import SecretKey
from ledger.model import CaseEvent, Deposit, DepositItem, Entry, EntryRecord, make_deposit
from ledger.store import BlockIndex

CHAIN_ID = "evledger-test"
T0 = 1_700_000_000_000


from ledger.state import entry_key  # noqa: E402  (the replay key of a non-deposit entry)


def _key(label: str) -> SecretKey:
    return SecretKey(hashlib.sha256(b"storehelpers/" + label.encode()).digest())


@dataclass(frozen=True)
class Built:
    """A block ready for ``store.append(*built)`` (iterates as block, certificate, index)."""

    block: Block
    certificate: CommitCertificate
    index: BlockIndex

    def __iter__(self):
        return iter((self.block, self.certificate, self.index))


class ChainBuilder:
    """Deterministic factory of entry records and valid blocks for one chain."""

    def __init__(self, chain_id: str = CHAIN_ID, validators: int = 4, fresh_keys: bool = False):
        self.chain_id = chain_id
        make = (lambda label: SecretKey.generate()) if fresh_keys else _key
        self.validator_keys = [("v%d" % i, make("validator-%d" % i)) for i in range(1, validators + 1)]
        self.validators = ValidatorSet(tuple((name, key.public) for name, key in self.validator_keys))
        self.depositor = make("depositor")
        self.actor = make("court")
        self.counter = 0

    # ------------------------------------------------------------- entries

    def item(self, case: str | None = None, category: str = "contract") -> DepositItem:
        self.counter += 1
        digest = hashlib.sha256(b"evidence %d" % self.counter).digest()
        return DepositItem(digest=digest, sm3=None, category=category, case=case,
                           public_meta={"n": self.counter}, private_commitment=None)

    def deposit(self, items: int = 1, case: str | None = None) -> EntryRecord:
        batch = [self.item(case) for _ in range(items)]
        self.counter += 1
        return make_deposit(batch, "depositor-1", T0 + self.counter, self.depositor, self.chain_id)

    def case_event(self, case: str, codes: list[bytes]) -> EntryRecord:
        """A case event attaching already-deposited ``codes`` (keys) to ``case``."""
        self.counter += 1
        body = CaseEvent(actor="court-1", case=case, kind="evidence_attached",
                         codes=tuple(c.decode("ascii") for c in codes), public_meta={},
                         private_commitment=None, client_time=T0 + self.counter)
        return EntryRecord(Entry.sign(body, self.actor, self.chain_id), (), (None,))

    # -------------------------------------------------------------- blocks

    def index_for(self, block: Block) -> BlockIndex:
        """What the state layer computes: a code per deposit item, a replay key per
        other entry, case links."""
        codes, cases, keys = {}, set(), {}
        for e, record in enumerate(block.records):
            body = record.entry.body
            if isinstance(body, Deposit):
                for i, item in enumerate(record.items):
                    code = derive_code(self.chain_id, record.entry.signature, i).key
                    codes[code] = (block.header.height, e, i)
                    if item.case is not None:
                        cases.add((item.case, code))
                continue
            keys[entry_key(record.entry)] = (block.header.height, e)
            if isinstance(body, CaseEvent):
                cases.update((body.case, c.encode("ascii")) for c in body.codes)
        return BlockIndex(codes, cases, keys)

    def next_block(self, store, records: list[EntryRecord], timestamp: int | None = None) -> Built:
        """The valid block after ``store``'s head holding ``records``, certified by a quorum."""
        head = store.head()
        leaves = [r.entry.leaf_hash() for r in records]
        created = merkle.new_nodes_for_append(head.history_size, leaves, store.history_node)
        size = head.history_size + len(leaves)

        def get(level: int, index: int) -> bytes:
            return created[(level, index)] if (level, index) in created else store.history_node(level, index)

        header = BlockHeader(
            chain_id=self.chain_id, height=head.height + 1, prev_hash=head.header_hash,
            entries_root=merkle.root(leaves), entry_count=len(records), history_size=size,
            history_root=merkle.root_from_nodes(size, get),
            timestamp=timestamp if timestamp is not None else T0 + 1000 * (head.height + 1),
            view=0, proposer="v1", validator_set_hash=self.validators.hash(),
        )
        block = Block(header, tuple(records))
        return Built(block, self.certify(header), self.index_for(block))

    def certify(self, header: BlockHeader) -> CommitCertificate:
        signers = self.validator_keys[: self.validators.quorum]
        return CommitCertificate(header.hash(), tuple((name, sign_commit(key, header)) for name, key in signers))

    def append(self, store, records: list[EntryRecord]) -> Built:
        """Build the next block from ``records``, append it to ``store`` and return it."""
        built = self.next_block(store, records)
        store.append(*built)
        return built


def codes_of(built: Built) -> list[bytes]:
    return [code for code, _ in built.index.codes]


def fill(store, chain, sizes=(1, 0, 3, 2, 5)):
    """Blocks with ``sizes`` entries: deposits of 1-3 items, cases A and B."""
    built = []
    for n in sizes:
        records = [chain.deposit(items=1 + (len(built) + i) % 3, case="AB"[i % 2]) for i in range(n)]
        built.append(chain.append(store, records))
    return built


def snapshot(store):
    """Everything observable, including the raw LevelDB contents."""
    head = store.head()
    state = [head, [store.block(h).encode() for h in range(1, head.height + 1)],
             [store.certificate(h) for h in range(1, head.height + 1)],
             store.codes_for_case("A", limit=1000), store.codes_for_case("B", limit=1000)]
    if hasattr(store, "_db"):  # LevelDBStore: the raw database too
        state.append(list(store._db.iterator()))
    return state
