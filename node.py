"""The node: composition root that runs one consortium member's process.

Theory of operation
-------------------
Everything with a side effect lives here or at the edges it wires together:

* ``runtime.config.load_node`` gives the validated configuration, genesis and key;
* ``ledger.leveldb_store.LevelDBStore`` holds the chain (and the replica's votes);
* ``ledger.chain.LedgerApp`` is the deterministic application consensus orders for;
* ``consensus.replica.Replica`` is the pure PBFT state machine: the node feeds it
  events with the current time and carries out the actions it returns, in order
  (``consensus.io``: ``Persist`` is synced to disk before any later ``Send``);
* ``runtime.transport.PeerTransport`` carries frames between nodes
  (``runtime.peerwire`` says what is in them);
* ``runtime.http_api.Api`` answers clients; ``runtime.pool.DepositPool`` admits
  their deposits.

All of it runs on one asyncio event loop and one thread; the replica is stepped
only from the loop, so it needs no locks.  Time given to the replica is wall-clock
milliseconds (block time is legal deposit time) made non-decreasing.

Durable writes (group commit): ``runtime.durable.ActionRunner`` carries out the
replica's actions strictly in the order it returns them, across steps, from one
queue.  The writes queued in one turn of the loop form one group with one sync,
made on the loop itself when the group is small and nothing is backlogged, on a
writer thread otherwise; actions queued behind a write (the ``Send`` carrying a
vote, ...) run only once it is durable, so "persist before send" holds.  A failed
write stops the node.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import sys
import time
from typing import Any

from aiohttp import web

from consensus import io
from consensus.auth import Ed25519Auth
from consensus.errors import AppRejected
from consensus.params import Params
from consensus.replica import Replica
from ledger import derived
from ledger.block import Block
from ledger.chain import LedgerApp, Tip
from ledger.errors import DecodeError, InputError, StoreError
from ledger.genesis import view_change_bytes
from ledger.leveldb_store import LevelDBStore
from ledger.model import Deposit, EntryRecord
from ledger.state import Rules, deposit_code_keys
from ledger.store import BlockIndex
from runtime import peerwire
from runtime.auth import RequestVerifier
from runtime.commit_waiters import CommitWaiters
from runtime.connection import RateLimitedLog
from runtime.config import NodeSetup
from runtime.forwarding import Forwarder
from runtime.http_api import Api
from runtime.durable import ActionRunner
from runtime.replica_timer import ReplicaTimer
from runtime import node_metrics
from runtime.metrics import Registry
from runtime.pool import DepositPool
from runtime.service import NodeService
from runtime.transport import PeerTransport

log = logging.getLogger("evledger.node")

VERSION = "0.1.0"
FETCH_REPLY_BYTES = 4 * 1024 * 1024
SWEEP_S = 1.0  # how often pending local requests are checked for a lost forward
MEMO_EPOCH_SWEEPS = 300  # every 5 min the memos forget what they kept 5-10 min and never saw committed
# Requests waiting at once for a deposit to commit (runtime/commit_waiters.py): in all,
# and from one client address.  Each holds a connection, so a file descriptor.
MAX_COMMIT_WAITERS = 1_000
MAX_COMMIT_WAITERS_PER_ADDRESS = 64


class _ConsensusApp:
    """Adapts ``LedgerApp`` to the replica: ledger errors become ``AppRejected``, tips are kept for delivery."""

    def __init__(self, app: LedgerApp):
        self.inner = app
        self.tips: dict[bytes, Tip] = {}

    def build(self, parent: Tip, records, timestamp: int, view: int, proposer: str):
        block, tip = self.inner.build(parent, records, timestamp, view, proposer)
        self.tips[block.header.hash()] = tip
        return block, tip

    def validate(self, parent: Tip, block: Block) -> Tip:
        try:
            tip = self.inner.validate(parent, block)
        except InputError as exc:
            raise AppRejected(str(exc), reason=exc.reason) from None
        self.tips[block.header.hash()] = tip
        return tip

    def forget_up_to(self, height: int) -> None:
        for key in [k for k, tip in self.tips.items() if tip.height <= height]:
            del self.tips[key]


def consensus_params(genesis) -> Params:
    """The replica's parameters from the genesis.

    A VIEW-CHANGE carries every prepared block of the watermark window and a
    NEW-VIEW a quorum of them, so the largest consensus message is about
    ``ledger.genesis.view_change_bytes`` (at most 56 MiB by the genesis rules) plus
    signatures and framing.
    """
    c = genesis.consensus
    return Params(batch_max_entries=c.batch_max_entries, batch_max_bytes=c.batch_max_bytes,
                  batch_delay_ms=c.batch_delay_ms, checkpoint_interval=c.checkpoint_interval,
                  watermark_window=c.watermark_window, view_change_timeout_ms=c.view_change_timeout_ms,
                  max_clock_skew_ms=c.max_clock_skew_ms, max_in_flight=min(8, c.watermark_window),
                  max_message_bytes=message_limit(genesis))


def message_limit(genesis) -> int:
    """The largest consensus message this consortium's parameters allow (and a frame must carry)."""
    return view_change_bytes(genesis.validator_set().n, genesis.consensus) + 4 * 1024 * 1024


