"""ledger.chain: the frontier, building and validating blocks, pipelining on tentative tips."""

from __future__ import annotations

import dataclasses
import hashlib

import pytest
from hypothesis import given, strategies as st

from ledger import merkle
from ledger.block import Block, CommitCertificate, sign_commit
from ledger.chain import Frontier, LedgerApp
from ledger.crypto import SecretKey
from ledger.errors import EntryRejected, InputError
from ledger.genesis import Member, Node, build_genesis
from ledger.model import DepositItem, make_deposit
from ledger.state import Rules
from ledger.memory_store import MemoryStore
from ledger.store import BlockIndex

CHAIN = "chain-test"
T = 1_750_000_000_000
VALIDATORS = ["v1", "v2", "v3", "v4"]
KEYS = {n: SecretKey(hashlib.sha256(n.encode()).digest()) for n in VALIDATORS + ["shop", "outsider"]}


def genesis():
    members = [Member.make(n, ["validator"], KEYS[n].public,
                           node=Node("127.0.0.1:%d" % (7300 + i), "http://127.0.0.1:%d" % (7400 + i)))
               for i, n in enumerate(VALIDATORS)]
    members.append(Member.make("shop", ["depositor"], KEYS["shop"].public))
    return build_genesis(CHAIN, members, created_at=T - 10**9)


GENESIS = genesis()
VSET = GENESIS.validator_set()


def leaves(n):
    return [merkle.leaf_hash(b"%d" % i) for i in range(n)]


@given(st.lists(st.integers(0, 40), max_size=8))
def test_frontier_root_equals_the_rfc_root_for_any_append_sequence(chunks):
    frontier, all_leaves = Frontier(), []
    for size in chunks:
        new = leaves(len(all_leaves) + size)[len(all_leaves):]
        frontier = frontier.append(new)
        all_leaves += new
        assert frontier.size == len(all_leaves)
        assert frontier.root() == merkle.root(all_leaves)


def test_frontier_from_stored_nodes():
    nodes = merkle.MemoryNodes()
    for n in range(0, 70):
        expected = Frontier().append(leaves(n))
        nodes = merkle.MemoryNodes()
        nodes.append(leaves(n))
        assert Frontier.from_nodes(n, nodes.get) == expected


def deposit(n, key="shop", time=T):
    item = DepositItem(digest=hashlib.sha256(b"e%d" % n).digest(), sm3=None, category="general", case=None,
                       public_meta={}, private_commitment=None)
    return make_deposit([item], key if key != "outsider" else "shop", time, KEYS[key], CHAIN)


def commit(store, block, tip):
    sigs = tuple((n, sign_commit(KEYS[n], block.header)) for n in VALIDATORS[:3])
    store.append(block, CommitCertificate(block.header.hash(), sigs), BlockIndex.from_effects(block.header.height,
                                                                                             tip.effects))


def app():
    store = MemoryStore()
    return LedgerApp(Rules.from_genesis(GENESIS), store, VSET.hash()), store


def test_build_validate_and_store_a_chain():
    ledger_app, store = app()
    tip = ledger_app.tip_of_store()
    for height in range(1, 6):
        block, new_tip = ledger_app.build(tip, [deposit(height * 10 + i) for i in range(3)], T + height, 0, "v1")
        assert ledger_app.validate(tip, block) == new_tip
        commit(store, block, new_tip)
        tip = new_tip
    assert store.head().height == 5 and store.head().history_root == tip.frontier.root()
    assert ledger_app.tip_of_store().frontier == tip.frontier


def test_build_leaves_out_invalid_and_duplicate_records_and_reports_them():
    ledger_app, _ = app()
    tip = ledger_app.tip_of_store()
    forged = deposit(1, key="outsider")
    block, _, rejected = ledger_app.build_reporting(tip, [deposit(1), deposit(1), forged, deposit(2)], T, 0, "v1")
    assert len(block.records) == 2
    # deposit(1) by the outsider's key claims to be the shop's: its signature fails
    assert sorted(r.reason for r in rejected) == ["already_deposited", "bad_signature"]


def test_pipelined_blocks_see_their_tentative_ancestors():
    ledger_app, store = app()
    tip0 = ledger_app.tip_of_store()
    b1, tip1 = ledger_app.build(tip0, [deposit(1)], T + 1, 0, "v1")
    # Block 2 is built before block 1 is stored: the duplicate must still be refused.
    b2, tip2 = ledger_app.build(tip1, [deposit(1), deposit(2)], T + 2, 0, "v1")
    assert len(b2.records) == 1
    with pytest.raises(EntryRejected) as info:
        ledger_app.validate(tip1, dataclasses.replace(b2, records=(deposit(1),)))
    assert info.value.reason == "already_deposited"
    commit(store, b1, tip1)
    commit(store, b2, tip2)
    _, tip3 = ledger_app.build(tip2, [deposit(3)], T + 3, 0, "v1")
    assert [h for h, _ in tip3.recent] == [3]  # stored ancestors are dropped from the overlay


@pytest.mark.parametrize("field, value", [
    ("height", 7), ("prev_hash", b"\x01" * 32), ("entries_root", b"\x02" * 32), ("history_size", 9),
    ("history_root", b"\x03" * 32), ("validator_set_hash", b"\x04" * 32), ("chain_id", "other-chain"),
])
def test_validate_refuses_a_header_that_does_not_match(field, value):
    ledger_app, _ = app()
    tip = ledger_app.tip_of_store()
    block, _ = ledger_app.build(tip, [deposit(1)], T, 0, "v1")
    bad = dataclasses.replace(block, header=dataclasses.replace(block.header, **{field: value}))
    with pytest.raises(InputError, match=field) as info:
        ledger_app.validate(tip, bad)
    assert info.value.reason == "bad_header"


def test_validate_refuses_a_block_with_an_invalid_entry():
    ledger_app, _ = app()
    tip = ledger_app.tip_of_store()
    records = (deposit(1), deposit(2, key="outsider"))
    header, _ = ledger_app._header(tip, records, T, 0, "v1")  # a header that matches the bad contents
    with pytest.raises(EntryRejected) as info:
        ledger_app.validate(tip, Block(header, records))
    assert info.value.reason == "bad_signature" and info.value.entry_index == 1
