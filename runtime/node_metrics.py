"""A node's Prometheus metrics and the probes behind some of them; its log set-up.

``register(node)`` adds every metric of ``GET /metrics`` (docs/api.md) to the node's
registry and sets the ``m_*`` counters and histograms the node updates.  Two probes
watch the process itself: :class:`LagProbe` (how late the event loop runs a timer:
the time work waits behind other work) and :class:`GcTimer` (Python's cyclic
collections, by generation).
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import logging
import sys
import time
from typing import Any

from .metrics import Counter, CounterView, Gauge, Histogram

log = logging.getLogger("evledger.node")

LAG_PROBE_S = 0.25
LAG_WARNING_S = 1.0


def register(node: Any) -> None:
    reg = node.registry
    head = lambda: node.store.head() if node.store is not None and not node.store.closed else None  # noqa: E731
    reg.add(Gauge("evledger_height", "height of the last committed block", lambda: head().height if head() else 0))
    reg.add(Gauge("evledger_view", "current PBFT view", lambda: node.replica.view if node.replica else 0))
    reg.add(Gauge("evledger_pending_items", "deposit items waiting for commit",
                  lambda: len(node.pool) if hasattr(node, "pool") else 0))
    names = frozenset(node.validators.names)
    reg.add(Gauge("evledger_peers_connected", "validators this node has a live connection to (observers not counted)",
                  lambda: len(node.transport.connected() & names) if node.transport else 0))
    reg.add(Gauge("evledger_observers_connected", "observers connected to this node",
                  lambda: len(node.transport.connected() - names) if node.transport else 0))
    node.m_commits = reg.add(Counter("evledger_blocks_committed_total", "blocks committed by this node"))
    node.m_items = reg.add(Counter("evledger_items_committed_total", "deposit items and entries committed"))
    node.m_view_changes = reg.add(Counter("evledger_view_changes_total", "views entered"))
    node.m_complaints = reg.add(Counter("evledger_complaints_total",
                                        "progress timeouts: COMPLAINTs this node sent about its view"))
    node.m_resent = reg.add(Counter("evledger_requests_resent_total",
                                    "items submitted here sent again: to every validator after a complaint, "
                                    "to a new primary after a view change"))
    node.m_dropped_requests = reg.add(Counter("evledger_requests_dropped_total", "client requests dropped",
                                              ("reason",)))
    node.m_peer_faults = reg.add(Counter("evledger_peer_messages_refused_total", "peer messages refused",
                                         ("kind", "reason")))
    node.m_fetched = reg.add(Counter("evledger_fetched_blocks_total",
                                     "blocks received in answers to this node's fetches: read, or left unread "
                                     "as stale (already delivered)", ("outcome",)))
    reg.add(CounterView("evledger_replica_events_total",
                        "the replica's own tallies: delivered blocks, retransmit ticks (nothing delivered "
                        "for retransmit_ms with work outstanding), duplicate messages dropped, suspects",
                        "event", lambda: dict(node.replica.stats) if node.replica else {}))
    node.m_append = reg.add(Histogram("evledger_block_append_seconds",
                                      "store write of a group of votes and committed blocks, with its sync (none for appends only)"))
    node.m_group_sync = reg.add(Counter("evledger_write_groups_total",
                                        "write groups, by who waited for the fsync: the event loop "
                                        "(inline, small groups), the writer thread (large ones), or none "
                                        "(block appends only, synced by the next group)", ("sync",)))
    node.m_loop_lag = reg.add(Histogram("evledger_event_loop_lag_seconds",
                                        "how late the event loop runs a timer (sampled every %g s)" % LAG_PROBE_S))
    node.m_gc = reg.add(Histogram("evledger_gc_pause_seconds", "cyclic garbage collections, by generation",
                                  ("generation",)))
    reg.add(CounterView("evledger_peer_frames_dropped_total",
                        "frames to peers dropped, by reason: queue_full (the oldest pushed out), "
                        "not_connected, closed", "reason",
                        lambda: dict(node.transport.stats.dropped) if node.transport else {}))


def _malloc_trim() -> Any:
    try:
        import ctypes

        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


TRIM_EVERY = 120  # probes: every 30 s


class LagProbe:
    """Every LAG_PROBE_S, how much later than asked the loop ran the probe; a WARNING above a second.

    Every TRIM_EVERY probes it also hands memory that malloc holds free back to the
    system (``malloc_trim``): after a burst of large blocks the freed pages would
    otherwise stay resident.
    """

    def __init__(self, histogram: Histogram):
        self.histogram = histogram
        self.handle: asyncio.TimerHandle | None = None
        self.count = 0
        self.trim = _malloc_trim()

    def start(self) -> None:
        self._schedule(time.perf_counter())

    def stop(self) -> None:
        if self.handle is not None:
            self.handle.cancel()
            self.handle = None

    def _schedule(self, now: float) -> None:
        self.handle = asyncio.get_running_loop().call_later(LAG_PROBE_S, self._fire, now)

    def _fire(self, scheduled: float) -> None:
        now = time.perf_counter()
        lag = max(0.0, now - scheduled - LAG_PROBE_S)
        self.histogram.observe(lag)
        if lag > LAG_WARNING_S:
            log.warning("the event loop ran %.1f s late: this node is overloaded", lag)
        self.count += 1
        if self.trim is not None and self.count % TRIM_EVERY == 0:
            self.trim(0)
        self._schedule(time.perf_counter())


class GcTimer:
    """Times each cyclic collection (``gc.callbacks``) into a histogram labelled by generation."""

    def __init__(self, histogram: Histogram):
        self.histogram = histogram
        self.started = 0.0

    def install(self) -> None:
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def remove(self) -> None:
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self.started = time.perf_counter()
        else:
            self.histogram.observe(time.perf_counter() - self.started, str(info.get("generation")))


def memory_report(node: Any) -> str:
    """What holds a node's memory, for the log (``kill -USR1 <pid>``): resident size,
    the bounded structures and their fill, and the most numerous Python objects."""
    from collections import Counter as Tally

    from ledger import derived, model

    rss = "?"
    try:
        with open("/proc/self/statm") as f:
            rss = "%.0f MiB" % (int(f.read().split()[1]) * 4096 / 2**20)
    except OSError:
        pass
    parts = ["rss %s" % rss]
    if getattr(node, "pool", None) is not None:
        parts.append("pool %d items" % len(node.pool))
    parts.append("replay cache %d nonces" % len(node.verifier.replay))
    parts.append("record memo %d KiB" % (model._RECORDS.weight // 1024))
    parts.append("code memo %d items" % derived.CODES.weight)
    parts.append("signature memo %d" % derived.VERIFIED.weight)
    if node.store is not None:
        parts.append("absent codes %d" % len(node.store._absent.keys))
    if node.transport is not None:
        queued = {name: p.queued_bytes for name, p in node.transport._peers.items() if p.queued_bytes}
        parts.append("peer queues %s" % (", ".join("%s %d KiB" % (n, b // 1024) for n, b in queued.items()) or "empty"))
    if node.replica is not None:
        parts.append("replica slots %d, pending requests %d" % (len(node.replica.slots), len(node.replica.requests.pending)))
    parts.append("python blocks %d" % sys.getallocatedblocks())
    heap = _malloc_summary()
    if heap:
        parts.append(heap)
    top = Tally(type(o).__name__ for o in gc.get_objects()).most_common(8)
    parts.append("objects: " + ", ".join("%s %d" % kv for kv in top))
    return "; ".join(parts)


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks", "keepcost")]


def _malloc_summary() -> str:
    """glibc's heap: what it holds from the system, in use and free (free but held is
    fragmentation, not a leak), and what it has mapped for large blocks; "" elsewhere."""
    try:
        mallinfo2 = ctypes.CDLL("libc.so.6").mallinfo2
    except (OSError, AttributeError):  # not glibc, or older than 2.33
        return ""
    mallinfo2.restype = _MallInfo2
    info = mallinfo2()
    mib = 2**20
    return "malloc heap %.0f MiB (in use %.0f, free %.0f), mapped %.0f MiB" % (
        info.arena / mib, info.uordblks / mib, info.fordblks / mib, info.hblkhd / mib)


def configure_logging(level: str, as_json: bool) -> None:
    """Log records to standard error, as text or one JSON object a line."""

    class _Json(logging.Formatter):
        def format(self, record: logging.LogRecord) -> str:
            at = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            doc = {"time": "%s.%03dZ" % (at, int(record.msecs)), "level": record.levelname.lower(),
                   "logger": record.name, "message": record.getMessage()}
            if record.exc_info:
                doc["exception"] = self.formatException(record.exc_info)
            return json.dumps(doc, ensure_ascii=False)

    handler = logging.StreamHandler()
    handler.setFormatter(_Json() if as_json else logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