class Node:
    """One member's node.  Construct (no I/O), then ``await start()`` / ``await stop()``."""

    def __init__(self, setup: NodeSetup):
        self.setup = setup
        self.config = setup.config
        self.genesis = setup.genesis
        self.name = self.config.name
        self.chain_id = self.genesis.chain_id
        self.validators = self.genesis.validator_set()
        self.role = "validator" if self.name in self.validators.names else "observer"
        self.registry = Registry()
        self.version = VERSION
        self.verifier = RequestVerifier.from_genesis(self.genesis, replay_capacity=self.config.pool.replay_capacity)
        self.waiters = CommitWaiters(MAX_COMMIT_WAITERS, MAX_COMMIT_WAITERS_PER_ADDRESS)
        self.store: LevelDBStore | None = None
        self.replica: Replica | None = None
        self.transport: PeerTransport | None = None
        self._runner: web.AppRunner | None = None
        self._timer = ReplicaTimer(self._on_timer)  # deferred once after a loop stall (runtime/replica_timer.py)
        self._last_now = 0
        self._stopping = asyncio.Event()
        self.actions: ActionRunner | None = None  # the replica's actions, carried out in order (runtime/durable.py)
        self._sweep_handle: asyncio.TimerHandle | None = None
        self._sweeps = 0
        self._peer_warns: dict[str, RateLimitedLog] = {}  # per member: one flooding peer hides no other
        node_metrics.register(self)
        self._lag_probe = node_metrics.LagProbe(self.m_loop_lag)
        self._gc_timer = node_metrics.GcTimer(self.m_gc)
        self._gc_timer.install()

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self.store = LevelDBStore.open(self.config.data_dir / "chain")
        rules = Rules.from_genesis(self.genesis)
        ledger_app = LedgerApp(rules, self.store, self.validators.hash())
        self.app = _ConsensusApp(ledger_app)
        self.pool = DepositPool(rules, self.store, self._height_of_code, max_pending=self.config.pool.max_pending,
                                per_client=self.config.pool.per_client_pending)
        key = self.setup.key if self.role == "validator" else None
        self.replica = Replica(self.name, Ed25519Auth(self.chain_id, self.validators, key), self.app,
                               ledger_app.tip_of_store(), consensus_params(self.genesis),
                               persisted=self.store.replica_state())
        self.actions = ActionRunner(self.store, backlog=lambda: max(len(self.replica.requests), len(self.pool)),
                                    index_of=self._index_of, delivered=self._delivered, execute=self._execute,
                                    failed=self._write_failed, m_append=self.m_append,
                                    m_group_sync=self.m_group_sync)
        self.transport = self._make_transport()
        self.forwarder = Forwarder(self.transport, self._forward_target, self.pool.local_records, self.name,
                                   lambda items: self.m_resent.inc(by=items), clock=self.now_ms,
                                   resend_ms=2 * self.genesis.consensus.view_change_timeout_ms,
                                   is_primary=lambda: self.replica.is_primary())
        await self.transport.start()
        api = Api(NodeService(self), public_rate_per_s=self.config.api.public_rate_per_s,
                  max_body_bytes=self.config.api.max_body_bytes, trusted_proxies=self.config.api.trusted_proxies)
        self._runner = api.runner(access_log=None)  # malformed HTTP answered as JSON (runtime/http_api.py)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.api.listen.host, self.config.api.listen.port,
                           reuse_address=True)
        await site.start()
        self.step(io.Started())
        self._lag_probe.start()
        self._sweep_handle = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep_forwards)
        log.info("node %s (%s) serving chain %s at height %d on http://%s:%d", self.name, self.role,
                 self.chain_id, self.store.head().height, self.config.api.listen.host, self.config.api.listen.port)

    async def stop(self) -> None:
        self._lag_probe.stop()
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
        self._gc_timer.remove()
        self._timer.cancel()
        self.waiters.close()  # parked ?wait_ms= requests answer now, not when their wait runs out
        if self._runner is not None:
            await self._runner.cleanup()
        if self.transport is not None:
            await self.transport.close()
        if self.actions is not None and not await self.actions.close(10.0):
            log.error("node %s: durable writes still pending at shutdown", self.name)
        if self.store is not None:
            self.store.close()
        log.info("node %s stopped", self.name)

    def _make_transport(self) -> PeerTransport:
        nodes = {m.name: m for m in self.genesis.members if m.node is not None}
        members = {name: m.public_key for name, m in nodes.items()}
        # Validators dial the other validators; observers dial every validator.
        peers = {name: _address(m.node.peer) for name, m in nodes.items()
                 if name != self.name and name in self.validators.names}
        listen = (self.config.peer.listen.host, self.config.peer.listen.port)
        # Generous idle timeout: a node busy with a large block must not lose its links.
        return PeerTransport(self.name, self.setup.key, self.chain_id, members, listen, peers, self._on_frame,
                             heartbeat_interval=2.0, idle_timeout=20.0,
                             max_frame=max(32 * 1024 * 1024, message_limit(self.genesis) + 1024 * 1024),
                             queue_bytes=64 * 1024 * 1024)

    # ------------------------------------------------------------------ the replica

    def now_ms(self) -> int:
        self._last_now = max(self._last_now, int(time.time() * 1000))
        return self._last_now

    def step(self, event: Any) -> None:
        if self.actions.failed:  # a durable write failed and the node is stopping: no more effects
            return
        actions = self.replica.step(event, self.now_ms())
        if actions:
            self.actions.add(actions)

    def _write_failed(self, exc: BaseException) -> None:
        log.critical("node %s: durable write failed, stopping: %s", self.name, exc)
        os.kill(os.getpid(), signal.SIGTERM)

    def _execute(self, action: Any) -> None:
        kind = type(action)
        if kind is io.Send:
            self.transport.send(action.to, peerwire.consensus(action.data))
        elif kind is io.Broadcast:
            frame = peerwire.consensus(action.data)
            for name in self.validators.names:
                if name != self.name:
                    self.transport.send(name, frame)
        elif kind is io.Fetch:
            self.transport.send(action.peer, peerwire.fetch(action.from_height, action.to_height))
        elif kind is io.SetTimer:
            self._set_timer(action.deadline)
        elif kind is io.RequestDropped:
            self.pool.remove(action.request_id)
            self.m_dropped_requests.inc(action.reason)
        elif kind is io.Complained:
            self.m_complaints.inc()
            log.warning("nothing delivered for %d ms in view %d: complaining (f+1 complaints change the view)",
                        action.waited_ms, action.view)
            self.forwarder.resend_local(None)
        elif kind is io.ViewChangeStarted:
            log.warning("asking for view %d: %s%s", action.view, action.reason,
                        " (nothing delivered for %d ms)" % action.waited_ms if action.reason == "progress_timeout" else "")
        elif kind is io.ViewChanged:
            self.m_view_changes.inc()
            log.info("view %d, primary %s", action.view, action.primary)
            self.forwarder.resend_local(action.primary)
        elif kind in (io.Suspect, io.Dropped):
            self.m_peer_faults.inc(kind.__name__.lower(), action.reason)
            if kind is io.Suspect:
                self._warn_peer(action.peer, "peer %s suspected: %s", action.peer, action.reason)

    def _flush_peer_warns(self) -> None:
        now = time.monotonic()
        for warn in self._peer_warns.values():
            warn.flush(now)

    def _warn_peer(self, peer: str, msg: str, *args: Any) -> None:
        """A warning about a member's messages, rate-limited per member (names come from
        authenticated connections and consensus messages: genesis members only)."""
        warn = self._peer_warns.get(peer)
        if warn is None:
            warn = self._peer_warns[peer] = RateLimitedLog(logger=log, what="%s peer" % peer)
        warn.warning(time.monotonic(), msg, *args)

    def _set_timer(self, deadline: int | None) -> None:
        self._timer.set(None if deadline is None else (deadline - self.now_ms()) / 1000)

    def _on_timer(self) -> None:
        self.step(io.TimerFired())

    def _index_of(self, block: Block) -> BlockIndex:
        tip = self.app.tips.get(block.header.hash())
        if tip is None:  # not seen by build/validate in this process (cannot happen: the replica validates first)
            tip = self.app.inner.validate(self.app.inner.tip_of_store(), block)
        return BlockIndex.from_effects(block.header.height, tip.effects)

    def _delivered(self, block: Block, written: Any) -> None:
        """What follows a block's append: forget its tip and its records' memos, release its
        deposits from the pool, wake the clients waiting for its codes, count it."""
        items = 0
        for record in block.records:  # first: nothing else here may keep a committed deposit pending
            self.pool.remove(record.entry.leaf_hash())
            items += record.entry.body.item_count if isinstance(record.entry.body, Deposit) else 1
        if self.waiters.wanted():  # before the code memo forgets the block's records
            for record in block.records:
                self.waiters.committed(deposit_code_keys(self.chain_id, record))
        self.app.forget_up_to(block.header.height)
        derived.forget(self.chain_id, block.records)
        self.m_commits.inc()
        self.m_items.inc(by=items)

    # ------------------------------------------------------------------ peers

    def forward(self, records: list[EntryRecord]) -> None:
        """Send records admitted here on (runtime/forwarding.py: to the primary, or every validator)."""
        self.forwarder.forward(records)

    def _sweep_forwards(self) -> None:
        """Every ``SWEEP_S``: re-send requests submitted here whose forward may have been lost,
        sync appends no vote's sync has covered (runtime/durable.py), every
        ``MEMO_EPOCH_SWEEPS`` age the memos (ledger/memo.py), and report peer warnings held back.  One chore failing (a bug)
        is logged and does not stop the others, or the next sweep."""
        for chore in (self.forwarder.sweep, self.actions.flush, self._age_memos, self._flush_peer_warns):
            try:
                chore()
            except Exception:  # noqa: BLE001 - logged; the node keeps serving
                log.exception("the periodic %s failed", chore.__name__)
        self._sweep_handle = asyncio.get_running_loop().call_later(SWEEP_S, self._sweep_forwards)

    def _age_memos(self) -> None:
        self._sweeps += 1
        if self._sweeps % MEMO_EPOCH_SWEEPS == 0:
            derived.age()

    def _forward_target(self) -> str | None:
        if self.role != "validator" or self.replica.in_vc:
            return None
        primary = self.replica.primary()
        return None if primary == self.name else primary

    def _on_frame(self, sender: str, frame: bytes) -> None:
        try:
            kind, body = peerwire.split(frame)
            if kind == peerwire.CONSENSUS:
                self.step(io.MessageReceived(sender, body))
            elif kind == peerwire.REQUESTS:
                self._on_forwarded(peerwire.parse_requests(body))
            elif kind == peerwire.FETCH:
                self._on_fetch(sender, *peerwire.parse_fetch(body))
            elif kind == peerwire.BLOCKS:
                blocks, stale = peerwire.parse_blocks(body, self.replica.last_delivered)
                self.m_fetched.inc("stale", by=stale)
                self.m_fetched.inc("read", by=len(blocks))
                self.step(io.FetchResult(sender, tuple(blocks)))
        except DecodeError as exc:
            self.m_peer_faults.inc("malformed", exc.reason)
            self._warn_peer(sender, "malformed frame from %s: %s", sender, exc)

    def _on_forwarded(self, records: list[EntryRecord]) -> None:
        if self.role != "validator":
            return
        now = self.now_ms()
        for record in records:
            state = self.pool.add_forwarded(record, now)
            if state in ("new", "pending"):
                self.step(io.ClientRequest(record))
            elif state == "committed":  # arrived after its block: reading it put it back in the record memo
                derived.forget(self.chain_id, [record])
            else:
                self.m_dropped_requests.inc("forwarded_" + state)

    def _on_fetch(self, sender: str, low: int, high: int) -> None:
        head = self.store.head().height
        parts, size = [], 0
        for height in range(low, min(high, head) + 1):
            records = self.store.raw_records(height)
            parts.append((self.store.header(height).wire(), records, self.store.certificate(height).wire()))
            size += sum(map(len, records))
            if size > FETCH_REPLY_BYTES:
                break
        self.transport.send(sender, peerwire.blocks_raw(parts))

    def _height_of_code(self, code_key: bytes) -> int | None:
        loc = self.store.locate(code_key)
        return None if loc is None else loc.height


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host.strip("[]"), int(port)


