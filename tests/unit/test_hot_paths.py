"""The fast paths of the per-item hot loops give exactly the answers of the plain ones.

Each fast path (whole-list checks, memos, caches) exists only for speed; these
tests hold it to the reference it replaced, including on the inputs it must
refuse, so a fast path can never accept what the plain path would not.
"""

from __future__ import annotations

import hashlib
import struct
import threading

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import codec, item_reader, model
from ledger.codec import DecodeError, array_header, decode, encode
from ledger import derived
from ledger.codes import codes_from_keys, derive_code, derive_code_keys, derive_codes
from ledger.leveldb_store import LevelDBStore
from ledger.model import DepositItem, EntryRecord, make_deposit
from ledger.state import Rules, _check_items, _items_pass, check_record
from ledger.memo import BoundedMemo
from ledger.memory_store import MemoryStore
from ledger.store import BlockIndex, Location
from ledger.store_types import AbsentCodes, _keyed, check_code_key, check_code_keys
from ledger.errors import EntryRejected, StoreError
from tests.storehelpers import ChainBuilder
from tests.unit.test_state import GENESIS, KEYS, MAX_CASE, MAX_META, T, deposit

RULES = Rules.from_genesis(GENESIS)


# --------------------------------------------------------------------------- codec


def _record_bytes(meta_pairs: list[tuple[str, str]]) -> bytes:
    """A deposit record whose single item carries ``meta_pairs`` in the given wire order."""
    record = deposit(1, meta=dict(meta_pairs))
    wire = record.wire()
    item = wire[3][0]
    item[6] = dict(meta_pairs)  # insertion order = wire order
    return msgpack.packb(wire, use_bin_type=True)


def test_typed_decode_refuses_unsorted_metadata_keys():
    good = _record_bytes([("a", "1"), ("b", "2")])
    assert EntryRecord.decode(good).items[0].public_meta == (("a", "1"), ("b", "2"))
    with pytest.raises(DecodeError) as err:
        EntryRecord.decode(_record_bytes([("b", "2"), ("a", "1")]))
    assert err.value.reason == "non_canonical"


@pytest.mark.parametrize("float_bytes", [b"\xcb" + struct.pack(">d", 1.5), b"\xca" + struct.pack(">f", 1.5)])
def test_typed_decode_refuses_floats_of_either_width(float_bytes):
    data = array_header(2) + encode("x") + float_bytes
    with pytest.raises(DecodeError, match="floating-point"):
        decode(data)
    wire = deposit(1).wire()
    wire[2][2][3] = 1.5  # client_time
    packed = msgpack.packb(wire, use_bin_type=True, use_single_float=float_bytes[0] == 0xCA)
    with pytest.raises(DecodeError):  # typed: the field's reader refuses it
        EntryRecord.decode(packed)


def test_typed_decode_skips_only_the_depth_walk():
    deep = b"\x91" * 40 + b"\xc0"
    with pytest.raises(DecodeError, match="deeper"):
        decode(deep)
    assert decode(deep, typed=True) is not None  # typed readers refuse what their schema lacks
    with pytest.raises(DecodeError):
        EntryRecord.decode(deep)


def test_bytes_map_keys_are_a_decode_error():
    with pytest.raises(DecodeError, match="strings"):
        decode(b"\x81\xc4\x01k\x01")  # {b"k": 1}
    wire = deposit(1).wire()
    wire[3][0][6] = {b"k": "v"}
    with pytest.raises(DecodeError):  # typed: the metadata reader refuses it
        EntryRecord.decode(msgpack.packb(wire, use_bin_type=True))


_PACK_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.text(max_size=40) | st.binary(max_size=300)
    | st.floats(allow_nan=False),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=30)


@settings(max_examples=300, deadline=None)
@given(st.lists(_PACK_VALUES, min_size=1, max_size=8))
def test_the_kept_packer_packs_exactly_what_packb_does(values):
    def outcome(pack, value, **options):
        try:
            return pack(value, **options)
        except (OverflowError, ValueError, TypeError) as exc:  # a float too wide for 32 bits
            return type(exc)

    for value in values:  # one packer, many values: nothing of one may leak into the next
        assert outcome(codec.pack, value) == outcome(msgpack.packb, value, use_bin_type=True)
        assert (outcome(codec.pack, value, single_float=True)
                == outcome(msgpack.packb, value, use_bin_type=True, use_single_float=True))


