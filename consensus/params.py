"""Consensus parameters: the only configuration the replica sees.

All durations are integer milliseconds of the caller's clock (``now`` passed to
``Replica.step``).  ``Params`` is frozen and validated on construction; the node
builds it from its TOML configuration.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

from .errors import Misuse


@dataclass(frozen=True, slots=True)
class Params:
    # Batching (primary): close a block at this many entries / bytes, or when the
    # oldest pending request has waited batch_delay_ms, or at once when no other
    # block is in flight.
    batch_max_entries: int = 500
    batch_max_bytes: int = 1 << 20
    batch_delay_ms: int = 10
    # Pipelining: at most this many proposed-but-undelivered blocks.
    max_in_flight: int = 8
    # Checkpoint every K blocks; watermark window L (TOCS'02 §4.3), L multiple of K.
    checkpoint_interval: int = 64
    watermark_window: int = 128
    # Liveness (TOCS'02 §4.5.2): base view-change timeout, doubled per failed view.
    view_change_timeout_ms: int = 2000
    max_view_change_timeout_ms: int = 60_000
    # Re-send own messages when nothing was delivered for this long.
    retransmit_ms: int = 500
    # Trusted time: |pre-prepare timestamp - now| must be within this bound.
    max_clock_skew_ms: int = 2000
    # Robustness bounds.
    max_message_bytes: int = 8 << 20
    max_pending_requests: int = 100_000
    max_buffered_per_peer: int = 64
    max_view_jump: int = 10_000
    # State transfer.
    fetch_timeout_ms: int = 1000
    fetch_max_blocks: int = 64
    observer_poll_ms: int = 200
    # An idle validator asks a peer for newer blocks this often (catch-up when quiet).
    idle_poll_ms: int = 2000

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if type(value) is not int or value < 1:
                raise Misuse("Params.%s must be a positive int, got %r" % (f.name, value))
        if self.watermark_window % self.checkpoint_interval:
            raise Misuse("watermark_window must be a multiple of checkpoint_interval")
        if self.watermark_window < 2 * self.checkpoint_interval:
            raise Misuse("watermark_window must be at least 2 * checkpoint_interval")
        if self.max_in_flight > self.watermark_window:
            raise Misuse("max_in_flight must not exceed watermark_window")
        if self.max_view_change_timeout_ms < self.view_change_timeout_ms:
            raise Misuse("max_view_change_timeout_ms must be >= view_change_timeout_ms")