async def serve(setup: NodeSetup) -> int:
    """Run a node until SIGTERM or SIGINT; return the process exit code."""
    node = Node(setup)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, lambda: log.info("memory: %s", node_metrics.memory_report(node)))
    try:
        await node.start()
    except Exception:
        await node.stop()
        raise
    await stop.wait()
    await node.stop()
    if node.actions is not None and node.actions.failed:
        return 3  # stopped by a failed durable write (logged), not by an operator: a failure
    return 0


def _limit_malloc_arenas() -> None:
    """At most two glibc malloc arenas: each thread that allocates (LevelDB's
    compaction, the store writer) would otherwise get an arena of its own, whose
    freed memory stays resident.  Called before those threads exist."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-8, 2)  # M_ARENA_MAX
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD, fixed: blocks and frames are mapped and unmapped
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


SOCKET_READ_BYTES = 64 * 1024


def _small_socket_reads() -> None:
    """asyncio reads a socket into a fresh buffer of its transport's ``max_size``
    (256 KiB), then shrinks it to what arrived.  Above the fixed mmap threshold (128
    KiB) each read was an mmap, page faults and a munmap: a 300-byte send and receive
    on a socket pair took 19.5 µs, against 2.4 µs reading at most 64 KiB, and an idle
    node reads about 165 times a second.  Every socket of the node (peers, HTTP
    clients) is one of asyncio's selector transports; a larger message takes more
    reads of 64 KiB.  Left alone if asyncio's internals are not what this expects."""
    from asyncio import selector_events

    transport = getattr(selector_events, "_SelectorSocketTransport", None)
    if transport is not None and getattr(transport, "max_size", None) == 256 * 1024:
        transport.max_size = SOCKET_READ_BYTES


