"""One authenticated peer connection: its reader, its writer and its heartbeats.

Theory of operation
-------------------
A :class:`Connection` is born when a handshake succeeds (``runtime/transport.py``
runs the handshake and decides which connection to a peer is *live*).  It carries
the session's :class:`~runtime.frames.Sealer` and :class:`~runtime.frames.Opener`
and is driven by three coroutines, each run as its own task by the transport:

* **Reader** (:meth:`Connection.read_loop`).  Splits the stream with a
  :class:`~runtime.frames.FrameDecoder` (the length is checked before the body is
  read), opens each frame and calls ``deliver(peer, payload)`` in order.  An empty
  payload is a heartbeat and is not delivered.  An exception in ``deliver`` is
  logged (rate-limited) and counted, never fatal.  The loop returns the reason the
  stream ended: ``eof``, ``truncated``, ``connection_lost`` or a frame error's reason.
* **Writer** (:meth:`Connection.write_loop`, live connections only).  Drains the
  peer's send queue — which belongs to the peer, not to the connection, so it
  outlives reconnects — in batches: many sealed frames, one ``write``, one
  ``drain``.  A drain that makes no progress within ``write_timeout`` fails the
  connection with ``write_timeout``.
* **Watch** (:meth:`Connection.watch`).  Every ``heartbeat_interval``: a connection
  that has received nothing for ``idle_timeout`` fails with ``idle_timeout``; one
  that has sent nothing for ``heartbeat_interval`` asks the writer for a heartbeat
  (an empty sealed frame); a *retired* duplicate that is still open after
  ``retire_timeout`` fails with its reason.

:meth:`Connection.fail` aborts the socket and records the first reason given; the
reader then ends and the transport unregisters the connection.
:meth:`Connection.retire` stops writing on a duplicate and half-closes it (FIN) while
its reader delivers what is still in flight, so deduplication loses no frame that was
already sent.  Nothing here dials, registers or decides between connections.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .frames import HEADER, FrameDecoder, FrameError, Opener, Sealer

if TYPE_CHECKING:
    from .transport import TransportStats, _Peer

log = logging.getLogger("evledger.transport")

READ_CHUNK = 64 * 1024  # each read is a copy: keep it under the node's fixed mmap threshold (node.py)
BATCH_FRAMES = 1024
BATCH_BYTES = 1024 * 1024
WRITE_HIGH_WATER = 1024 * 1024


class RateLimitedLog:
    """At most ``burst`` warnings per ``window`` seconds; the rest are counted and summarised."""

    def __init__(self, burst: int = 20, window: float = 10.0, logger: logging.Logger | None = None,
                 what: str = "transport"):
        self.burst, self.window = burst, window
        self.log, self.what = logger or log, what
        self._start, self._count, self._suppressed = -1e18, 0, 0

    def warning(self, now: float, msg: str, *args, exc_info: bool = False) -> None:
        if now - self._start > self.window:
            if self._suppressed:
                self.log.warning("%d similar %s warnings were suppressed", self._suppressed, self.what)
            self._start, self._count, self._suppressed = now, 0, 0
        if self._count < self.burst:
            self._count += 1
            self.log.warning(msg, *args, exc_info=exc_info)
        else:
            self._suppressed += 1

    def flush(self, now: float) -> None:
        """Log the count of what was held back once its window has passed, even if nothing
        more comes (called on a timer): a source that fell silent still gets its summary."""
        if self._suppressed and now - self._start > self.window:
            self.log.warning("%d similar %s warnings were suppressed", self._suppressed, self.what)
            self._start, self._count, self._suppressed = now, 0, 0


@dataclass(frozen=True, slots=True)
class Shared:
    """What every connection of one transport shares: its name, where payloads go, counters, limits."""

    name: str  # this node's member name (for logs)
    deliver: Callable[[str, bytes], None]
    stats: TransportStats
    warn: RateLimitedLog
    max_frame: int
    heartbeat_interval: float
    idle_timeout: float
    write_timeout: float
    retire_timeout: float  # how long a retired duplicate may stay open


class Connection:
    """One authenticated connection (live or retired)."""

    __slots__ = (
        "shared", "peer", "state", "reader", "writer", "dialed", "sealer", "opener", "session_id", "since",
        "last_rx", "last_tx", "ping_due", "reason", "retired_at", "writer_task", "watch_task",
    )

    def __init__(self, shared: Shared, state: _Peer, reader, writer, dialed: bool, sealer: Sealer, opener: Opener,
                 session_id: str, now: float):
        self.shared = shared
        self.peer = state.name
        self.state = state
        self.reader: asyncio.StreamReader = reader
        self.writer: asyncio.StreamWriter = writer
        self.dialed = dialed
        self.sealer = sealer
        self.opener = opener
        self.session_id = session_id
        self.since = self.last_rx = self.last_tx = now
        self.ping_due = False
        self.reason: str | None = None
        self.retired_at: float | None = None
        self.writer_task: asyncio.Task | None = None
        self.watch_task: asyncio.Task | None = None

    def fail(self, reason: str) -> None:
        """Close now (first reason wins); the reader then ends and the connection is unregistered."""
        if self.reason is None:
            self.reason = reason
        self.writer.transport.abort()

    def retire(self) -> None:
        """Stop writing on a duplicate, half-close it, keep reading until the peer's FIN or a deadline."""
        if self.reason is None:
            self.reason = "duplicate"
        self.retired_at = asyncio.get_running_loop().time()
        if self.writer_task is not None:
            self.writer_task.cancel()
        if self.state.conn is self:
            self.state.conn = None
        try:
            if self.writer.can_write_eof():
                self.writer.write_eof()
        except (OSError, RuntimeError):
            self.writer.transport.abort()

    async def read_loop(self) -> str:
        """Deliver frames in order until the stream ends; return why it ended."""
        reader, opener, peer, shared = self.reader, self.opener, self.peer, self.shared
        deliver, stats = shared.deliver, shared.stats
        decoder = FrameDecoder(shared.max_frame)
        loop = asyncio.get_running_loop()
        while True:
            try:
                data = await reader.read(READ_CHUNK)
            except (ConnectionError, OSError):
                return "connection_lost"
            if not data:
                return "truncated" if decoder.buffered else "eof"
            self.last_rx = loop.time()
            stats.bytes_in += len(data)
            for body in decoder.feed(data):
                try:
                    payload = opener.open(body)
                except FrameError as exc:
                    return exc.reason
                if not payload:
                    continue  # heartbeat
                stats.frames_in += 1
                try:
                    deliver(peer, payload)
                except Exception:
                    stats.callback_errors += 1
                    shared.warn.warning(loop.time(), "%s: on_message raised for a frame from %s", shared.name, peer,
                                        exc_info=True)
            if decoder.error is not None:
                return decoder.error.reason

    async def write_loop(self) -> None:
        """Drain the peer's queue into the socket in batches until cancelled."""
        state, writer, seal, pack = self.state, self.writer, self.sealer.seal, HEADER.pack
        queue, has_data, stats = state.queue, state.has_data, self.shared.stats
        transport = writer.transport
        loop = asyncio.get_running_loop()
        try:
            while True:
                if not queue and not self.ping_due:
                    has_data.clear()
                    await has_data.wait()
                    continue
                parts: list[bytes] = []
                if self.ping_due:
                    self.ping_due = False
                    body = seal(b"")
                    parts += (pack(len(body)), body)
                count = size = 0
                while queue and count < BATCH_FRAMES and size < BATCH_BYTES:
                    payload = queue.popleft()
                    size += len(payload)
                    count += 1
                    body = seal(payload)
                    parts += (pack(len(body)), body)
                state.queued_bytes -= size
                data = b"".join(parts)
                writer.write(data)
                stats.frames_out += count
                stats.bytes_out += len(data)
                self.last_tx = loop.time()
                if transport.get_write_buffer_size() > WRITE_HIGH_WATER:
                    async with asyncio.timeout(self.shared.write_timeout):
                        await writer.drain()
                else:
                    await writer.drain()  # cheap when not paused; surfaces a lost connection
        except TimeoutError:
            self.fail("write_timeout")
        except (ConnectionError, OSError):
            self.fail("connection_lost")

    async def watch(self) -> None:
        """Heartbeats, idle detection and the deadline of a retired duplicate."""
        loop = asyncio.get_running_loop()
        shared = self.shared
        interval = shared.heartbeat_interval
        while True:
            await asyncio.sleep(interval)
            now = loop.time()
            if now - self.last_rx > shared.idle_timeout:
                return self.fail("idle_timeout")
            if self.retired_at is not None:
                if now - self.retired_at > shared.retire_timeout:
                    return self.fail(self.reason or "duplicate")
            elif now - self.last_tx >= interval:
                self.ping_due = True
                self.state.has_data.set()