def test_the_kept_packer_survives_a_failed_pack_and_lets_a_large_buffer_go():
    codec.pack([1, 2])
    kept = codec._packer()
    with pytest.raises(TypeError):
        codec.pack([b"x" * 100_000, object()])
    assert codec._packer() is not kept  # the packer may hold what it wrote before the error: let go
    assert codec.pack([3]) == b"\x91\x03"
    kept = codec._packer()
    big = codec.pack(b"x" * (codec.RETAIN_BYTES + 1))
    assert len(big) > codec.RETAIN_BYTES
    assert codec._packer() is not kept  # the packer holding a large buffer was let go
    small = codec.small_packer()
    assert small([1]) == b"\x91\x01"


def test_each_thread_packs_with_its_own_packer():
    here = codec._packer()
    seen = []
    worker = threading.Thread(target=lambda: seen.append(codec._packer()))
    worker.start()
    worker.join()
    assert seen and seen[0] is not here
    assert codec._packer() is here


# --------------------------------------------------------------------------- record memo


def test_a_record_read_twice_is_the_same_object_and_keeps_its_bytes():
    data = deposit(3).encode()
    first = EntryRecord.decode(data)
    assert EntryRecord.decode(data) is first
    assert first.encode() == data


def test_the_memo_never_returns_a_record_for_other_bytes_under_the_same_signature():
    record = deposit(2)
    EntryRecord.decode(record.encode())  # remembered under its signature
    wire = record.wire()
    wire[3][1][2] = hashlib.sha256(b"forged").digest()  # another digest, the same signature
    with pytest.raises(DecodeError) as err:
        EntryRecord.decode(msgpack.packb(wire, use_bin_type=True))
    assert err.value.reason == "items_root_mismatch"


def test_the_memo_is_bounded_by_items():
    memo = BoundedMemo(10)
    for i in range(6):
        memo.put(i, str(i), weight=3)
    assert memo.weight <= 10 and memo.get(0) is None and memo.get(5) == "5"


def test_a_discarded_memo_entry_gives_its_weight_back():
    memo = BoundedMemo(10)
    memo.put("a", 1, weight=4)
    memo.put("b", 2, weight=5)
    memo.discard("a")
    memo.discard("never there")
    assert memo.get("a") is None and memo.get("b") == 2 and memo.weight == 5


def test_an_entry_is_forgotten_once_two_epochs_have_begun_after_it():
    memo = BoundedMemo(100)
    memo.put("old", 1, weight=4)
    assert memo.advance() == 0  # epoch 1: "old" (epoch 0) is from the previous epoch, kept
    memo.put("young", 2, weight=5)
    memo.put("old", 1, weight=4)  # put again: it is young now
    assert memo.advance() == 0 and memo.get("old") == 1
    assert memo.advance() == 2  # epoch 3: both were put in epoch 1
    assert memo.get("old") is None and memo.get("young") is None and memo.weight == 0


def test_aging_drops_a_record_met_but_never_committed_from_every_memo():
    record = deposit(2, start=7000)
    sig = record.entry.signature
    read = EntryRecord.decode(record.encode())  # remembered, as a peer's forward would be
    derived.code_keys("chain", read)
    derived.remember_verified(sig, b"f" * 32)
    assert model._RECORDS.get(sig) is not None
    derived.age()
    assert model._RECORDS.get(sig) is not None and derived.CODES.get(("chain", sig, 2)) is not None
    derived.age()
    assert model._RECORDS.get(sig) is None and derived.CODES.get(("chain", sig, 2)) is None
    assert derived.VERIFIED.get(sig) is None


def test_forget_drops_a_committed_record_from_every_memo():
    record = deposit(3)
    wire = msgpack.unpackb(record.encode(), raw=False)
    read = EntryRecord.from_wire(wire)
    assert EntryRecord.from_wire(wire) is read  # remembered
    keys = derived.code_keys(RULES.chain_id, read)
    check_record(RULES, MemoryStore(), read, T)
    sig = read.entry.signature
    assert derived.CODES.get((RULES.chain_id, sig, 3)) == keys and derived.VERIFIED.get(sig) is not None
    derived.forget(RULES.chain_id, [read])
    assert derived.CODES.get((RULES.chain_id, sig, 3)) is None and derived.VERIFIED.get(sig) is None
    again = EntryRecord.from_wire(wire)
    assert again is not read and again == read  # read anew, to the same record
    assert derived.code_keys(RULES.chain_id, again) == keys


