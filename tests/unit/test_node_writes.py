"""The node's durable write path (runtime/durable.py, ActionRunner): persist before
send, one group per turn of the event loop, who waits for the fsync, failed writes.

Over a real LevelDB store whose syncs are counted: a LevelDB read shows unsynced
writes too, so "was it durable when the message left" is "had a sync completed".
"""

from __future__ import annotations

import asyncio
import time

import pytest

from consensus import io
from ledger.leveldb_store import LevelDBStore
from runtime import durable
from runtime.durable import ActionRunner
from runtime.metrics import Counter, Histogram

KEY = "vote/1"


def _counting(store: LevelDBStore, delay_s: float = 0.0) -> LevelDBStore:
    real = store.sync
    store.syncs_done = 0

    def sync():
        time.sleep(delay_s)
        real()
        store.syncs_done += 1

    store.sync = sync
    return store


class _Harness:
    """An ActionRunner over ``store`` whose sends record (payload, value written, syncs done)."""

    def __init__(self, store: LevelDBStore, backlog: int = 0):
        self.store, self.backlog, self.sent, self.failures = store, backlog, [], []
        self.runner = ActionRunner(store, backlog=lambda: self.backlog, index_of=None, delivered=None,
                                   execute=self._execute, failed=self.failures.append,
                                   m_append=Histogram("a", "a"), m_group_sync=Counter("g", "g", ("sync",)))

    def _execute(self, action):
        self.sent.append((action.data, self.store.replica_state().get(KEY), getattr(self.store, "syncs_done", None)))

    def step(self, key: str, value: bytes, message: bytes) -> None:
        self.runner.add([io.Persist(((key, value),)), io.Send("peer", message)])

    @property
    def groups(self) -> dict:
        """Groups by who synced; ``inline_slow`` left out (a busy disk may make any fsync slow)."""
        return {labels[0]: count for labels, count in self.runner.m_group_sync.values.items()
                if labels[0] != "inline_slow"}


def _drive(tmp_path, script, *, backlog: int = 0, delay_s: float = 0.0, patch=None) -> _Harness:
    """Run ``script(harness)`` (a coroutine function) on a fresh loop over a fresh store."""
    store = _counting(LevelDBStore.open(tmp_path / "db"), delay_s)
    if patch is not None:
        patch(store)

    async def main():
        h = _Harness(store, backlog)
        await script(h)
        await asyncio.wait_for(h.runner.idle.wait(), 5)
        await h.runner.close(5)
        return h

    try:
        return asyncio.run(main())
    finally:
        store.close()


def _steps(count: int, value: bytes = b"v"):
    async def script(h):
        for i in range(count):
            h.step("vote/%d" % (i + 1), value, b"m%d" % i)
        assert h.sent == []  # nothing leaves before its write is durable

    return script


def test_a_small_group_without_backlog_is_synced_on_the_loop_before_the_send(tmp_path):
    h = _drive(tmp_path, _steps(1, b"v" * 100))
    assert h.groups == {"inline": 1}
    assert h.sent == [(b"m0", b"v" * 100, 1)]


def test_a_backlog_hands_the_sync_to_the_writer_thread_and_the_send_waits_for_it(tmp_path):
    h = _drive(tmp_path, _steps(1, b"v" * 100), backlog=durable.INLINE_SYNC_BACKLOG, delay_s=0.02)
    assert h.groups == {"writer_thread": 1}
    assert h.sent == [(b"m0", b"v" * 100, 1)]


def test_a_large_group_is_synced_by_the_writer_thread(tmp_path):
    h = _drive(tmp_path, _steps(1, b"v" * (durable.INLINE_SYNC_BYTES + 1)), delay_s=0.02)
    assert h.groups == {"writer_thread": 1} and [s[2] for s in h.sent] == [1]


def test_writes_of_one_turn_share_one_group(tmp_path):
    h = _drive(tmp_path, _steps(3))
    assert h.groups == {"inline": 1}
    assert [(s[0], s[2]) for s in h.sent] == [(b"m0", 1), (b"m1", 1), (b"m2", 1)]


def test_the_group_is_written_at_the_end_of_the_turn_not_at_once(tmp_path):
    async def script(h):
        h.step(KEY, b"v", b"m")
        assert h.store.replica_state() == {} and h.runner.writing  # scheduled, not yet written
        h.step("vote/2", b"w", b"n")  # a later step of the same turn joins the group
        await asyncio.wait_for(h.runner.idle.wait(), 5)
        h.state = h.store.replica_state()

    h = _drive(tmp_path, script)
    assert h.groups == {"inline": 1} and h.state == {KEY: b"v", "vote/2": b"w"}
    assert [(s[0], s[2]) for s in h.sent] == [(b"m", 1), (b"n", 1)]


def test_a_slow_inline_sync_sends_the_next_groups_to_the_writer_thread(tmp_path):
    async def script(h):
        for i in range(2):
            h.step("vote/%d" % (i + 1), b"v", b"m%d" % i)
            await asyncio.wait_for(h.runner.idle.wait(), 5)

    h = _drive(tmp_path, script, delay_s=durable.INLINE_SYNC_SLOW_S * 2)
    assert h.groups == {"inline": 1, "writer_thread": 1}
    assert h.runner.m_group_sync.get("inline_slow") == 1
    assert [s[2] for s in h.sent] == [1, 2]


