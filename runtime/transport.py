"""Peer transport: authenticated, bounded, self-healing connections between members.

Theory of operation
-------------------
A :class:`PeerTransport` keeps one live connection to each member it talks to and
moves opaque payloads (already-encoded consensus messages) over it:

* **Dialling.**  It dials every member in ``peers`` and accepts inbound connections
  from any member of the consortium (validators, observers, a node missing from
  ``peers``).  A failed or lost connection is redialled after a delay drawn from
  [d/2, d], d = min(backoff_max, backoff_base * 2**failures); the delay resets after
  a successful handshake.  While any live connection to the peer exists, nobody
  dials it.
* **One connection per pair.**  If both ends dialled and both handshakes succeed,
  both ends keep the connection dialled by the lexicographically smaller name; if
  two connections were dialled by the same end, the newer one is kept (the peer
  restarted or saw the old one die first).  Both ends apply the same rule, so they
  converge without talking.  The loser is *retired*: no more writes, a half-close
  (FIN), and its reader delivers what is still in flight until the peer's FIN or a
  deadline, so deduplication loses no frame that was already sent.
* **Handshake** (``runtime/handshake.py``) within ``handshake_timeout``, frames of
  at most 1 KiB, at most ``max_pending_handshakes`` inbound at once.  After it,
  every frame is sealed with the session keys (``runtime/frames.py``).
* **Sending never blocks.**  ``send`` appends to the peer's queue (bounded in
  frames and bytes; when full the *oldest* frames are dropped and counted: consensus
  retransmits what matters, and fresh messages matter more than stale ones).  The
  queue belongs to the peer (:class:`_Peer`), not to a connection, so it outlives
  connections: frames queued while a peer is down go out when it is back.
* **Per connection** (``runtime/connection.py``): one reader delivers frames in
  order to ``on_message(peer, payload)`` (an exception there is logged and counted,
  never fatal); one writer drains the peer's queue in batches and closes the
  connection when a drain makes no progress within ``write_timeout``; a watch task
  sends heartbeats after ``heartbeat_interval`` of silence and closes a connection
  that has received nothing for ``idle_timeout`` (this finds half-open ones).
  This module decides which connection is live and runs those tasks.
* **Faults stay local.**  Anything a peer does wrong — garbage, an oversize prefix,
  a bad signature, a forged or replayed frame, silence — closes that one connection
  with a reason counted in :class:`TransportStats`; the node keeps serving others.
  Logs name the peer, its address and the reason, never payloads or keys, and are
  rate-limited so that a hostile client cannot flood them.

Delivery is at most once and in order per connection; nothing is acknowledged or
retransmitted here.  The class is not thread-safe: call it from its event loop.
Constructors do no I/O; :meth:`start` listens and dials; :meth:`close` cancels
every task and closes every socket.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Callable, Iterable, Mapping

from ledger.crypto import PublicKey, SecretKey

from . import connection
from .connection import WRITE_HIGH_WATER, Connection, RateLimitedLog, Shared
from .frames import DEFAULT_MAX_FRAME, HANDSHAKE_MAX_FRAME, MAX_LENGTH, TAG_SIZE, FrameError, encode_frame, read_frame
from .handshake import ACCEPTOR, DIALER, Handshake, HandshakeError
from .transport_state import Address, Backoff, LinkInfo, TransportStats, _Peer  # noqa: F401  (re-exported)

log = logging.getLogger("evledger.transport")

OnMessage = Callable[[str, bytes], None]

STREAM_LIMIT = 1024 * 1024
# How one connection reads and batches its writes: runtime.connection's business, named here as before.
READ_CHUNK, BATCH_FRAMES, BATCH_BYTES = connection.READ_CHUNK, connection.BATCH_FRAMES, connection.BATCH_BYTES


class PeerTransport:
    """Authenticated peer-to-peer frames between consortium members (see the module docstring).

    ``members`` maps every member allowed to connect to its genesis key and must
    hold ``name`` with ``key``'s public key.  ``peers`` maps the members this node
    dials to their addresses.  ``listen`` is ``(host, port)`` (port 0 picks one, see
    :attr:`listen_address`) or ``None`` for a node that only dials.
    """

    def __init__(
        self,
        name: str,
        key: SecretKey,
        chain_id: str,
        members: Mapping[str, PublicKey],
        listen: Address | None,
        peers: Mapping[str, Address],
        on_message: OnMessage,
        *,
        max_frame: int = DEFAULT_MAX_FRAME,
        queue_limit: int = 10_000,
        queue_bytes: int = 16 * 1024 * 1024,
        handshake_timeout: float = 5.0,
        heartbeat_interval: float = 1.0,
        idle_timeout: float = 5.0,
        write_timeout: float = 30.0,
        backoff_base: float = 0.1,
        backoff_max: float = 5.0,
        max_pending_handshakes: int = 64,
        rng: random.Random | None = None,
    ):
        _check_arguments(name, key, members, peers, on_message, max_frame=max_frame, queue_limit=queue_limit,
                         queue_bytes=queue_bytes, handshake_timeout=handshake_timeout,
                         heartbeat_interval=heartbeat_interval, idle_timeout=idle_timeout,
                         write_timeout=write_timeout, max_pending_handshakes=max_pending_handshakes)
        self.name = name
        self._key = key
        self._chain_id = chain_id
        self._members = dict(members)
        self._listen = listen
        self._max_payload = max_frame - TAG_SIZE
        self._queue_limit = queue_limit
        self._queue_bytes = queue_bytes
        self._handshake_timeout = handshake_timeout
        self._max_pending = max_pending_handshakes
        self._rng = rng if rng is not None else random.Random()
        self._backoff_args = (backoff_base, backoff_max)
        self.stats = TransportStats()
        self._peers: dict[str, _Peer] = {p: self._new_peer(p, tuple(a)) for p, a in peers.items()}
        self._server: asyncio.base_events.Server | None = None
        self._listen_address: Address | None = None
        self._tasks: set[asyncio.Task] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._pending = 0  # inbound handshakes in progress (bounded by max_pending_handshakes)
        self._connecting = 0  # TCP connects and handshakes in progress, both directions
        self._changed = asyncio.Event()
        self._started = False
        self._closed = False
        self._warn = RateLimitedLog()
        self._shared = Shared(name, on_message, self.stats, self._warn, max_frame, heartbeat_interval, idle_timeout,
                              write_timeout, retire_timeout=handshake_timeout)

    # ----------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        """Listen (if ``listen`` was given) and start dialling every peer."""
        if self._started:
            raise RuntimeError("PeerTransport.start() called twice")
        self._started = True
        if self._listen is not None:
            host, port = self._listen
            self._server = await asyncio.start_server(self._accept, host, port, limit=STREAM_LIMIT)
            self._listen_address = self._server.sockets[0].getsockname()[:2]
            log.info("%s listening on %s:%d", self.name, *self._listen_address)
        for state in self._peers.values():
            self._spawn(self._dial_loop(state), "dial-%s" % state.name)

    async def close(self) -> None:
        """Stop listening and dialling, close every connection, wait for every task."""
        if self._closed:
            return
        self._closed = True
        if self._server is not None:
            self._server.close()
        current = asyncio.current_task()
        while tasks := [t for t in self._tasks if t is not current]:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self._tasks.difference_update(tasks)
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()
        if self._server is not None:
            await self._server.wait_closed()
        await asyncio.sleep(0)  # let the transports' connection_lost callbacks run
        self._notify()

    async def __aenter__(self) -> "PeerTransport":
        await self.start()
        return self

    async def __aexit__(self, *exc_info) -> None:
        await self.close()

    @property
    def listen_address(self) -> Address | None:
        """The bound ``(host, port)`` once started (useful with port 0)."""
        return self._listen_address

    # ----------------------------------------------------------------- sending

    def send(self, peer: str, payload: bytes) -> bool:
        """Queue ``payload`` for ``peer`` without blocking.

        Returns ``False`` if it was dropped at once (counted in ``stats.dropped``):
        the transport is closed, or ``peer`` is a member that we neither dial nor
        hold a connection to.  A full queue drops its oldest frames instead.
        Raises ``ValueError``/``TypeError`` for misuse: an unknown name, this node's
        own name, a payload that is not non-empty ``bytes`` of at most
        ``max_frame - 16`` bytes.
        """
        if type(payload) is not bytes:
            raise TypeError("payload must be bytes, got %s" % type(payload).__name__)
        size = len(payload)
        if not 0 < size <= self._max_payload:
            raise ValueError("payload must be 1..%d bytes, got %d" % (self._max_payload, size))
        state = self._peers.get(peer)
        if state is None:
            if peer not in self._members or peer == self.name:
                raise ValueError("%r is not a peer of %r" % (peer, self.name))
            self.stats.dropped["not_connected"] += 1
            return False
        if self._closed:
            self.stats.dropped["closed"] += 1
            return False
        if state.address is None and state.conn is None:
            self.stats.dropped["not_connected"] += 1
            return False
        queue = state.queue
        queue.append(payload)
        state.queued_bytes += size
        if len(queue) > self._queue_limit or state.queued_bytes > self._queue_bytes:
            self._drop_oldest(state)
        state.has_data.set()
        return True

    def _drop_oldest(self, state: _Peer) -> None:
        queue, dropped = state.queue, 0
        while len(queue) > 1 and (len(queue) > self._queue_limit or state.queued_bytes > self._queue_bytes):
            state.queued_bytes -= len(queue.popleft())
            dropped += 1
        self.stats.dropped["queue_full"] += dropped

    def broadcast(self, payload: bytes) -> None:
        """``send`` to every member in ``peers`` and every other member connected now."""
        for name in list(self._peers):
            state = self._peers[name]
            if state.address is not None or state.conn is not None:
                self.send(name, payload)

    # ----------------------------------------------------------------- introspection

    def connected(self) -> set[str]:
        """Names of the members with a live, authenticated connection."""
        return {name for name, state in self._peers.items() if state.conn is not None}

    def links(self) -> dict[str, LinkInfo]:
        """The live connection to each connected member."""
        out = {}
        for name, state in self._peers.items():
            conn = state.conn
            if conn is not None:
                local = conn.writer.get_extra_info("sockname") or ("?", 0)
                remote = conn.writer.get_extra_info("peername") or ("?", 0)
                out[name] = LinkInfo(
                    peer=name,
                    dialed=conn.dialed,
                    local=tuple(local[:2]),
                    remote=tuple(remote[:2]),
                    session_id=conn.session_id,
                    since=conn.since,
                    write_buffer=conn.writer.transport.get_write_buffer_size(),
                )
        return out

    @property
    def connecting(self) -> int:
        """Connections being set up now (TCP connect or handshake), inbound and outbound."""
        return self._connecting

    def queue_depth(self, peer: str) -> tuple[int, int]:
        """``(frames, bytes)`` waiting in ``peer``'s send queue."""
        state = self._peers.get(peer)
        return (0, 0) if state is None else (len(state.queue), state.queued_bytes)

    async def wait_connected(self, names: Iterable[str] | None = None, timeout: float | None = None) -> None:
        """Wait until every member in ``names`` (default: ``peers``) is connected.

        Raises ``TimeoutError`` after ``timeout`` seconds.
        """
        wanted = set(self._peers_dialled() if names is None else names)
        async with asyncio.timeout(timeout):
            while not wanted <= self.connected():
                self._changed.clear()
                await self._changed.wait()

    def _peers_dialled(self) -> list[str]:
        return [n for n, s in self._peers.items() if s.address is not None]

    # ----------------------------------------------------------------- internals: connections

    def _new_peer(self, name: str, address: Address | None) -> _Peer:
        return _Peer(name, address, Backoff(*self._backoff_args, self._rng))

    def _spawn(self, coro, name: str) -> asyncio.Task:
        task = asyncio.get_running_loop().create_task(coro, name="%s:%s" % (self.name, name))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _notify(self) -> None:
        self._changed.set()

    async def _dial_loop(self, state: _Peer) -> None:
        host, port = state.address
        first = True
        while True:
            await state.idle.wait()
            if not first:
                await asyncio.sleep(state.backoff.next())
                if not state.idle.is_set():
                    continue
            first = False
            self._connecting += 1
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    reader, writer = await asyncio.open_connection(host, port, limit=STREAM_LIMIT)
            except (OSError, TimeoutError) as exc:
                self.stats.dial_failures += 1
                level = logging.DEBUG if state.outage_logged else logging.WARNING  # once per outage
                state.outage_logged = True
                log.log(level, "%s: cannot reach %s at %s:%d (%s); retrying with backoff", self.name, state.name,
                        host, port, type(exc).__name__)
                continue
            finally:
                self._connecting -= 1
            await self._serve(reader, writer, dialed=True, expected=state.name)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if self._closed:
            writer.transport.abort()
            return
        self._tasks.add(task)
        try:
            if self._pending >= self._max_pending:
                return self._refused("too_many_handshakes", writer, None)
            await self._serve(reader, writer, dialed=False, expected=None)
        except asyncio.CancelledError:
            pass  # close() ends this task; asyncio's server callback would log a cancellation as an error
        finally:
            self._tasks.discard(task)

    async def _serve(self, reader, writer, *, dialed: bool, expected: str | None) -> None:
        """Handshake, then run the connection until it ends.  Owns ``writer``."""
        self._writers.add(writer)
        writer.transport.set_write_buffer_limits(high=WRITE_HIGH_WATER)
        reason = None
        hs = Handshake(DIALER if dialed else ACCEPTOR, self.name, self._key, self._chain_id, self._members,
                       expected=expected)
        self._connecting += 1
        self._pending += not dialed
        try:
            try:
                async with asyncio.timeout(self._handshake_timeout):
                    session = await self._handshake(hs, reader, writer)
            except TimeoutError:
                return self._refused("timeout", writer, hs.peer_name)
            except (FrameError, HandshakeError) as exc:
                return self._refused(exc.reason, writer, hs.peer_name, str(exc))
            except (ConnectionError, OSError):
                return self._refused("connection_lost", writer, hs.peer_name)
            finally:
                self._connecting -= 1
                self._pending -= not dialed
            if self._closed:
                return
            state = self._peers.get(session.peer)
            if state is None:  # an inbound member we do not dial (an observer, say)
                state = self._peers[session.peer] = self._new_peer(session.peer, None)
            conn = Connection(self._shared, state, reader, writer, dialed, session.sealer(), session.opener(),
                              session.session_id, asyncio.get_running_loop().time())
            reason = await self._run(conn)
        finally:
            if reason == "eof" and writer.transport.get_write_buffer_size():
                # The peer half-closed cleanly (it retired this connection or is
                # stopping) and still reads: flush what we wrote, within a deadline.
                writer.close()
                asyncio.get_running_loop().call_later(self._handshake_timeout, self._abort, writer)
            else:
                # Unsent bytes are moot (delivery is at most once), and a peer that
                # stopped reading must not pin the socket.
                self._abort(writer)

    def _abort(self, writer: asyncio.StreamWriter) -> None:
        self._writers.discard(writer)
        writer.transport.abort()

    async def _handshake(self, hs: Handshake, reader, writer):
        writer.write(encode_frame(hs.hello))
        auth = hs.receive_hello(await read_frame(reader, HANDSHAKE_MAX_FRAME))
        writer.write(encode_frame(auth))  # two small frames: no drain needed, and none may hide the peer's AUTH
        return hs.receive_auth(await read_frame(reader, HANDSHAKE_MAX_FRAME))

    def _refused(self, reason: str, writer, claimed: str | None, detail: str = "") -> None:
        self.stats.handshake_failures[reason] += 1
        addr = writer.get_extra_info("peername")
        where = "%s:%s" % tuple(addr[:2]) if addr else "?"
        self._warn.warning(
            asyncio.get_running_loop().time(),
            "%s: handshake with %s (claims %s) refused: %s%s",
            self.name, where, claimed or "-", reason, " (%s)" % detail if detail else "",
        )
        writer.transport.abort()

    async def _run(self, conn: Connection) -> str:
        """Read until the connection ends; return the reason it ended."""
        active = self._register(conn)
        conn.watch_task = self._spawn(conn.watch(), "watch-%s" % conn.peer)
        if active:
            conn.writer_task = self._spawn(conn.write_loop(), "write-%s" % conn.peer)
        reason = "shutdown"
        try:
            reason = await conn.read_loop()
        finally:
            for task in (conn.writer_task, conn.watch_task):
                if task is not None:
                    task.cancel()
            reason = conn.reason or reason
            self._unregister(conn, reason)
        return reason

    def _register(self, conn: Connection) -> bool:
        """Make ``conn`` the peer's live connection unless a preferred one exists; retire the loser."""
        state = conn.state
        old = state.conn
        if old is not None:
            if old.dialed == conn.dialed:
                keep_new = True  # same direction: the newer one wins (the peer restarted)
            else:
                keep_new = conn.dialed == (self.name < conn.peer)  # keep the one the smaller name dialled
            (old if keep_new else conn).retire()
            if not keep_new:
                return False
        state.conn = conn
        state.idle.clear()
        state.backoff.reset()
        self.stats.connects += 1
        if state.connected_once:
            self.stats.reconnects += 1
        state.connected_once = True
        state.outage_logged = False
        log.info("%s: connected to %s (%s, session %s)", self.name, conn.peer,
                 "dialled" if conn.dialed else "accepted", conn.session_id)
        if state.queue:
            state.has_data.set()
        self._notify()
        return True

    def _unregister(self, conn: Connection, reason: str) -> None:
        self.stats.disconnects[reason] += 1
        state = conn.state
        if state.conn is not conn:
            return  # a retired duplicate
        state.conn = None
        state.idle.set()
        level = logging.INFO if reason in ("eof", "shutdown") else logging.WARNING
        log.log(level, "%s: connection to %s closed: %s", self.name, conn.peer, reason)
        if state.address is None and state.queue:  # nobody will dial it: free the memory
            self.stats.dropped["not_connected"] += len(state.queue)
            state.queue.clear()
            state.queued_bytes = 0
        self._notify()


