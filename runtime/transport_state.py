"""The peer transport's bookkeeping: counters, link reports, redial backoff, per-peer state.

``runtime.transport`` runs the connections and re-exports what is public here.
"""

from __future__ import annotations

import asyncio
import collections
import random
from dataclasses import dataclass, field

from .connection import Connection

Address = tuple[str, int]


@dataclass
class TransportStats:
    """Counters for metrics.  Bytes are wire bytes (prefixes, tags and heartbeats included).

    ``dropped`` reasons: ``queue_full`` (oldest frame pushed out), ``not_connected``
    (a member we neither dial nor hold a connection to), ``closed`` (after close()).
    ``handshake_failures`` and ``disconnects`` use the reasons of
    ``docs/transport.md``.  ``frames_in``/``frames_out`` count messages, not heartbeats.
    """

    frames_in: int = 0
    frames_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    connects: int = 0
    reconnects: int = 0
    dial_failures: int = 0
    callback_errors: int = 0
    dropped: collections.Counter = field(default_factory=collections.Counter)
    handshake_failures: collections.Counter = field(default_factory=collections.Counter)
    disconnects: collections.Counter = field(default_factory=collections.Counter)

    def snapshot(self) -> dict:
        """A plain, independent copy (for /metrics)."""
        out = {k: v for k, v in self.__dict__.items() if isinstance(v, int)}
        for name in ("dropped", "handshake_failures", "disconnects"):
            out[name] = dict(getattr(self, name))
        return out


@dataclass(frozen=True, slots=True)
class LinkInfo:
    """The live connection to one peer when asked: who dialled, the socket's ends, the session.

    ``write_buffer`` is the number of bytes handed to the socket but not yet sent.
    """

    peer: str
    dialed: bool
    local: Address
    remote: Address
    session_id: str
    since: float
    write_buffer: int


class Backoff:
    """Exponential backoff with jitter: delays in [d/2, d], d = min(cap, base * 2**attempt)."""

    __slots__ = ("base", "cap", "_rng", "_attempt")

    def __init__(self, base: float, cap: float, rng: random.Random):
        if not 0 < base <= cap:
            raise ValueError("need 0 < base <= cap")
        self.base, self.cap, self._rng, self._attempt = base, cap, rng, 0

    def next(self) -> float:
        ceiling = min(self.cap, self.base * 2 ** self._attempt)
        self._attempt = min(self._attempt + 1, 62)
        return self._rng.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._attempt = 0


class _Peer:
    """Per-member state that outlives connections: the send queue and who is live."""

    __slots__ = ("name", "address", "queue", "queued_bytes", "conn", "has_data", "idle", "backoff", "connected_once",
                 "outage_logged")

    def __init__(self, name: str, address: Address | None, backoff: Backoff):
        self.name = name
        self.address = address  # None: we do not dial this member, it may dial us
        self.queue: collections.deque[bytes] = collections.deque()
        self.queued_bytes = 0
        self.conn: Connection | None = None
        self.has_data = asyncio.Event()  # set while the queue may hold frames
        self.idle = asyncio.Event()  # set while there is no live connection
        self.idle.set()
        self.backoff = backoff
        self.connected_once = False
        self.outage_logged = False