def _raise_fd_limit(want: int = 65_536) -> None:
    """Every client connection (a parked ``?wait_ms=`` lookup too), peer link and LevelDB
    table file is a file descriptor: take the soft limit up to the hard one."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = want if hard == resource.RLIM_INFINITY else min(hard, want)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ImportError, ValueError, OSError):  # not POSIX, or not allowed: keep what we have
        pass


def main(config_path: str) -> int:
    """``evledger run CONFIG``."""
    from runtime.config import load_node

    setup = load_node(config_path)
    node_metrics.configure_logging(setup.config.log.level, setup.config.log.json)
    # The store's writer thread must get the GIL back soon after its fsync returns;
    # at Python's default 5 ms switch interval a busy loop would hold it that long.
    sys.setswitchinterval(0.0005)
    # A node allocates millions of short-lived objects a second (decoded items,
    # tuples) while holding a large live set (pool, memos); at the default
    # thresholds (700, 10, 10) the cyclic collector re-scans that set several
    # times a second, ~15 % of a node's CPU in the batch benchmark.  Young
    # collections every 50k allocations keep cyclic garbage (asyncio's) bounded;
    # what start-up loaded is frozen out of every scan.
    gc.set_threshold(50_000, 20, 10)
    gc.freeze()
    _limit_malloc_arenas()
    _small_socket_reads()
    _raise_fd_limit()
    try:
        return asyncio.run(serve(setup))
    except (OSError, StoreError) as exc:  # a port in use, a data folder we may not write, a store in use...
        log.error("node %s stopped: %s", setup.config.name, exc)
        return 3
