"""The store contract, run against MemoryStore and LevelDBStore alike.

LevelDB-only behaviour (persistence, checksums, format version, locking, open-time
verification, ``check``) is in ``test_leveldb_store.py``.
"""

from __future__ import annotations

import dataclasses

import pytest

from ledger import merkle
from ledger.block import ZERO_HASH, Block, CommitCertificate
from ledger.errors import InputError, StoreError
from ledger.leveldb_store import LevelDBStore
from ledger.memory_store import MemoryStore
from ledger.store import EMPTY_HEAD, BlockIndex, EntryRef, Location
from tests.storehelpers import ChainBuilder, codes_of, entry_key, fill, snapshot


@pytest.fixture(params=["memory", "leveldb"])
def store(request, tmp_path):
    s = MemoryStore() if request.param == "memory" else LevelDBStore.open(tmp_path / "db")
    yield s
    s.close()


@pytest.fixture
def chain():
    return ChainBuilder()


# ------------------------------------------------------------------- basics


def test_empty_store(store):
    assert store.head() == EMPTY_HEAD
    assert store.header(1) is None and store.block(1) is None and store.records(1) is None
    assert store.record(1, 0) is None and store.history_index(1, 0) is None
    assert store.history_root(0) == merkle.EMPTY_ROOT
    assert store.locate(b"X" * 25) is None
    assert store.codes_for_case("A") == []
    assert store.check(deep=True).ok


def test_round_trip(store, chain):
    built = fill(store, chain)
    head = store.head()
    assert head.height == len(built)
    assert head.header == built[-1].block.header
    assert head.header_hash == built[-1].block.header.hash()
    assert head.history_size == sum(len(b.block.records) for b in built)
    for height, b in enumerate(built, 1):
        assert store.header(height) == b.block.header
        assert store.certificate(height) == b.certificate
        assert store.block(height).encode() == b.block.encode()
        assert store.records(height) == b.block.records
        for e, record in enumerate(b.block.records):
            assert store.record(height, e) == record
        assert store.record(height, len(b.block.records)) is None
    assert store.header(len(built) + 1) is None and store.header(0) is None and store.header(-1) is None
    report = store.check(deep=True)
    assert report.ok, report.problems
    assert (report.blocks, report.entries) == (len(built), head.history_size)


def test_append_returns_new_head(store, chain):
    built = chain.next_block(store, [chain.deposit()])
    head = store.append(*built)
    assert head == store.head() and head.height == 1 and head.history_size == 1
    assert built.block.header.prev_hash == ZERO_HASH


def test_empty_blocks_are_allowed(store, chain):
    fill(store, chain, sizes=(0, 0, 1, 0))
    assert store.head().height == 4 and store.head().history_size == 1
    assert store.records(1) == ()


# ---------------------------------------------------------------- rejections


def _with_header(built, **changes):
    header = dataclasses.replace(built.block.header, **changes)
    block = Block(header, built.block.records)
    return block, CommitCertificate(header.hash(), built.certificate.signatures), built.index