# --------------------------------------------------------------------------- codes


@settings(max_examples=25, deadline=None)
@given(st.binary(min_size=64, max_size=64), st.integers(0, 40), st.sampled_from(["c", "evledger-demo", "链"]))
def test_derive_codes_equals_derive_code(signature, count, chain_id):
    codes, keys = derive_codes(chain_id, signature, count)
    assert len(codes) == len(keys) == count
    for i in range(count):
        one = derive_code(chain_id, signature, i)
        assert codes[i] == one and keys[i] == one.key
    assert derive_code_keys(chain_id, signature, count) == keys
    assert codes_from_keys(keys) == codes


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=0, max_size=70), max_size=6))
def test_check_code_keys_agrees_with_check_code_key(keys):
    def one_by_one() -> bool:
        try:
            for key in keys:
                check_code_key(key)
        except (TypeError, ValueError):
            return False
        return True

    assert check_code_keys(keys) == one_by_one()


# --------------------------------------------------------------------------- index


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.binary(min_size=0, max_size=66), st.tuples(st.integers(-1, 3), st.integers(0, 3),
                                                                        st.integers(0, 3))), max_size=6))
def test_block_index_fast_path_matches_the_item_loop(pairs):
    def slow():
        from ledger import store_types

        saved, store_types._keyed_bulk = store_types._keyed_bulk, lambda *a: None
        try:
            return _keyed(pairs, check_code_key, Location, "code")
        finally:
            store_types._keyed_bulk = saved

    try:
        expected = slow()
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            BlockIndex(pairs, ())
        return
    got = BlockIndex(pairs, ()).codes
    assert got == expected and all(type(loc) is Location for _, loc in got)


class _Effects:
    def __init__(self, codes, cases=None, entry_keys=None):
        self.codes, self.cases, self.entry_keys = codes, cases or {}, entry_keys or {}


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(st.text(alphabet="0123456789ABCDEFGHJKMNPQRSTVWXYZ", min_size=25, max_size=25).map(str.encode),
                       st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=2, max_size=8),
       st.sampled_from([None, (b"", (0, 0)), (b"x\x00", (0, 0)), (b"A" * 25, (-1, 0)), (b"B" * 25, (True, 0)),
                        (b"C" * 25, (0, 1.0))]),
       st.sampled_from([0, 1, 5, -1, True]), st.booleans())
def test_block_index_from_effects_fast_path_matches_the_general_one(codes, extra, height, with_case):
    """A block of deposits only is indexed without the intermediate pairs; the result,
    or the refusal, must be what the constructor gives for the same pairs."""
    if extra is not None:
        codes = {**codes, extra[0]: extra[1]}
    effects = _Effects(codes, {"case-1": tuple(codes)[:1]} if with_case else None)
    pairs = [(code, (height, e, i)) for code, (e, i) in codes.items()]
    cases = [(case, code) for case, keys in effects.cases.items() for code in keys]
    try:
        expected = BlockIndex(codes=pairs, cases=cases)
    except (TypeError, ValueError) as exc:
        with pytest.raises(type(exc)):
            BlockIndex.from_effects(height, effects)
        return
    got = BlockIndex.from_effects(height, effects)
    assert got == expected
    assert all(type(loc) is Location for _, loc in got.codes)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["general", "copyright", "patent", "nope"]),
                          st.integers(0, MAX_META + 1), st.one_of(st.none(), st.integers(1, MAX_CASE + 2)),
                          st.booleans()), min_size=1, max_size=5))
def test_whole_batch_item_checks_agree_with_the_item_loop(specs):
    items, private = [], []
    for n, (category, meta_keys, case_len, has_private) in enumerate(specs):
        part = model.PrivateMeta(bytes(16), {"k%d" % k: "v" for k in range(meta_keys)}) if has_private else None
        items.append(DepositItem(hashlib.sha256(b"%d" % n).digest(), None, category,
                                 None if case_len is None else "C" * case_len,
                                 {"m%d" % k: "v" for k in range(meta_keys)},
                                 None if part is None else part.commitment()))
        private.append(part)
    record = make_deposit(items, "shop", T, KEYS["shop"], GENESIS.chain_id, private=private)
    try:
        for i, (item, part) in enumerate(zip(record.items, record.private)):  # the reference: one item at a time
            assert item.category in RULES.categories and len(item.public_meta) <= MAX_META
            assert item.case is None or len(item.case) <= MAX_CASE
            assert part is None or len(part.fields) <= MAX_META
        loop_passes = True
    except AssertionError:
        loop_passes = False
    assert _items_pass(RULES, record) == loop_passes
    if loop_passes:
        _check_items(RULES, record)
    else:
        with pytest.raises(EntryRejected):
            _check_items(RULES, record)