@pytest.mark.parametrize("backlog", [0, durable.INLINE_SYNC_BACKLOG])  # inline, writer thread
@pytest.mark.parametrize("where", ["sync", "collect"])
def test_a_failed_write_sends_nothing_then_or_later_and_is_reported(tmp_path, monkeypatch, backlog, where):
    def broken(*args):
        raise OSError("disk gone")

    if where == "collect":  # before the store is even reached: the group's own bookkeeping raises
        monkeypatch.setattr(ActionRunner, "_group_ops", broken)

    async def script(h):
        h.step(KEY, b"v", b"m")
        await asyncio.wait_for(h.runner.idle.wait(), 5)
        h.runner.add([io.Send("peer", b"retransmitted vote")])  # a later tick

    h = _drive(tmp_path, script, backlog=backlog,
               patch=(lambda store: setattr(store, "sync", broken)) if where == "sync" else None)
    assert h.sent == [] and len(h.failures) == 1 and isinstance(h.failures[0], OSError)
    assert h.runner.failed and not h.runner.writing and list(h.runner.queue) == []


class _RecordingStore:
    """Stands in for the store where only the order of writes and syncs matters."""

    def __init__(self):
        self.log: list[str] = []

    def write_group(self, ops, sync=False):
        self.log.extend(op[0] for op in ops)
        return [("result", op[0]) for op in ops]

    def sync(self):
        self.log.append("sync")


def _runner(store, delivered: list, sent: list) -> ActionRunner:
    return ActionRunner(store, backlog=lambda: 0, index_of=lambda block: None,
                        delivered=lambda block, result: delivered.append((block.name, list(store.log))),
                        execute=lambda action: sent.append((action.data, list(store.log))),
                        failed=lambda exc: None, m_append=Histogram("a", "a"),
                        m_group_sync=Counter("g", "g", ("sync",)))


def _deliver(name: str) -> io.Deliver:
    from types import SimpleNamespace

    return io.Deliver(SimpleNamespace(name=name, records=()), None)


def test_an_append_is_not_synced_on_its_own_and_the_next_vote_s_sync_covers_it():
    store, delivered, sent = _RecordingStore(), [], []

    async def main():
        runner = _runner(store, delivered, sent)
        runner.add([_deliver("b1"), io.Send("peer", b"status")])
        await asyncio.wait_for(runner.idle.wait(), 5)
        assert runner.unsynced and runner.m_group_sync.get("none") == 1
        runner.add([io.Persist((("vote/2", b"v"),)), io.Send("peer", b"prepare")])
        await asyncio.wait_for(runner.idle.wait(), 5)
        assert not runner.unsynced
        await runner.close(5)

    asyncio.run(main())
    assert delivered == [("b1", ["append"])]  # told of the append with no sync done
    assert sent == [(b"status", ["append"]), (b"prepare", ["append", "persist", "sync"])]
    assert store.log.count("sync") == 1  # close had nothing left to sync


def test_a_group_with_a_vote_and_an_append_is_synced_before_what_follows():
    store, delivered, sent = _RecordingStore(), [], []

    async def main():
        runner = _runner(store, delivered, sent)
        runner.add([_deliver("b1"), io.Persist((("commit/2", b"c"),)), io.Send("peer", b"commit")])
        await asyncio.wait_for(runner.idle.wait(), 5)
        assert not runner.unsynced
        await runner.close(5)

    asyncio.run(main())
    assert delivered == [("b1", ["append", "persist", "sync"])]
    assert sent == [(b"commit", ["append", "persist", "sync"])]


def test_flush_and_close_sync_appends_no_vote_has_covered():
    for how in ("flush", "close"):
        store, delivered, sent = _RecordingStore(), [], []

        async def main():
            runner = _runner(store, delivered, sent)
            runner.flush()  # nothing written: nothing to sync
            assert store.log == []
            runner.add([_deliver("b1")])
            await asyncio.wait_for(runner.idle.wait(), 5)
            assert store.log == ["append"]
            if how == "flush":
                runner.flush()
                await asyncio.wait_for(runner.idle.wait(), 5)
                assert store.log == ["append", "sync"] and not runner.unsynced
                runner.flush()
            assert await runner.close(5)

        asyncio.run(main())
        assert store.log == ["append", "sync"], how


def test_an_action_that_raises_after_its_write_does_not_stall_the_queue(caplog):
    store, sent = _RecordingStore(), []

    def delivered(block, result):
        raise RuntimeError("bookkeeping bug")

    async def main():
        runner = ActionRunner(store, backlog=lambda: 0, index_of=lambda block: None, delivered=delivered,
                              execute=lambda action: sent.append(action.data), failed=lambda exc: None,
                              m_append=Histogram("a", "a"), m_group_sync=Counter("g", "g", ("sync",)))
        runner.add([_deliver("b1"), io.Send("peer", b"after")])
        await asyncio.wait_for(runner.idle.wait(), 5)
        assert not runner.failed and not runner.queue
        await runner.close(5)

    asyncio.run(main())
    assert sent == [b"after"]
    assert "carrying out Deliver failed" in caplog.text