def _rejections(store, chain):
    """(reason, block, certificate, index) for every way an append must fail."""
    good = chain.next_block(store, [chain.deposit(2, case="A"), chain.deposit(1)])
    header = good.block.header
    other = chain.deposit(1)
    taken = codes_of_store(store)
    codes = dict(good.index.codes)
    missing = BlockIndex(dict(list(codes.items())[1:]), ())
    extra = BlockIndex({**codes, b"EXTRA": (header.height, 1, 5)}, ())
    dup = BlockIndex({taken[0]: next(iter(codes.values())), **dict(list(codes.items())[1:])}, ())
    unknown = BlockIndex(codes, [("A", b"NOSUCHCODE")])
    event = chain.next_block(store, [chain.case_event("A", taken[:1]), chain.deposit(1)])
    no_key = BlockIndex(event.index.codes, event.index.cases)
    reused = BlockIndex(event.index.codes, event.index.cases, {stored_entry_key(store): (header.height, 0)})
    return [
        ("wrong_height", *_with_header(good, height=header.height + 1)),
        ("wrong_prev_hash", *_with_header(good, prev_hash=bytes(32))),
        ("wrong_chain", *_with_header(good, chain_id="another-chain")),
        ("wrong_history_size", *_with_header(good, history_size=header.history_size + 1)),
        ("wrong_history_root", *_with_header(good, history_root=header.entries_root)),
        ("wrong_entries_root", *_with_header(good, entries_root=header.history_root)),
        ("wrong_entry_count", *_with_header(good, entry_count=3)),
        ("wrong_entries_root", Block(header, (good.block.records[1], good.block.records[0])), good.certificate,
         good.index),
        ("wrong_entry_count", Block(header, good.block.records + (other,)), good.certificate, good.index),
        ("certificate_mismatch", good.block, CommitCertificate(bytes(32), good.certificate.signatures), good.index),
        ("bad_index", good.block, good.certificate, missing),
        ("bad_index", good.block, good.certificate, extra),
        ("bad_index", good.block, good.certificate, BlockIndex({}, ())),
        ("duplicate_code", good.block, good.certificate, dup),
        ("unknown_code", good.block, good.certificate, unknown),
        ("bad_index", event.block, event.certificate, no_key),
        ("bad_index", good.block, good.certificate, BlockIndex(codes, (), {b"\x01" * 32: (header.height, 0)})),
        ("duplicate_entry_key", event.block, event.certificate, reused),
    ], good


def stored_entry_key(store):
    for height in range(1, store.head().height + 1):
        for record in store.records(height):
            if record.items == ():
                return entry_key(record.entry)
    raise AssertionError("no non-deposit entry stored")


def codes_of_store(store):
    return [code for case in "AB" for code in store.codes_for_case(case, limit=1000)]


def test_every_rejection_leaves_the_store_unchanged(store, chain):
    fill(store, chain, sizes=(2, 3))
    chain.append(store, [chain.case_event("B", codes_of_store(store)[:2])])
    cases, good = _rejections(store, chain)
    before = snapshot(store)
    for reason, block, certificate, index in cases:
        with pytest.raises(StoreError) as err:
            store.append(block, certificate, index)
        assert err.value.reason == reason, (reason, str(err.value))
        assert snapshot(store) == before, reason
    store.append(*good)
    assert store.head().height == 4
    assert store.check(deep=True).ok


def test_first_block_must_be_height_one_on_zero_hash(store, chain):
    good = chain.next_block(store, [chain.deposit()])
    for changes, reason in (({"height": 2}, "wrong_height"), ({"prev_hash": b"\x01" * 32}, "wrong_prev_hash")):
        with pytest.raises(StoreError) as err:
            store.append(*_with_header(good, **changes))
        assert err.value.reason == reason
    assert store.head() == EMPTY_HEAD


def test_a_block_cannot_be_appended_twice(store, chain):
    built = chain.append(store, [chain.deposit()])
    with pytest.raises(StoreError) as err:
        store.append(*built)
    assert err.value.reason == "wrong_height"


def test_append_type_checks(store, chain):
    built = chain.next_block(store, [chain.deposit()])
    with pytest.raises(TypeError):
        store.append(built.block, built.certificate, {})
    with pytest.raises(TypeError):
        store.append(built.block.encode(), built.certificate, built.index)