# --------------------------------------------------------------------------- absent codes


def test_absent_codes_forget_what_is_stored_and_ignore_answers_raced_by_an_append():
    absent = AbsentCodes(limit=5)
    gen, unknown = absent.unknown([b"A", b"B"])
    absent.learn(gen, unknown, found=[b"B"])
    assert absent.unknown([b"A", b"B"])[1] == [b"B"]
    absent.stored([b"A"])
    assert absent.unknown([b"A"])[1] == [b"A"]
    gen, unknown = absent.unknown([b"C"])
    absent.stored([b"C"])  # an append between the lookup and learning its answer
    absent.learn(gen, unknown, found=[])
    assert absent.unknown([b"C"])[1] == [b"C"]
    gen, _ = absent.unknown([])
    absent.learn(gen, [b"%d" % i for i in range(7)], found=[])  # over the limit: forgotten wholesale first
    assert len(absent.keys) <= 7


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
def test_codes_asked_absent_are_reported_once_appended(kind, tmp_path):
    store = MemoryStore() if kind == "memory" else LevelDBStore.open(tmp_path / "db")
    chain = ChainBuilder()
    built = chain.next_block(store, [chain.deposit(3)])
    codes = [code for code, _ in built.index.codes]
    assert store.codes_present(codes) == []  # now remembered as absent
    store.append(*built)
    assert sorted(store.codes_present(codes)) == sorted(codes)
    assert store.codes_present([b"NOT-A-CODE-0000000000000"]) == []
    with pytest.raises(ValueError):
        store.codes_present([b"bad key"])
    store.close()


def test_concurrent_appends_never_leave_a_stale_absent_answer(tmp_path):
    store = LevelDBStore.open(tmp_path / "db")
    chain = ChainBuilder()
    blocks = []
    for _ in range(30):
        built = chain.next_block(store, [chain.deposit(2)])
        blocks.append(built)
        store.append(*built)
    store.close()
    store = LevelDBStore.open(tmp_path / "db2")
    all_codes = [code for b in blocks for code, _ in b.index.codes]
    stop = threading.Event()

    def ask():
        while not stop.is_set():
            store.codes_present(all_codes)

    reader = threading.Thread(target=ask)
    reader.start()
    try:
        for built in blocks:
            store.append(*built)
    finally:
        stop.set()
        reader.join()
    assert sorted(store.codes_present(all_codes)) == sorted(all_codes)
    store.close()


def test_admission_and_validation_agree_on_duplicates_through_the_cache():
    from ledger.block import CommitCertificate
    from ledger.chain import LedgerApp

    store = MemoryStore()
    app = LedgerApp(RULES, store, GENESIS.validator_set().hash())
    record = deposit(2, start=900)
    assert check_record(RULES, store, record, T)  # looked up (absent) and remembered as absent
    block, tip = app.build(app.tip_of_store(), [record], T, 0, "v1")
    store.append(block, CommitCertificate(block.header.hash(), ()), BlockIndex.from_effects(1, tip.effects))
    with pytest.raises(EntryRejected) as err:
        check_record(RULES, store, record, T)
    assert err.value.reason == "already_deposited"
    with pytest.raises(EntryRejected) as err:  # a block carrying it again, on top of the stored one
        app.validate(app.tip_of_store(), block)
    assert err.value.reason == "already_deposited"


