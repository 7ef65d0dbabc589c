"""The Bloom filter in front of the store's code lookups (ledger/code_filter.py)."""

from __future__ import annotations

import os
import threading

import pytest

from ledger.code_filter import CodeFilter
from ledger.leveldb_store import LevelDBStore
from tests.storehelpers import ChainBuilder


def _keys(n: int) -> list[bytes]:
    return [os.urandom(25) for _ in range(n)]


def test_every_added_key_may_be_present():
    f = CodeFilter(bits=1 << 16)
    keys = _keys(20_000)  # overloaded on purpose: false positives are many, false negatives must be none
    f.add(keys)
    assert f.maybe_present(keys) == keys
    assert f.count == 20_000


def test_keys_never_added_are_mostly_ruled_out_at_the_designed_load():
    f = CodeFilter(bits=1 << 20)
    f.add(_keys(1 << 16))  # 16 bits a key: expected rate about 1.4 %
    others = _keys(20_000)
    rate = len(f.maybe_present(others)) / len(others)
    assert rate < 0.04
    assert 0.005 < f.false_positive_rate() < 0.03


def test_an_empty_filter_rules_everything_out():
    assert CodeFilter(bits=1 << 10).maybe_present(_keys(100)) == []


@pytest.mark.parametrize("bits", [0, 63, 1000, -64, 1 << 33])
def test_sizes_that_are_not_powers_of_two_are_refused(bits):
    with pytest.raises(ValueError):
        CodeFilter(bits=bits)


def test_concurrent_adds_lose_no_bit():
    """Adds are read-modify-writes of bytes, done under a lock: two threads setting bits of
    one byte must not lose one (a false 'absent', a duplicate code on chain).  A lost
    update needs an unlucky thread switch, so this guards the lock rather than proving it."""
    f = CodeFilter(bits=1 << 12)  # small: threads keep hitting the same bytes
    batches = [_keys(5_000) for _ in range(4)]
    threads = [threading.Thread(target=f.add, args=(batch,)) for batch in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    everything = [k for batch in batches for k in batch]
    assert f.maybe_present(everything) == everything


class _CountingDB:
    """The plyvel DB with its point reads counted (plyvel's objects take no new attributes)."""

    def __init__(self, db):
        self.db, self.gets = db, []

    def get(self, key, *args, **kwargs):
        self.gets.append(key)
        return self.db.get(key, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.db, name)


def test_the_store_reads_only_codes_the_filter_cannot_rule_out(tmp_path):
    store = LevelDBStore.open(tmp_path / "db")
    chain = ChainBuilder()
    first = chain.next_block(store, [chain.deposit(50)])
    store.append(*first)
    stored = [code for code, _ in first.index.codes]
    fresh = [code for code, _ in chain.next_block(store, [chain.deposit(50)]).index.codes]
    counting = _CountingDB(store._db)
    store._db = counting
    assert store._present_codes(fresh + stored) == stored
    read = {key[1:] for key in counting.gets}
    assert set(stored) <= read  # every stored code was read (and its checksum checked)
    assert len(read - set(stored)) <= 2  # the fresh ones were ruled out (50 at ~0 % false positives)
    store._db = counting.db
    store.close()


def test_a_reopened_store_rebuilds_the_filter_from_its_codes(tmp_path):
    store = LevelDBStore.open(tmp_path / "db")
    chain = ChainBuilder()
    block = chain.next_block(store, [chain.deposit(30), chain.deposit(5)])
    store.append(*block)
    codes = [code for code, _ in block.index.codes]
    store.close()
    again = LevelDBStore.open(tmp_path / "db")
    assert again.code_filter.count == 35
    assert again.code_filter.maybe_present(codes) == codes
    assert sorted(again.codes_present(codes)) == sorted(codes)
    again.close()
