"""Re-sending own messages when nothing was delivered for ``retransmit_ms``.

The transport may lose messages; PBFT recovers by retransmission (TOCS'02 §5.2)
rather than by changing views for every loss.  When the replica has work
outstanding and delivered nothing for ``retransmit_ms``, it re-broadcasts the same
signed bytes it already sent (never re-signing anything new): its VIEW-CHANGE while
changing views; otherwise its pre-prepares, prepares and commits of the current
view above the low watermark, and its latest checkpoint.  Receivers drop exact
duplicates before any signature check, so this is cheap for them.

A stalled replica may simply be behind (it missed pre-prepares or commits that the
others no longer resend because they delivered): each stalled tick it also asks the
next peer in turn for certified blocks after its head (``state_transfer.poll``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import io, state_transfer

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


def retransmit(r: "Replica", now: int) -> None:
    r._count("retransmit")
    state_transfer.poll(r, now)
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
