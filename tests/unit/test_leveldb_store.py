"""LevelDB-only store tests: persistence across reopen, checksums (a byte flipped
with raw plyvel is reported as CorruptionError naming the key), keys moved to
other keys, missing records, format versioning, foreign databases, locking, the
open-time head verification and ``check(deep=True)`` finding index damage.
"""

from __future__ import annotations

import threading

import plyvel
import pytest

from ledger import merkle
from ledger.codec import encode
from ledger.errors import CorruptionError, StoreError
from ledger.leveldb_store import KEY_FORMAT, KEY_HEAD, LevelDBStore, case_prefix, code_key, entry_key_key, header_key
from ledger.leveldb_store import node_key, record_key, seal
from tests.storehelpers import ChainBuilder, codes_of, fill, snapshot

@pytest.fixture
def chain():
    return ChainBuilder()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "db"


def test_reopen_keeps_everything(path, chain):
    with LevelDBStore.open(path) as s:
        built = fill(s, chain)
        before = snapshot(s)[:-1]
    with LevelDBStore.open(path) as s:
        assert snapshot(s)[:-1] == before
        chain.append(s, [chain.deposit()])
    with LevelDBStore.open(path, create=False) as s:
        assert s.head().height == len(built) + 1
        assert s.check(deep=True).ok


def test_open_without_create_needs_a_store(tmp_path):
    with pytest.raises(StoreError):
        LevelDBStore.open(tmp_path / "absent", create=False)


def test_second_open_is_refused_while_locked(path):
    with LevelDBStore.open(path):
        with pytest.raises(StoreError) as err:
            LevelDBStore.open(path)
        assert err.value.reason == "store_locked"


def _raw(path, edit):
    db = plyvel.DB(str(path))
    try:
        edit(db)
    finally:
        db.close()


def _flip(key):
    def edit(db):
        value = bytearray(db.get(key))
        value[-1] ^= 0x01
        db.put(key, bytes(value))
    return edit


def _filled(path, chain, sizes=(4, 4, 4)):
    """12 leaves in 3 blocks (block 3 ends with a case event), closed."""
    with LevelDBStore.open(path) as s:
        built = fill(s, chain, sizes=sizes[:-1])
        records = [chain.deposit(case="A") for _ in range(sizes[-1] - 1)]
        built.append(chain.append(s, records + [chain.case_event("A", codes_of(built[0])[:2])]))
        return built


@pytest.mark.parametrize("kind", ["header", "record", "leaf", "code", "entry_key", "case"])
def test_flipped_byte_is_reported_with_its_key(path, chain, kind):
    built = _filled(path, chain)
    code, loc = built[1].index.codes[0]
    ekey = built[2].index.entry_keys[0][0]
    key, name, read = {
        "header": (header_key(2), "h/2", lambda s: s.certificate(2)),
        "record": (record_key(2, 3), "e/2/3", lambda s: s.record(2, 3)),
        "leaf": (node_key(0, 1), "t/0/1", lambda s: s.inclusion_proof(0, 12)),
        "code": (code_key(code), "c/" + code.decode(), lambda s: s.locate(code)),
        "entry_key": (entry_key_key(ekey), "r/" + ekey.hex(), lambda s: s.has_code(ekey)),
        "case": (case_prefix("A") + store_codes(path, "A")[0], None, lambda s: s.codes_for_case("A")),
    }[kind]
    _raw(path, _flip(key))
    with LevelDBStore.open(path) as s:
        with pytest.raises(CorruptionError) as err:
            read(s)
        assert (name or "k/A/") in str(err.value)
        assert (name or "k/A/") in err.value.field
        assert err.value.reason == "corruption"
        report = s.check(deep=True)
        assert not report.ok and any((name or "k/A/") in p for p in report.problems), report.problems


def store_codes(path, case):
    with LevelDBStore.open(path) as s:
        return s.codes_for_case(case)


def test_records_of_a_block_with_a_corrupt_record(path, chain):
    _filled(path, chain)
    _raw(path, _flip(record_key(3, 0)))
    with LevelDBStore.open(path) as s:
        with pytest.raises(CorruptionError, match="e/3/0"):
            s.block(3)
        assert s.record(3, 1) is not None


def test_missing_record_is_corruption_not_absence(path, chain):
    _filled(path, chain)
    _raw(path, lambda db: db.delete(record_key(2, 1)))
    with LevelDBStore.open(path) as s:
        with pytest.raises(CorruptionError, match="e/2/1"):
            s.record(2, 1)
        with pytest.raises(CorruptionError, match="e/2/1"):
            s.records(2)
        assert not s.check(deep=True).ok


def test_corrupt_head_pointer_fails_open(path, chain):
    _filled(path, chain)
    _raw(path, _flip(KEY_HEAD))
    with pytest.raises(CorruptionError, match="m/head"):
        LevelDBStore.open(path)


def test_head_pointing_at_missing_block_fails_open(path, chain):
    built = _filled(path, chain)
    head = built[-1].block.header
    value = encode([4, head.hash(), head.history_size, head.history_root])
    _raw(path, lambda db: db.put(KEY_HEAD, seal(KEY_HEAD, value)))
    with pytest.raises(CorruptionError, match="h/4"):
        LevelDBStore.open(path)


