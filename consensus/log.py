"""The message log: one :class:`Slot` per sequence number inside the watermarks.

A slot holds what the replica knows about one sequence number (block height) in
its *current* view: the accepted pre-prepare and its block, the tentative
application tip after that block, the prepares and commits received, and whether
it is prepared / committed-local (TOCS'02 §4.2).  Votes for other views are not
kept here: older ones are dropped, newer ones wait in the per-peer future buffers.
When the view changes, :func:`reset_for_view` clears everything except slots that
are committed-local, whose block and certificate survive every later view.

The log is bounded: slots exist only for ``low_watermark < seq <= high_watermark``
and are discarded when a checkpoint becomes stable (:func:`discard_below`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ledger.block import Block, CommitCertificate


@dataclass(slots=True)
class Slot:
    seq: int
    view: int = -1                       # view of the accepted pre-prepare
    pp_bytes: bytes | None = None        # envelope of the accepted pre-prepare
    block: Block | None = None
    digest: bytes | None = None          # header hash of ``block``
    tip: Any = None                      # application tip after ``block``
    reused: bool = False                 # re-proposed by a NEW-VIEW (no clock check)
    waiting: tuple | None = None         # (view, pp_bytes, block, reused) until the parent is known
    prepares: dict[str, tuple[int, bytes, bytes]] = field(default_factory=dict)  # sender -> (view, digest, env)
    commits: dict[str, tuple[int, bytes, bytes, bytes]] = field(default_factory=dict)  # -> (view, digest, sig, env)
    prepared: bool = False
    sent_commit: bool = False
    certificate: CommitCertificate | None = None  # set when committed-local

    @property
    def committed(self) -> bool:
        return self.certificate is not None

    def accepted(self) -> bool:
        return self.tip is not None


def reset_for_view(slots: dict[int, Slot], view: int) -> None:
    """Forget view-specific state of every slot that is not committed-local."""
    for seq in list(slots):
        slot = slots[seq]
        if slot.committed:
            # Keep block, tip and certificate; vote again if the new view re-proposes it.
            slot.view, slot.pp_bytes, slot.waiting, slot.reused = -1, None, None, True
            slot.prepares.clear()
            slot.commits.clear()
            slot.prepared = slot.sent_commit = False
            continue
        del slots[seq]


def discard_below(slots: dict[int, Slot], seq: int) -> None:
    """Garbage-collect every slot at or below a stable checkpoint (TOCS'02 §4.3)."""
    for s in [s for s in slots if s <= seq]:
        del slots[s]


def count_prepares(slot: Slot, primary: str) -> list[bytes]:
    """Envelopes of prepares matching the accepted pre-prepare, from backups only."""
    return [env for sender, (v, d, env) in sorted(slot.prepares.items())
            if v == slot.view and d == slot.digest and sender != primary]


def matching_commits(slot: Slot) -> list[tuple[str, bytes]]:
    return [(sender, sig) for sender, (v, d, sig, _) in sorted(slot.commits.items())
            if v == slot.view and d == slot.digest]