def test_block_index_validation():
    with pytest.raises(ValueError):
        BlockIndex([(b"A" * 25, (1, 0, 0)), (b"A" * 25, (1, 0, 1))])
    with pytest.raises(ValueError):
        BlockIndex({b"A" * 25: (1, 0, 0), b"B" * 25: (1, 0, 0)})
    with pytest.raises(ValueError):
        BlockIndex({b"bad code": (1, 0, 0)})
    with pytest.raises(TypeError):
        BlockIndex({"text": (1, 0, 0)})
    with pytest.raises(ValueError):
        BlockIndex({}, [("a\x00b", b"A" * 25)])
    index = BlockIndex({b"B" * 25: (1, 0, 1), b"A" * 25: (1, 0, 0)}, [("c", b"B" * 25), ("c", b"B" * 25)])
    assert index.codes == ((b"A" * 25, Location(1, 0, 0)), (b"B" * 25, Location(1, 0, 1)))
    assert index.cases == (("c", b"B" * 25),)


# --------------------------------------------------------------------- proofs


def all_leaves(store):
    return [r.entry.leaf_hash() for h in range(1, store.head().height + 1) for r in store.records(h)]


def test_history_proofs_verify_for_every_size(store, chain):
    built = fill(store, chain, sizes=(1, 2, 3, 5, 8, 1, 0, 7, 4, 2))
    leaves = all_leaves(store)
    n = len(leaves)
    assert n == store.head().history_size == 33
    roots = [merkle.root(leaves[:size]) for size in range(n + 1)]
    for size in range(n + 1):
        assert store.history_root(size) == roots[size]
    for size in range(1, n + 1):
        for index in range(size):
            proof = store.inclusion_proof(index, size)
            assert proof == merkle.inclusion_proof(index, leaves[:size])
            merkle.verify_inclusion(leaves[index], index, size, proof, roots[size])
        for size1 in range(1, size + 1):
            proof = store.consistency_proof(size1, size)
            assert proof == merkle.consistency_proof(size1, leaves[:size])
            merkle.verify_consistency(size1, size, proof, roots[size1], roots[size])
    for b in built:
        assert store.history_root(b.block.header.history_size) == b.block.header.history_root


def test_entry_proofs_against_block_and_history(store, chain):
    fill(store, chain, sizes=(3, 1, 6, 0, 5))
    for height in range(1, store.head().height + 1):
        header = store.header(height)
        for e, record in enumerate(store.records(height)):
            leaf = record.entry.leaf_hash()
            merkle.verify_inclusion(leaf, e, header.entry_count, store.block_inclusion_proof(height, e),
                                    header.entries_root)
            position = store.history_index(height, e)
            assert store.history_node(0, position) == leaf
            merkle.verify_inclusion(leaf, position, header.history_size,
                                    store.inclusion_proof(position, header.history_size), header.history_root)


def test_out_of_range_requests(store, chain):
    fill(store, chain, sizes=(3, 2))
    size = store.head().history_size
    bad = [
        lambda: store.history_root(size + 1),
        lambda: store.inclusion_proof(size, size),
        lambda: store.inclusion_proof(0, size + 1),
        lambda: store.inclusion_proof(0, 0),
        lambda: store.consistency_proof(0, size),
        lambda: store.consistency_proof(3, 2),
        lambda: store.consistency_proof(1, size + 1),
        lambda: store.block_inclusion_proof(1, 3),
        lambda: store.block_inclusion_proof(3, 0),
        lambda: store.history_node(0, size),
        lambda: store.history_node(3, 0),
        lambda: store.codes_for_case("A", limit=0),
        lambda: store.codes_for_case("A", limit=100_000),
    ]
    for call in bad:
        with pytest.raises(InputError):
            call()
    with pytest.raises(TypeError):
        store.header("1")
    with pytest.raises(TypeError):
        store.history_root(True)
    assert store.history_node(2, 0) == merkle.root(all_leaves(store)[:4])


# -------------------------------------------------------------------- lookups


def test_locate_every_item_by_code(store, chain):
    built = fill(store, chain)
    for b in built:
        for code, location in b.index.codes:
            assert store.locate(code) == location
            record = store.record(location.height, location.entry_index)
            assert record.items[location.item_index] is not None
    assert store.locate(b"0" * 25) is None
    with pytest.raises(TypeError):
        store.locate("0" * 25)


