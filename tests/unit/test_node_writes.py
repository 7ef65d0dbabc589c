"""The node's durable write path (Node._drain / _write_group): persist before send,
one group per turn of the event loop, and who waits for the fsync.

A stub node carries the real write path over a real LevelDB store; a stub replica
hands out the actions.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from types import SimpleNamespace

import pytest

import node as node_module
from consensus import io
from ledger.leveldb_store import LevelDBStore
from node import Node
from runtime import peerwire
from runtime.metrics import Counter, Histogram


class _Replica:
    def __init__(self, pending: int = 0):
        self.requests = [None] * pending
        self.script: list[list] = []

    def step(self, event, now):
        return self.script.pop(0)


class _Transport:
    def __init__(self, store: LevelDBStore, key: str):
        self.store, self.key, self.sent = store, key, []

    def send(self, peer, payload):
        # What had been written, and how many syncs had completed, when the message left.
        syncs = getattr(self.store, "syncs_done", None)
        self.sent.append((peer, payload, self.store.replica_state().get(self.key), syncs))
        return True


def _counting(store: LevelDBStore) -> LevelDBStore:
    """Count the store's completed syncs (a LevelDB read shows unsynced writes too)."""
    real = store.sync
    store.syncs_done = 0

    def sync():
        real()
        store.syncs_done += 1

    store.sync = sync
    return store


class _WriterNode(Node):
    def __init__(self, store: LevelDBStore, pending: int, key: str):  # noqa: D107 - only what the write path uses
        from collections import deque

        self.store, self.replica, self.pool = store, _Replica(pending), []
        self.transport = _Transport(store, key)
        self._actions, self._written = deque(), {}
        self._writing = self._group_scheduled = self._failed = False
        self._inline_paused_until = 0.0
        self._writer = ThreadPoolExecutor(1)
        self._writes_idle = asyncio.Event()
        self._writes_idle.set()
        self.m_append = Histogram("a", "a")
        self.m_group_sync = Counter("g", "g", ("sync",))
        self.name = "n1"
        self._last_now = 0

    def now_ms(self):
        return 0


def _run(tmp_path, pending: int, value: bytes, steps: int = 1):
    """Step a node ``steps`` times in one turn, each step persisting then sending; run the
    loop until its writes are idle; return the node."""
    store = _counting(LevelDBStore.open(tmp_path / "db"))

    async def main():
        n = _WriterNode(store, pending, "vote/1")
        for i in range(steps):
            n.replica.script.append([io.Persist((("vote/%d" % (i + 1), value),)), io.Send("peer", b"m%d" % i)])
            n.step(io.Started())
        assert n.transport.sent == []  # nothing leaves before its write is durable
        await asyncio.wait_for(n._writes_idle.wait(), 5)
        n._writer.shutdown()
        return n

    try:
        return asyncio.run(main())
    finally:
        store.close()


def test_a_small_group_without_backlog_is_synced_on_the_loop_before_the_send(tmp_path):
    n = _run(tmp_path, pending=0, value=b"v" * 100)
    assert n.m_group_sync.values == {("inline",): 1}
    assert n.transport.sent == [("peer", peerwire.consensus(b"m0"), b"v" * 100, 1)]


def test_a_backlog_hands_the_sync_to_the_writer_thread_and_the_send_waits_for_it(tmp_path):
    n = _run(tmp_path, pending=node_module.INLINE_SYNC_BACKLOG, value=b"v" * 100)
    assert n.m_group_sync.values == {("writer_thread",): 1}
    assert [s[2:] for s in n.transport.sent] == [(b"v" * 100, 1)]


def test_items_pending_in_the_pool_count_as_a_backlog(tmp_path):
    store = _counting(LevelDBStore.open(tmp_path / "db"))

    async def main():
        n = _WriterNode(store, 0, "vote/1")
        n.pool = [None] * node_module.INLINE_SYNC_BACKLOG  # one request of many items, say
        n.replica.script.append([io.Persist((("vote/1", b"v"),)), io.Send("peer", b"m")])
        n.step(io.Started())
        await asyncio.wait_for(n._writes_idle.wait(), 5)
        n._writer.shutdown()
        return n

    try:
        n = asyncio.run(main())
    finally:
        store.close()
    assert n.m_group_sync.values == {("writer_thread",): 1} and [s[3] for s in n.transport.sent] == [1]


