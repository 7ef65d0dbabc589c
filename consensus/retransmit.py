"""Re-sending own messages when nothing was delivered for ``retransmit_ms``.

The transport may lose messages; PBFT recovers by retransmission (TOCS'02 §5.2)
rather than by changing views for every loss.  When the replica has work
outstanding and delivered nothing for ``retransmit_ms``, it re-broadcasts the same
signed bytes it already sent (never re-signing anything new): its VIEW-CHANGE while
changing views; otherwise its pre-prepares, prepares and commits of the current
view above the low watermark, and its latest checkpoint.  Receivers drop exact
duplicates before any signature check, so this is cheap for them.

It also detects lagging: if f+1 other validators sent commits for sequence numbers
this replica cannot deliver (it missed their pre-prepares), it fetches the blocks
(state transfer) from them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import io

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


def retransmit(r: "Replica", now: int) -> None:
    r._count("retransmit")
    if r.in_vc:
        if r.vc.own is not None:
            r.emit(io.Broadcast(r.vc.own))
        return
    for seq in sorted(r.slots):
        slot = r.slots[seq]
        if slot.view != r.view:
            continue
        if slot.pp_bytes is not None and r.is_primary():
            r.emit(io.Broadcast(slot.pp_bytes))
        for votes in (slot.prepares, slot.commits):
            mine = votes.get(r.name)
            if mine is not None and mine[0] == r.view:
                r.emit(io.Broadcast(mine[-1]))
    if r.ckpt.own is not None:
        r.emit(io.Broadcast(r.ckpt.own))
    _detect_lag(r)


def _detect_lag(r: "Replica") -> None:
    nxt = r.slots.get(r.last_delivered + 1)
    if nxt is not None and nxt.tip is not None:
        return
    best, peers = 0, set()
    for seq, slot in r.slots.items():
        senders = {s for s in slot.commits if s != r.name}
        if seq > r.last_delivered and len(senders) >= r.f + 1:
            best = max(best, seq)
            peers |= senders
    if best:
        r.request_transfer(best, sorted(peers))