def test_codes_for_case_pagination(store, chain):
    expected = []
    for _ in range(4):
        b = chain.append(store, [chain.deposit(items=4, case="(2024) Jing 0105 Min Chu 123"), chain.deposit(1)])
        expected += [code for code, loc in b.index.codes if loc.entry_index == 0]
    expected.sort()
    assert store.codes_for_case("(2024) Jing 0105 Min Chu 123", limit=1000) == expected
    pages, after = [], None
    while True:
        page = store.codes_for_case("(2024) Jing 0105 Min Chu 123", limit=5, after=after)
        if not page:
            break
        assert len(page) <= 5
        pages += page
        after = page[-1]
    assert pages == expected
    assert store.codes_for_case("(2024) Jing 0105 Min Chu 12") == []
    assert store.codes_for_case("(2024) Jing 0105 Min Chu 1234") == []
    assert store.codes_for_case("(2024) Jing 0105 Min Chu 123", after=b"~") == []
    assert store.codes_for_case("(2024) Jing 0105 Min Chu 123", after=b"0")[:1] == expected[:1]


def test_unicode_case_and_case_events_link_earlier_codes(store, chain):
    case = "(2024)京0105民初123号"
    first = chain.append(store, [chain.deposit(items=2)])
    codes = codes_of(first)
    assert store.codes_for_case(case) == []
    chain.append(store, [chain.case_event(case, codes), chain.deposit(1, case=case)])
    linked = store.codes_for_case(case)
    assert set(codes) <= set(linked) and len(linked) == 3
    chain.append(store, [chain.case_event(case, codes[:1])])  # linking again is harmless
    assert store.codes_for_case(case) == linked
    assert store.check(deep=True).ok


def test_entry_keys_and_has_code(store, chain):
    first = chain.append(store, [chain.deposit(items=2)])
    codes = codes_of(first)
    second = chain.append(store, [chain.deposit(1), chain.case_event("A", codes)])
    key = entry_key(second.block.records[1].entry)
    assert second.index.entry_keys == ((key, EntryRef(2, 1)),)
    assert store.locate_entry(key) == EntryRef(2, 1)
    assert store.locate_entry(bytes(32)) is None
    for code in codes + codes_of(second) + [key]:
        assert store.has_code(code)
    for other in (bytes(32), b"0" * 25, b"", b"\x00" * 100):
        assert not store.has_code(other)
    with pytest.raises(ValueError):
        store.locate_entry(b"short")


def test_block_index_from_state_effects():
    class Effects:  # the shape of ledger.state.BlockEffects
        codes = {b"B" * 25: (0, 1), b"A" * 25: (0, 0)}
        entry_keys = {b"k" * 32: 1}
        cases = {"c1": (b"B" * 25, b"A" * 25), "c2": (b"Z" * 25,)}

    index = BlockIndex.from_effects(7, Effects)
    assert index.codes == ((b"A" * 25, Location(7, 0, 0)), (b"B" * 25, Location(7, 0, 1)))
    assert index.entry_keys == ((b"k" * 32, EntryRef(7, 1)),)
    assert index.cases == (("c1", b"A" * 25), ("c1", b"B" * 25), ("c2", b"Z" * 25))


# ------------------------------------------------------------------ lifecycle


def test_closed_store_refuses_everything(store, chain):
    fill(store, chain, sizes=(1,))
    built = chain.next_block(store, [chain.deposit()])
    store.close()
    store.close()
    assert store.closed
    for call in (store.head, lambda: store.header(1), lambda: store.history_root(0), lambda: store.locate(b"A"),
                 lambda: store.codes_for_case("A"), lambda: store.append(*built), lambda: store.inclusion_proof(0, 1)):
        with pytest.raises(StoreError):
            call()


def test_context_manager_closes(tmp_path):
    with LevelDBStore.open(tmp_path / "db") as s:
        assert not s.closed
    assert s.closed
    with MemoryStore() as m:
        pass
    assert m.closed


