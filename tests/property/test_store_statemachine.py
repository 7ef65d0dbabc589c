"""Rule-based test: LevelDBStore against a naive model (lists, dicts, in-memory Merkle).

The model keeps every block, every leaf hash, the code -> location map and the
case -> codes sets in plain Python containers and computes roots and proofs with
``ledger.merkle``'s in-memory functions; the store must agree with it after any
sequence of valid appends, refused appends, reopens and reads.
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from ledger import merkle
from ledger.block import Block, CommitCertificate
from ledger.errors import StoreError
from ledger.leveldb_store import LevelDBStore
from ledger.store import BlockIndex, EntryRef, Location
from tests.storehelpers import ChainBuilder

CASES = ["A", "B", "案件-2024-1"]
REASONS = {"height": "wrong_height", "prev_hash": "wrong_prev_hash", "history_size": "wrong_history_size",
           "history_root": "wrong_history_root", "entries_root": "wrong_entries_root",
           "certificate": "certificate_mismatch", "index_missing": "bad_index", "index_duplicate": "duplicate_code"}
MUTATIONS = sorted(REASONS)


def _mutated(built, mutation: str, taken_code: bytes | None):
    header = built.block.header
    changes = {
        "height": {"height": header.height + 1},
        "prev_hash": {"prev_hash": bytes(b ^ 0xFF for b in header.prev_hash)},
        "history_size": {"history_size": header.history_size + 1},
        "history_root": {"history_root": merkle.leaf_hash(b"not the root")},
        "entries_root": {"entries_root": merkle.leaf_hash(b"not the root")},
    }.get(mutation)
    if changes is not None:
        new = dataclasses.replace(header, **changes)
        return Block(new, built.block.records), CommitCertificate(new.hash(), built.certificate.signatures), built.index
    if mutation == "certificate":
        return built.block, CommitCertificate(bytes(32), built.certificate.signatures), built.index
    codes = list(built.index.codes)
    if mutation == "index_missing":
        return built.block, built.certificate, BlockIndex(codes[1:], built.index.cases)
    codes[0] = (taken_code, codes[0][1])
    return built.block, built.certificate, BlockIndex(codes, built.index.cases)


class StoreMachine(RuleBasedStateMachine):
    def __init__(self):
        super().__init__()
        self.folder = tempfile.mkdtemp(prefix="evledger-store-sm-")
        self.store = LevelDBStore.open(self.folder)
        self.chain = ChainBuilder()
        self.built = []
        self.leaves: list[bytes] = []
        self.codes: dict[bytes, Location] = {}
        self.entry_keys: dict[bytes, EntryRef] = {}
        self.cases: dict[str, set[bytes]] = {}

    def teardown(self):
        try:
            report = self.store.check(deep=True)
            assert report.ok, report.problems
        finally:
            self.store.close()
            shutil.rmtree(self.folder, ignore_errors=True)

    # ------------------------------------------------------------- writes

    @rule(shape=st.lists(st.tuples(st.integers(1, 3), st.sampled_from([None] + CASES)), max_size=5),
          link=st.booleans(), data=st.data())
    def append(self, shape, link, data):
        records = [self.chain.deposit(items, case) for items, case in shape]
        if link and self.codes:
            codes = data.draw(st.lists(st.sampled_from(sorted(self.codes)), min_size=1, max_size=3, unique=True))
            records.append(self.chain.case_event(data.draw(st.sampled_from(CASES)), codes))
        built = self.chain.next_block(self.store, records)
        head = self.store.append(*built)
        assert head.height == len(self.built) + 1
        self.built.append(built)
        self.leaves += [r.entry.leaf_hash() for r in records]
        self.codes.update(built.index.codes)
        self.entry_keys.update(built.index.entry_keys)
        for case, code in built.index.cases:
            self.cases.setdefault(case, set()).add(code)

    @rule(mutation=st.sampled_from(MUTATIONS))
    def refused_append(self, mutation):
        if mutation == "index_duplicate" and not self.codes:
            mutation = "index_missing"
        taken = min(self.codes) if self.codes else None
        built = self.chain.next_block(self.store, [self.chain.deposit(2, "A")])
        try:
            self.store.append(*_mutated(built, mutation, taken))
        except StoreError as exc:
            assert exc.reason == REASONS[mutation], (mutation, str(exc))
        else:
            raise AssertionError("append with a wrong %s was accepted" % mutation)

    @rule()
    def reopen(self):
        self.store.close()
        self.store = LevelDBStore.open(self.folder, create=False)

    # -------------------------------------------------------------- reads

    @rule(data=st.data())
    def read_block(self, data):
        height = data.draw(st.integers(0, len(self.built) + 1))
        if not 1 <= height <= len(self.built):
            assert self.store.block(height) is None and self.store.header(height) is None
            return
        built = self.built[height - 1]
        assert self.store.header(height) == built.block.header
        assert self.store.certificate(height) == built.certificate
        assert self.store.block(height).encode() == built.block.encode()
        for e, record in enumerate(built.block.records):
            assert self.store.record(height, e) == record
            proof = self.store.block_inclusion_proof(height, e)
            merkle.verify_inclusion(record.entry.leaf_hash(), e, len(built.block.records), proof,
                                    built.block.header.entries_root)

    @rule(data=st.data())
    def proofs(self, data):
        n = len(self.leaves)
        if n == 0:
            assert self.store.history_root(0) == merkle.EMPTY_ROOT
            return
        size = data.draw(st.integers(1, n))
        index = data.draw(st.integers(0, size - 1))
        size1 = data.draw(st.integers(1, size))
        root = merkle.root(self.leaves[:size])
        assert self.store.history_root(size) == root
        proof = self.store.inclusion_proof(index, size)
        assert proof == merkle.inclusion_proof(index, self.leaves[:size])
        merkle.verify_inclusion(self.leaves[index], index, size, proof, root)
        proof = self.store.consistency_proof(size1, size)
        assert proof == merkle.consistency_proof(size1, self.leaves[:size])
        merkle.verify_consistency(size1, size, proof, merkle.root(self.leaves[:size1]), root)

    @rule(data=st.data(), unknown=st.binary(min_size=25, max_size=25).map(lambda b: bytes(48 + c % 10 for c in b)))
    def locate(self, data, unknown):
        if self.codes:
            code = data.draw(st.sampled_from(sorted(self.codes)))
            assert self.store.locate(code) == self.codes[code]
        assert self.store.locate(unknown) == self.codes.get(unknown)
        assert self.store.has_code(unknown) == (unknown in self.codes)
        for key, ref in self.entry_keys.items():
            assert self.store.locate_entry(key) == ref and self.store.has_code(key)

    @rule(case=st.sampled_from(CASES), limit=st.integers(1, 4))
    def page_through_case(self, case, limit):
        got, after = [], None
        while True:
            page = self.store.codes_for_case(case, limit=limit, after=after)
            assert len(page) <= limit
            if not page:
                break
            got += page
            after = page[-1]
        assert got == sorted(self.cases.get(case, ()))

    @invariant()
    def head_matches_model(self):
        head = self.store.head()
        assert head.height == len(self.built)
        assert head.history_size == len(self.leaves)
        if self.built:
            assert head.header == self.built[-1].block.header
            assert head.history_root == merkle.root(self.leaves)


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=100, stateful_step_count=40, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