def test_stale_head_pointer_fails_open(path, chain):
    built = _filled(path, chain)
    head = built[-2].block.header
    value = encode([2, head.hash(), head.history_size, head.history_root])
    _raw(path, lambda db: db.put(KEY_HEAD, seal(KEY_HEAD, value)))
    with pytest.raises(CorruptionError, match="beyond the head"):
        LevelDBStore.open(path)


def test_blocks_without_head_pointer_fail_open(path, chain):
    _filled(path, chain)
    _raw(path, lambda db: db.delete(KEY_HEAD))
    with pytest.raises(CorruptionError, match="head pointer"):
        LevelDBStore.open(path)


def test_corrupt_border_node_fails_open(path, chain):
    _filled(path, chain)  # size 12 = 8 + 4: the root is read from (3, 0) and (2, 2)
    _raw(path, _flip(node_key(2, 2)))
    with pytest.raises(CorruptionError, match="t/2/2"):
        LevelDBStore.open(path)


def test_value_moved_to_another_key_is_detected(path, chain):
    _filled(path, chain)
    _raw(path, lambda db: db.put(record_key(1, 0), db.get(record_key(1, 1))))
    with LevelDBStore.open(path) as s:
        with pytest.raises(CorruptionError, match="e/1/0"):
            s.record(1, 0)


def test_unknown_format_version_is_refused(path):
    LevelDBStore.open(path).close()
    _raw(path, lambda db: db.put(KEY_FORMAT, seal(KEY_FORMAT, encode(["evledger-store", 2]))))
    with pytest.raises(StoreError, match="format version 2") as err:
        LevelDBStore.open(path)
    assert err.value.reason == "unsupported_format"


def test_foreign_leveldb_is_refused(path):
    db = plyvel.DB(str(path), create_if_missing=True)
    db.put(b"hello", b"world")
    db.close()
    with pytest.raises(StoreError, match="not an evledger store") as err:
        LevelDBStore.open(path)
    assert err.value.reason == "unsupported_format"


def test_check_finds_stray_and_inconsistent_index_entries(path, chain):
    built = _filled(path, chain)
    code = built[0].index.codes[0][0]
    taken = list(built[0].index.codes[1][1])

    def edit(db):
        db.put(code_key(b"STRAY"), seal(code_key(b"STRAY"), encode(taken)))
        db.put(case_prefix("Z") + b"NOPE", seal(case_prefix("Z") + b"NOPE", b""))
        db.delete(code_key(code))

    _raw(path, edit)
    with LevelDBStore.open(path) as s:
        assert s.check().ok  # shallow check does not read the indexes
        problems = s.check(deep=True).problems
    text = "\n".join(problems)
    assert "STRAY" in text and "already has a key" in text
    assert "NOPE" in text and "has no key in the codes index" in text


def test_check_finds_a_forged_interior_node(path, chain):
    _filled(path, chain)
    key = node_key(1, 0)
    _raw(path, lambda db: db.put(key, seal(key, b"\x07" * 32)))
    with LevelDBStore.open(path) as s:
        problems = s.check(deep=True).problems
    assert any("(1, 0) is not the hash of its children" in p for p in problems), problems


def test_readers_run_concurrently_with_appends(path, chain):
    errors: list[BaseException] = []
    done = threading.Event()
    with LevelDBStore.open(path) as s:
        fill(s, chain, sizes=(3,))

        def reader():
            try:
                while not done.is_set():
                    head = s.head()
                    for index in range(0, head.history_size, 7):
                        proof = s.inclusion_proof(index, head.history_size)
                        merkle.verify_inclusion(s.history_node(0, index), index, head.history_size, proof,
                                                head.history_root)
                    assert s.block(head.height).header == head.header
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=reader) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            fill(s, chain, sizes=(5, 1, 8, 2, 13, 3) * 3)
        finally:
            done.set()
            for t in threads:
                t.join()
    assert not errors, errors


def test_a_sync_also_syncs_the_log_files_leveldb_moved_on_from(path, monkeypatch):
    """LevelDB does not sync a log file when it switches to a new one (google/leveldb#193):
    a group's earlier writes could sit there unsynced behind a synced write in the new one."""
    import os

    store = LevelDBStore.open(path)
    try:
        current = max((n for n in os.listdir(path) if n.endswith(".log")), key=lambda n: (len(n), n))
        older = os.path.join(path, "000000.log")  # stands for a log LevelDB has moved on from
        with open(older, "wb") as f:
            f.write(b"x")
        synced = []
        real_fsync = os.fsync
        monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(os.readlink("/proc/self/fd/%d" % fd)),
                                                     real_fsync(fd)))
        store.persist([("k", b"v")])
        assert synced == []  # a lone synced write needs no help
        store.write_group([("persist", [("a", b"1")]), ("persist", [("b", b"2")])], sync=False)
        store.sync()
        assert [os.path.basename(p) for p in synced] == ["000000.log"]
        assert current not in [os.path.basename(p) for p in synced]  # LevelDB's own synced write covers it
        synced.clear()
        store.write_group([("persist", [("c", b"3")]), ("persist", [("d", b"4")])], sync=True)
        assert [os.path.basename(p) for p in synced] == ["000000.log"]  # a synced group, too
        os.remove(older)
        synced.clear()
        store.sync()  # the older log is gone (compacted into a table): nothing else to sync
        assert synced == []
    finally:
        store.close()