def test_prepare_append_validates_a_proposal_without_writing(store, chain):
    fill(store, chain, sizes=(2,))
    proposal = chain.next_block(store, [chain.deposit(2)])
    before = snapshot(store)
    plan = store.prepare_append(proposal.block, None, proposal.index)
    assert plan.head.height == 2 and plan.head.history_root == proposal.block.header.history_root
    assert snapshot(store) == before
    with pytest.raises(StoreError) as err:
        store.prepare_append(_with_header(proposal, history_root=bytes(32))[0], None, proposal.index)
    assert err.value.reason == "wrong_history_root"
    store.append(*proposal)
    assert store.head() == plan.head


# ------------------------------------------------------------ replica state (consensus Persist)

def test_replica_state_round_trip_and_delete(store):
    assert store.replica_state() == {}
    store.persist([("view", b"\x05"), ("vote/prepare/7", b"x" * 100)])
    store.persist([("vote/prepare/7", None), ("vote/commit/7", b"y")])
    assert store.replica_state() == {"view": b"\x05", "vote/commit/7": b"y"}


@pytest.mark.parametrize("writes", [[("", b"x")], [(b"bytes-key", b"x")], [("k" * 201, b"x")], [("k", "text")],
                                    [("k", 5)]])
def test_replica_state_rejects_bad_writes_and_writes_nothing(store, writes):
    with pytest.raises(TypeError):
        store.persist([("good", b"1")] + writes)
    assert store.replica_state() == {}


def test_replica_state_survives_reopen_and_corruption_is_reported(tmp_path):
    import plyvel

    from ledger.errors import CorruptionError

    path = tmp_path / "db"
    with LevelDBStore.open(path) as s:
        s.persist([("view", b"\x09")])
    with LevelDBStore.open(path) as s:
        assert s.replica_state() == {"view": b"\x09"}
    db = plyvel.DB(str(path))
    raw = db.get(b"pview")
    db.put(b"pview", raw[:-1] + bytes([raw[-1] ^ 1]))
    db.close()
    with LevelDBStore.open(path) as s:
        with pytest.raises(CorruptionError, match="p/view"):
            s.replica_state()


@pytest.mark.parametrize("sync", [True, False])
def test_write_group_applies_ops_in_order_and_sync_makes_them_durable(sync, tmp_path, chain):
    store = LevelDBStore.open(tmp_path / "db")
    first = chain.next_block(store, [chain.deposit(2)])
    ops = [("persist", [("view", b"\x01")]), ("append", first.block, first.certificate, first.index)]
    heads = store.write_group(ops, sync=sync)
    assert heads[0] is None and heads[1] == store.head() and store.head().height == 1
    second = chain.next_block(store, [chain.deposit(1)])  # built on the group's (unsynced) head
    heads = store.write_group([("append", second.block, second.certificate, second.index),
                               ("persist", [("view", None)])], sync=sync)
    assert heads[0].height == 2 and heads[1] is None
    if not sync:
        store.sync()
    store.close()
    with pytest.raises(StoreError):
        store.sync()
    store = LevelDBStore.open(tmp_path / "db")
    assert store.head().height == 2 and store.replica_state() == {}
    assert store.block(2).encode() == second.block.encode()
    store.close()


def test_a_failing_op_stops_the_group_after_the_ops_before_it(store, chain):
    good = chain.next_block(store, [chain.deposit()])
    with pytest.raises(StoreError) as err:
        store.write_group([("persist", [("k", b"v")]), ("append", good.block, good.certificate, good.index),
                           ("append", good.block, good.certificate, good.index), ("persist", [("later", b"x")])],
                          sync=False)
    assert err.value.reason == "wrong_height"
    assert store.head().height == 1 and store.replica_state() == {"k": b"v"}
    with pytest.raises(TypeError):
        store.write_group([("truncate",)])