def test_a_large_group_is_synced_by_the_writer_thread(tmp_path):
    n = _run(tmp_path, pending=0, value=b"v" * (node_module.INLINE_SYNC_BYTES + 1))
    assert n.m_group_sync.values == {("writer_thread",): 1}
    assert len(n.transport.sent) == 1 and n.transport.sent[0][3] == 1


def test_writes_of_one_turn_share_one_group(tmp_path):
    n = _run(tmp_path, pending=0, value=b"v", steps=3)
    assert n.m_group_sync.values == {("inline",): 1}
    assert [s[1] for s in n.transport.sent] == [peerwire.consensus(b"m%d" % i) for i in range(3)]


@pytest.mark.parametrize("pending", [0, node_module.INLINE_SYNC_BACKLOG])  # inline, writer thread
@pytest.mark.parametrize("where", ["sync", "collect"])
def test_a_failed_write_sends_nothing_then_or_later_and_stops_the_node(tmp_path, monkeypatch, pending, where):
    killed = []
    monkeypatch.setattr(node_module.os, "kill", lambda pid, sig: killed.append(sig))
    store = LevelDBStore.open(tmp_path / "db")

    def broken(*args):
        raise OSError("disk gone")

    if where == "sync":
        monkeypatch.setattr(store, "sync", broken)
    else:  # before the store is even reached: the group's own bookkeeping raises
        monkeypatch.setattr(_WriterNode, "_group_ops", broken)

    async def main():
        n = _WriterNode(store, pending, "vote/1")
        n.replica.script.append([io.Persist((("vote/1", b"v"),)), io.Send("peer", b"m")])
        n.step(io.Started())
        await asyncio.wait_for(n._writes_idle.wait(), 5)
        n.replica.script.append([io.Send("peer", b"retransmitted vote")])  # a later tick
        n.step(io.Started())
        await asyncio.sleep(0)
        n._writer.shutdown()
        return n

    try:
        n = asyncio.run(main())
    finally:
        store.close()
    assert n.transport.sent == [] and killed and list(n._actions) == [] and not n._writing


def test_a_slow_inline_sync_sends_the_next_groups_to_the_writer_thread(tmp_path):
    import time

    store = _counting(LevelDBStore.open(tmp_path / "db"))
    counted = store.sync

    def slow():
        time.sleep(node_module.INLINE_SYNC_SLOW_S * 2)
        counted()

    store.sync = slow

    async def main():
        n = _WriterNode(store, 0, "vote/1")
        for i in range(2):
            n.replica.script.append([io.Persist((("vote/%d" % (i + 1), b"v"),)), io.Send("peer", b"m%d" % i)])
            n.step(io.Started())
            await asyncio.wait_for(n._writes_idle.wait(), 5)
        n._writer.shutdown()
        return n

    try:
        n = asyncio.run(main())
    finally:
        store.close()
    assert n.m_group_sync.values == {("inline",): 1, ("inline_slow",): 1, ("writer_thread",): 1}
    assert [s[3] for s in n.transport.sent] == [1, 2]


@pytest.mark.parametrize("pending", [0, 100])
def test_the_group_is_written_at_the_end_of_the_turn_not_at_once(tmp_path, pending):
    store = LevelDBStore.open(tmp_path / "db")

    async def main():
        n = _WriterNode(store, pending, "vote/1")
        n.replica.script.append([io.Persist((("vote/1", b"v"),)), io.Send("peer", b"m")])
        n.step(io.Started())
        assert store.replica_state() == {} and n._writing  # scheduled, not yet written
        await asyncio.wait_for(n._writes_idle.wait(), 5)
        n._writer.shutdown()
        return SimpleNamespace(state=store.replica_state(), sent=n.transport.sent)

    try:
        got = asyncio.run(main())
    finally:
        store.close()
    assert got.state == {"vote/1": b"v"} and len(got.sent) == 1