def _check_arguments(name: str, key: SecretKey, members: Mapping[str, PublicKey], peers: Mapping[str, Address],
                     on_message: OnMessage, *, max_frame: int, queue_limit: int, queue_bytes: int,
                     handshake_timeout: float, heartbeat_interval: float, idle_timeout: float, write_timeout: float,
                     max_pending_handshakes: int) -> None:
    """Raise ``ValueError``/``TypeError`` for the first argument of :class:`PeerTransport` that is not acceptable."""
    if members.get(name) != key.public:
        raise ValueError("members[%r] must be the public key of `key`" % name)
    unknown = sorted(set(peers) - set(members))
    if unknown:
        raise ValueError("peers that are not members: %s" % ", ".join(unknown))
    if name in peers:
        raise ValueError("a node does not dial itself: remove %r from peers" % name)
    if not HANDSHAKE_MAX_FRAME <= max_frame <= MAX_LENGTH:
        raise ValueError("max_frame must be in [%d, %d]" % (HANDSHAKE_MAX_FRAME, MAX_LENGTH))
    if queue_limit < 1 or queue_bytes < max_frame:
        raise ValueError("need queue_limit >= 1 and queue_bytes >= max_frame")
    if not 0 < heartbeat_interval * 2 <= idle_timeout:
        raise ValueError("idle_timeout must be at least twice heartbeat_interval")
    if min(handshake_timeout, write_timeout, max_pending_handshakes) <= 0:
        raise ValueError("timeouts and max_pending_handshakes must be positive")
    if not callable(on_message):
        raise TypeError("on_message must be callable")
