"""Carrying out the replica's actions in order, every vote durable before what follows it.

Theory of operation
-------------------
The replica returns actions (``consensus/io.py``); a ``Persist`` must be durable before
any action queued after it is carried out ("persist before send": a vote is on disk
before the message carrying it leaves), and a ``Deliver``'s append must be written
before what follows it.  :class:`ActionRunner` keeps them in one queue and runs them
in order, stopping at the first write not yet done.

**An append is not synced on its own.**  A group holding no ``Persist`` (the blocks a
node delivers when the last COMMIT arrives, or a catch-up) is written to LevelDB
without a sync: readable at once, and safe from a crash of the process (the write is in
the operating system's cache).  The next sync, which every later group with a
``Persist`` does and which :meth:`ActionRunner.flush` does a second after the last
unsynced write at the latest, makes it durable: LevelDB's log is sequential, and a
sync covers every earlier write (``LevelDBStore.sync``).  What a power cut can take
is the blocks appended in that last second; the node then delivers them again.  No
committed block is lost: by the time a block commits, a quorum of replicas has
synced its prepared certificate, and a node whose store is short fetches it again;
and a CHECKPOINT, after which replicas discard those certificates, always follows a
``Persist`` (empty if need be), so it never vouches for an append not yet durable
(``docs/consensus.md`` §8, the simulator's ``power_cut``).  This takes one fsync
off the four a deposit waits for, and one a block off every node.

**One group per turn.**  The writes queued in one turn of the event loop (the frames
and requests read in the same poll) form one group, written at the end of the turn
(``call_soon``) and made durable by one sync.  While a group is being written, later
actions wait in the queue and their writes join the next group.

**Who waits for the fsync.**  The group's Python work (checks, encoding, the unsynced
LevelDB writes) always runs on the event loop.  Then:

* No backlog (fewer than ``INLINE_SYNC_BACKLOG`` requests pending at the replica and
  items in the pool) and a small group (at most ``INLINE_SYNC_BYTES``: votes, a block
  of a few dozen single deposits): the loop itself, at once, unless an inline fsync
  took over ``INLINE_SYNC_SLOW_S`` in the last ``INLINE_SYNC_PAUSE_S``.  On this disk
  that takes 0.1-0.6 ms, less than handing the sync to a thread and waiting for the
  loop to notice that it is done, which under load added milliseconds to each of the
  three writes on a block's path.  At 300 single deposits/s this halved the p50
  commit latency and cut p99 from ~220 to ~50 ms.
* A backlog, or a large group: the writer thread, so the loop keeps serving meanwhile.
  Under a backlog blocks are bigger this way: syncing inline there made 1.8x as many
  blocks and cost 12 % of the single-deposit throughput.  Blocks of batches go to the
  thread too (by size, and by the items pending): in the one 10-minute run that synced
  them inline, half-load batches had a p99 of 1.9 s, against 0.3 s before (an fsync
  can wait behind LevelDB's compaction writes).  The thread only waits for the fsync,
  so it never fights the loop for the GIL (when it did the Python work too, a group
  took ~150 ms on a busy machine).

**A failed write** (anywhere: collecting the ops, writing, syncing) stops the node:
nothing queued behind it is carried out, and from then on nothing at all, since a
retransmission would re-send the vote whose write failed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from consensus import io

log = logging.getLogger("evledger.node")

INLINE_SYNC_BYTES = 64 * 1024
INLINE_SYNC_BACKLOG = 50
INLINE_SYNC_SLOW_S = 0.005
INLINE_SYNC_PAUSE_S = 1.0


class ActionRunner:
    """The node's queue of replica actions and its durable write groups.

    ``backlog()`` is what is pending (the larger of the replica's requests and the
    pool's items); ``index_of(block)`` the index a block's append writes;
    ``delivered(block, result)`` runs once a block is appended; ``execute(action)``
    carries out any other action; ``failed(exc)`` is told that a write failed (the
    node stops itself).
    """

    def __init__(self, store: Any, *, backlog: Callable[[], int], index_of: Callable, delivered: Callable,
                 execute: Callable, failed: Callable[[BaseException], None], m_append: Any, m_group_sync: Any):
        self.store = store
        self.backlog, self.index_of, self.delivered, self.execute = backlog, index_of, delivered, execute
        self.on_failed = failed
        self.m_append, self.m_group_sync = m_append, m_group_sync
        self.queue: deque = deque()  # actions not carried out yet, in order
        self.written: dict[int, Any] = {}  # id(action) -> its store result, for queued writes already done
        self.writing = False  # a group is scheduled or being written: later writes wait for the next
        self.scheduled = False
        self.failed = False  # a durable write failed: the node is stopping
        self.inline_paused_until = 0.0  # monotonic time until which groups are synced by the thread
        self.unsynced = False  # a group was written without a sync, and no sync has followed yet
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="evledger-store")
        self.idle = asyncio.Event()
        self.idle.set()

    def add(self, actions: list) -> None:
        """Queue the actions of one replica step; carry out what may go now."""
        if self.failed:
            return
        self.queue.extend(actions)
        if not self.writing:
            self.drain()

    async def close(self, timeout: float) -> bool:
        """Wait for the writes under way (at most ``timeout`` s), then stop the writer thread;
        ``False`` if writes were still pending."""
        try:
            await asyncio.wait_for(self.idle.wait(), timeout)
            done = True
        except asyncio.TimeoutError:
            done = False
        if done and self.unsynced and not self.failed:
            try:
                self.store.sync()
                self.unsynced = False
            except Exception:  # noqa: BLE001 - reported as writes pending; the appends come back from peers
                done = False
        self.writer.shutdown(wait=True)
        return done

    def flush(self) -> None:
        """Sync appends written without a sync if no group has synced them since (the node
        calls this every second; on a validator the next vote's group usually has)."""
        if not self.unsynced or self.writing or self.failed:
            return
        self.unsynced = False
        self.writing = True
        self.idle.clear()
        future = asyncio.get_running_loop().run_in_executor(self.writer, self.store.sync)
        future.add_done_callback(lambda f: self._group_done(f, [], None, []))

    def drain(self) -> None:
        """Carry out queued actions in order until one needs a disk write not yet done."""
        queue = self.queue
        while queue:
            action = queue[0]
            kind = type(action)
            if (kind is io.Persist or kind is io.Deliver) and id(action) not in self.written:
                self._schedule_group()
                return
            queue.popleft()
            result = self.written.pop(id(action), None)
            try:
                if kind is io.Deliver:
                    self.delivered(action.block, result)
                elif kind is not io.Persist:
                    self.execute(action)
            except Exception:  # noqa: BLE001 - a bug after the write: log it, keep the queue moving
                log.exception("carrying out %s failed; going on with the next action", kind.__name__)

    def _schedule_group(self) -> None:
        if not self.scheduled:
            self.scheduled = True
            self.writing = True
            self.idle.clear()
            asyncio.get_running_loop().call_soon(self._write_group)

    def _write_group(self) -> None:
        """Write every op queued now as one group and make it durable (module docstring)."""
        self.scheduled = False
        started = time.perf_counter()
        try:  # whatever raises, from collecting the ops to handing over the sync, fails the write
            ops, actions, size, votes = self._group_ops()
            inline = self._sync_inline(size)
            results = self.store.write_group(ops, sync=False)
            if not votes:  # appends only: durable with the next sync (module docstring)
                self.unsynced = True
                self.m_group_sync.inc("none")
                self._group_done(None, actions, started, results)
                return
            self.unsynced = False  # the sync below covers every earlier write
            if inline:
                self._inline_sync()
            else:
                future = asyncio.get_running_loop().run_in_executor(self.writer, self.store.sync)
        except Exception as exc:  # noqa: BLE001 - handled as a failed durable write
            self._group_failed(exc)
            return
        if inline:
            self.m_group_sync.inc("inline")
            self._group_done(None, actions, started, results)
            return
        self.m_group_sync.inc("writer_thread")
        future.add_done_callback(lambda f: self._group_done(f, actions, started, results))

    def _group_ops(self) -> tuple[list, list, int, bool]:
        """The store ops of every write queued now, their actions, about how many bytes they
        write, and whether any is a ``Persist`` (a vote: the group must be synced)."""
        ops, actions, size, votes = [], [], 0, False
        for action in self.queue:
            kind = type(action)
            if kind is io.Persist:
                votes = True
                ops.append(("persist", action.writes))
                size += sum(len(value) for _, value in action.writes if value is not None)
            elif kind is io.Deliver:
                ops.append(("append", action.block, action.certificate, self.index_of(action.block)))
                size += sum(len(record.encode()) for record in action.block.records)
            else:
                continue
            actions.append(action)
        return ops, actions, size, votes

    def _sync_inline(self, size: int) -> bool:
        if size > INLINE_SYNC_BYTES or time.monotonic() < self.inline_paused_until:
            return False
        return self.backlog() < INLINE_SYNC_BACKLOG

    def _inline_sync(self) -> None:
        """fsync on the loop; a slow one (the disk busy, a compaction) sends the next
        groups to the writer thread for a while, so the loop is not held up again."""
        began = time.perf_counter()
        self.store.sync()
        if time.perf_counter() - began > INLINE_SYNC_SLOW_S:
            self.inline_paused_until = time.monotonic() + INLINE_SYNC_PAUSE_S
            self.m_group_sync.inc("inline_slow")

    def _group_failed(self, exc: BaseException) -> None:
        self.failed = True
        self.writing = False
        self.queue.clear()
        self.idle.set()
        self.on_failed(exc)

    def _group_done(self, future: asyncio.Future | None, actions: list, started: float | None,
                    results: list) -> None:
        self.writing = False
        if started is not None:  # None: a flush, not a group
            self.m_append.observe(time.perf_counter() - started)
        try:
            if future is not None:
                future.result()
        except Exception as exc:  # noqa: BLE001 - a failed durable write
            self._group_failed(exc)
            return
        for action, result in zip(actions, results):
            self.written[id(action)] = (action, result)
        self.drain()
        if not self.writing:
            self.idle.set()
