"""Checkpoints, stable checkpoints and watermarks (TOCS'02 §4.3).

After delivering block ``seq`` with ``seq % K == 0`` a validator broadcasts
CHECKPOINT(seq, digest) where the state digest is the block's header hash (the
header commits to the whole history tree, so it *is* the state digest).  ``quorum``
matching checkpoints from distinct validators form the stable-checkpoint proof; the
replica then sets ``low_watermark = seq``, discards log slots, prepared
certificates, checkpoint votes and persisted votes at or below it, and keeps the
proof for its VIEW-CHANGE messages.  Memory is therefore bounded by the window L
however long the chain runs.

Votes are kept per sender, at most ``L/K + 2`` sequence numbers each, so a peer
cannot grow them (celo #183).  A stable proof for a sequence beyond what this
replica has delivered means it is behind: it starts a state transfer (§5.3.2).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.block import ZERO_HASH
from ledger.codec import encode

from . import io
from .messages import Checkpoint, seal

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


@dataclass(slots=True)
class CheckpointState:
    stable_seq: int = 0
    stable_digest: bytes = ZERO_HASH
    proof: tuple[bytes, ...] = ()
    votes: dict[int, dict[str, tuple[bytes, bytes]]] = field(default_factory=dict)  # seq -> sender -> (digest, env)
    own: bytes | None = None  # last CHECKPOINT we sent (retransmitted)

    def size(self) -> int:
        return sum(len(v) for v in self.votes.values())


def on_delivered(r: "Replica", seq: int, digest: bytes) -> None:
    """Called after delivering ``seq``: send our checkpoint every K blocks.

    A checkpoint vouches that our store holds the blocks up to ``seq``: once 2f+1 of
    them make it stable, every replica discards its certificates below it, and the
    blocks live only in stores.  The node does not sync an append on its own
    (``consensus/io.py``), so an empty ``Persist`` goes first: its sync makes the
    appends durable before the vote leaves (and again after a restart, which may
    find an append the process wrote but no sync covered)."""
    if seq % r.params.checkpoint_interval or not r.validator:
        return
    data = seal(Checkpoint(seq, digest), r.name, r.auth)
    r.ckpt.own = data
    r.persist()
    r.emit(io.Broadcast(data))
    add_vote(r, r.name, seq, digest, data)


def admissible(r: "Replica", seq: int) -> str | None:
    """Cheap check before the signature: ``None`` or the reason to drop."""
    if seq % r.params.checkpoint_interval:
        return "checkpoint_not_at_interval"
    if seq <= r.ckpt.stable_seq:
        return "stale_checkpoint"
    return None


def add_vote(r: "Replica", sender: str, seq: int, digest: bytes, data: bytes) -> None:
    st = r.ckpt
    per_seq = st.votes.setdefault(seq, {})
    if sender in per_seq:
        return
    per_seq[sender] = (digest, data)
    _bound_sender(r, sender)
    matching = [env for d, env in per_seq.values() if d == digest]
    if len(matching) >= r.q:
        make_stable(r, seq, digest, tuple(sorted(matching)[: r.q]))


def _bound_sender(r: "Replica", sender: str) -> None:
    limit = r.params.watermark_window // r.params.checkpoint_interval + 2
    mine = sorted(s for s, votes in r.ckpt.votes.items() if sender in votes)
    for s in mine[: max(0, len(mine) - limit)]:
        del r.ckpt.votes[s][sender]
        if not r.ckpt.votes[s]:
            del r.ckpt.votes[s]


def make_stable(r: "Replica", seq: int, digest: bytes, proof: tuple[bytes, ...]) -> None:
    """Adopt a proven stable checkpoint: move the low watermark and discard below it."""
    st = r.ckpt
    if seq <= st.stable_seq:
        return
    st.stable_seq, st.stable_digest, st.proof = seq, digest, proof
    for s in [s for s in st.votes if s <= seq]:
        del st.votes[s]
    # The new stable checkpoint and the deletions below it in one atomic Persist: two
    # would let a power cut keep the deletions and lose the checkpoint (found in review).
    r.discard_below(seq, ("stable", encode([seq, digest, list(proof)])))
    if r.last_delivered < seq:
        senders = sorted({_sender_of(r, env) for env in proof} - {r.name})
        r.request_transfer(seq, senders)
    r.on_window_moved()


def _sender_of(r: "Replica", env: bytes) -> str:
    from .messages import open_envelope

    return open_envelope(env, r.params.max_message_bytes).sender