def test_the_pool_reports_committed_as_soon_as_the_store_has_the_block():
    """A block reaches the store a moment before the node releases its records from
    the pool (once the block is durable): a resubmission then is committed, not pending."""
    from ledger.block import CommitCertificate
    from ledger.chain import LedgerApp
    from runtime.pool import DepositPool

    store = MemoryStore()
    app = LedgerApp(RULES, store, GENESIS.validator_set().hash())
    pool = DepositPool(RULES, store, lambda key: store.locate(key).height, max_pending=100, per_client=100)
    record = deposit(1, start=4242)
    assert [o.state for o in pool.admit([record], T)] == ["new"]
    assert [o.state for o in pool.check([record], T)] == ["pending"]
    block, tip = app.build(app.tip_of_store(), [record], T, 0, "v1")
    store.append(block, CommitCertificate(block.header.hash(), ()), BlockIndex.from_effects(1, tip.effects))
    outcome = pool.check([record], T)[0]
    assert outcome.state == "committed" and outcome.heights == [1]
    pool.remove(record.entry.leaf_hash())
    assert pool.check([record], T)[0].state == "committed" and len(pool) == 0


@pytest.mark.parametrize("kind", ["memory", "leveldb"])
def test_append_asks_the_backend_only_for_codes_not_known_absent(kind, tmp_path):
    store = MemoryStore() if kind == "memory" else LevelDBStore.open(tmp_path / "db")
    chain = ChainBuilder()
    asked = []
    backend = store._present_codes
    store._present_codes = lambda codes: asked.append(list(codes)) or backend(codes)
    first = chain.next_block(store, [chain.deposit(3)])
    codes = [code for code, _ in first.index.codes]
    assert store.codes_present(codes) == [] and asked == [codes]  # admission: asked once
    store.append(*first)
    assert asked == [codes]  # the append's own duplicate check needed no lookup
    second = chain.next_block(store, [chain.deposit(1)])
    dup = BlockIndex({codes[0]: next(iter(dict(second.index.codes).values()))}, ())
    with pytest.raises(StoreError) as refused:  # a stored code is no longer "known absent"
        store.append(second.block, second.certificate, dup)
    assert refused.value.reason == "duplicate_code"
    store.append(*second)
    assert store.head().height == 2
    store.close()


def _reference_items(wires):
    """The plain path: each item through the generic typed reader, leaves by merkle.leaf_hash."""
    from ledger import merkle
    from ledger.wire import from_wire

    items = tuple(from_wire(DepositItem, w) for w in wires)
    return items, merkle.root([item.leaf_hash() for item in items])


_PLAIN = ["deposit-item", 1, b"\x11" * 32, None, "copyright", None, {}, None]
_DEVIATIONS = [  # (position, value): each makes an item not plain; some make it invalid too
    (0, "deposit-itemx"), (0, ["deposit-item"]), (1, True), (1, 2), (1, 1.0), (2, b"\x11" * 31), (2, "11" * 32),
    (2, [1]), (3, b"\x22" * 32), (4, ""), (4, "a\x00b"), (4, "x" * 257), (4, 7), (4, ["copyright"]),
    (5, "(2026)京0491民初1号"), (5, {}), (6, {"title": "作品"}), (6, []), (7, b"\x33" * 32), (7, {}),
]


def _outcome(fn, wires):
    try:
        return fn(wires)
    except DecodeError as exc:
        return ("error", type(exc), exc.reason)


@given(st.lists(st.one_of(st.just(None), st.sampled_from(range(len(_DEVIATIONS)))), min_size=1, max_size=6),
       st.sampled_from(["copyright", "e-commerce", "合同"]))
@settings(max_examples=300, deadline=None)
def test_whole_list_item_reading_equals_the_generic_reader(shape, category):
    """_items_from_wire's whole-column path (every item plain) and its per-item path
    give the generic reader's items and root, or the same refusal, for any mix."""
    wires = []
    for n, deviation in enumerate(shape):
        wire = list(_PLAIN)
        wire[2] = bytes([n]) * 32
        wire[4] = category
        if deviation is not None:
            position, value = _DEVIATIONS[deviation]
            wire[position] = value
        wires.append(wire)
    wires = wires + [7] if len(shape) == 6 else wires  # and a non-list item
    got = _outcome(item_reader.items_from_wire, wires)
    want = _outcome(_reference_items, wires)
    if isinstance(want, tuple) and want[0] == "error":
        assert isinstance(got, tuple) and got[0] == "error" and got[2] == want[2]
    else:
        assert got == want
    if all(d is None for d in shape) and len(shape) < 6:
        assert item_reader._plain_items(wires) is not None  # the fast path was taken
    elif len(shape) < 6:
        assert item_reader._plain_items(wires) is None
