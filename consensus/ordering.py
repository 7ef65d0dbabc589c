"""Normal-case ordering: pre-prepare, prepare, commit, deliver (TOCS'02 §4.2).

Theory of operation
-------------------
The primary of view v (``names[v % n]``) cuts a block from pending requests and
broadcasts PRE-PREPARE(v, seq, block); ``seq`` is the block height.  A backup
accepts it when it is in view v, ``low < seq <= high``, the signature is the
primary's, it has not accepted another block for (v, seq), the block extends the
tentative tip of ``seq - 1`` and the application validates it, and the timestamp is
*strictly after the parent's* and within ``max_clock_skew_ms`` of the backup's
``now`` (the block time is the legal deposit time: 2f+1 validators vouch that it was
close to their clocks).  Blocks re-proposed by a NEW-VIEW keep their original
timestamp and are exempt from the clock check (indy-plenum #1488).

Prepared(v, seq) = accepted pre-prepare + ``quorum - 1`` matching prepares from
distinct backups.  A replica sends COMMIT(v, seq, digest, block_sig) only when
``seq`` is prepared *and it has sent COMMIT for ``seq - 1`` in v, or ``seq - 1`` is
committed-local or delivered*: commits go out in sequence order, while pre-prepares
and prepares are pipelined.  This "in-order commit" rule is what makes pipelining
on tentative parents safe: a committed-local block implies that f+1 honest replicas
prepared it *and every uncommitted ancestor* in the same view, so a view change
keeps the whole chain below it and never keeps a block while replacing its parent
(see docs/consensus.md, "chain rule").  (A one-level "prepared parent" rule is not
enough: the simulator found a seed where block 13 committed on a parent 12 whose
own parent 11 was prepared nowhere, and the view change dropped 11..13.)  Committed-local = COMMIT sent + ``quorum``
matching commits in v; their ``block_sig`` form the ``CommitCertificate``.  Blocks
are delivered strictly in height order.

Every signed vote is persisted (``Persist``) before the broadcast that carries it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ledger.block import Block, CommitCertificate
from ledger.codec import encode
from ledger.errors import DecodeError

from . import io
from .requests import request_id
from .errors import AppRejected, InvariantViolation
from .log import Slot, count_prepares, matching_commits
from .messages import Commit, PrePrepare, Prepare, seal, seal_pre_prepare

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


def parent_tip(r: "Replica", seq: int) -> Any:
    if seq - 1 == r.last_delivered:
        return r.tip
    slot = r.slots.get(seq - 1)
    return slot.tip if slot is not None and slot.tip is not None else None


# ----------------------------------------------------------------- primary


def maybe_propose(r: "Replica", now: int) -> None:
    """Cut and pre-prepare as many blocks as batching and the window allow."""
    p = r.params
    queue = r.requests
    while r.can_propose():
        if not queue.waiting:
            return
        seq = r.next_seq()
        # Wait for a fuller block only while another one is in flight: an idle
        # cluster orders a lone request at once (latency), a busy one batches.  A
        # block's worth waiting is cut at once.  Decided from the queue's running
        # totals: this runs on every step of the primary, and building a batch of
        # a few hundred requests only to wait would cost more than the step.
        if (seq > r.last_delivered + 1 and not queue.fills_block(p.batch_max_entries, p.batch_max_bytes)
                and now - queue.oldest_waiting() < p.batch_delay_ms):
            return
        parent = parent_tip(r, seq)
        records = queue.batch(p.batch_max_entries, p.batch_max_bytes)[0]
        parent_ts = parent.header.timestamp if parent.header is not None else -1
        block, tip = r.app.build(parent, records, max(now, parent_ts + 1), r.view, r.name)
        included = {request_id(rec) for rec in block.records}
        for rec in records:
            rid = request_id(rec)
            if rid not in included:
                r.requests.remove(rid)
                r.emit(io.RequestDropped(rid, "rejected"))
        if not block.records:
            continue
        data = seal_pre_prepare(r.view, seq, block, r.name, r.auth)
        r.persist(("pre_prepare/%d" % seq, data))
        r.votes[("pre_prepare", seq)] = (r.view, block.header.hash())
        r.emit(io.Broadcast(data))
        install(r, seq, r.view, data, block, tip, reused=False)


# ----------------------------------------------------------------- backups


def on_pre_prepare(r: "Replica", sender: str, data: bytes, msg: PrePrepare, now: int, reused: bool = False) -> None:
    """A signature-checked pre-prepare for the current view; decode and accept it."""
    try:
        block = Block.from_wire(msg.block_wire)
    except (DecodeError, ValueError, TypeError) as exc:
        r.suspect(sender, "malformed_block: %s" % str(exc)[:80])
        return
    h = block.header
    if h.height != msg.seq:
        r.suspect(sender, "height_mismatch")
        return
    if not reused and (h.view != msg.view or h.proposer != sender):
        r.suspect(sender, "header_view_or_proposer")
        return
    digest = h.hash()
    slot = r.slot(msg.seq)
    if slot.pp_bytes is not None or slot.waiting is not None:
        have = slot.digest if slot.pp_bytes is not None else slot.waiting[2].header.hash()
        if have != digest:
            r.suspect(sender, "equivocation")
            r.start_view_change(r.view + 1, now)
        return
    voted = r.votes.get(("prepare", msg.seq))
    if voted is not None and voted[0] == msg.view and voted[1] != digest:
        r.suspect(sender, "conflicts_with_persisted_vote")
        return
    slot.waiting = (msg.view, data, block, reused)
    advance_waiting(r, msg.seq, now)


def advance_waiting(r: "Replica", seq: int, now: int) -> None:
    """Accept waiting pre-prepares from ``seq`` upward while their parents are known."""
    while True:
        slot = r.slots.get(seq)
        if slot is None or slot.waiting is None:
            return
        parent = parent_tip(r, seq)
        if parent is None:
            return
        view, data, block, reused = slot.waiting
        slot.waiting = None
        if view != r.view or not _accept(r, slot, parent, view, data, block, reused, now):
            return
        seq += 1


def _accept(r: "Replica", slot: Slot, parent: Any, view: int, data: bytes, block: Block, reused: bool,
            now: int) -> bool:
    h = block.header
    primary = r.primary()
    parent_ts = parent.header.timestamp if parent.header is not None else -1
    if h.timestamp <= parent_ts:
        r.suspect(primary, "timestamp_not_after_parent")
        r.start_view_change(r.view + 1, now)
        return False
    if not reused and abs(h.timestamp - now) > r.params.max_clock_skew_ms:
        # Possibly our own clock: not proof of a fault; the progress timer decides.
        r.emit(io.Dropped(primary, "timestamp_outside_clock_skew"))
        return False
    try:
        tip = r.app.validate(parent, block)
    except AppRejected as exc:
        if reused:
            raise InvariantViolation("a quorum-prepared block is rejected by the application: %s" % exc)
        r.suspect(primary, "invalid_block: %s" % exc.reason)
        r.start_view_change(r.view + 1, now)
        return False
    install(r, slot.seq, view, data, block, tip, reused)
    if r.name != primary:
        send_prepare(r, slot)
    return True


def install(r: "Replica", seq: int, view: int, data: bytes, block: Block, tip: Any, reused: bool) -> None:
    slot = r.slot(seq)
    if slot.committed and slot.digest != block.header.hash():
        raise InvariantViolation("view %d re-proposes another block at committed seq %d" % (view, seq))
    slot.view, slot.pp_bytes, slot.block, slot.tip, slot.reused = view, data, block, tip, reused
    slot.digest = block.header.hash()
    slot.waiting = None
    for rec in block.records:
        r.requests.proposed(request_id(rec))
    check_prepared(r, slot)


def send_prepare(r: "Replica", slot: Slot) -> None:
    voted = r.votes.get(("prepare", slot.seq))
    if voted is not None and voted[0] == slot.view and voted[1] != slot.digest:
        return  # never sign a conflicting vote (TOCS'02 §4.2, persisted across crashes)
    data = seal(Prepare(slot.view, slot.seq, slot.digest), r.name, r.auth)
    r.persist(("prepare/%d" % slot.seq, data))
    r.votes[("prepare", slot.seq)] = (slot.view, slot.digest)
    r.emit(io.Broadcast(data))
    slot.prepares[r.name] = (slot.view, slot.digest, data)
    check_prepared(r, slot)


def on_prepare(r: "Replica", sender: str, data: bytes, msg: Prepare) -> None:
    slot = r.slot(msg.seq)
    slot.prepares[sender] = (msg.view, msg.digest, data)
    check_prepared(r, slot)


def check_prepared(r: "Replica", slot: Slot) -> None:
    if slot.prepared or slot.tip is None or slot.view != r.view:
        return
    prepares = count_prepares(slot, r.primary())
    if len(prepares) < r.q - 1:
        return
    slot.prepared = True
    r.prepared_certs[slot.seq] = (slot.view, slot.digest, slot.pp_bytes, tuple(prepares[: r.q - 1]), slot.block)
    try_commit(r, slot.seq)


def _parent_ok(r: "Replica", seq: int) -> bool:
    if seq - 1 <= r.last_delivered:
        return True
    parent = r.slots.get(seq - 1)
    return parent is not None and (parent.committed or (parent.sent_commit and parent.view == r.view))


def try_commit(r: "Replica", seq: int) -> None:
    """Send COMMIT for ``seq`` and its prepared successors, in order (the in-order commit rule)."""
    while True:
        slot = r.slots.get(seq)
        if slot is None or not slot.prepared or slot.sent_commit or not _parent_ok(r, seq):
            return
        voted = r.votes.get(("commit", seq))
        if voted is not None and voted[0] == slot.view and voted[1] != slot.digest:
            return
        view, digest, pp, prepares, _ = r.prepared_certs[seq]
        block_sig = r.auth.sign_block(slot.block.header)
        data = seal(Commit(slot.view, seq, slot.digest, block_sig), r.name, r.auth)
        r.persist(("prepared/%d" % seq, encode([view, digest, pp, list(prepares)])), ("commit/%d" % seq, data))
        r.votes[("commit", seq)] = (slot.view, slot.digest)
        r.emit(io.Broadcast(data))
        slot.sent_commit = True
        slot.commits[r.name] = (slot.view, slot.digest, block_sig, data)
        check_committed(r, slot)
        seq += 1


def on_commit(r: "Replica", sender: str, data: bytes, msg: Commit) -> None:
    slot = r.slot(msg.seq)
    slot.commits[sender] = (msg.view, msg.digest, msg.block_sig, data)
    check_committed(r, slot)


def check_committed(r: "Replica", slot: Slot) -> None:
    if slot.committed:
        try_deliver(r)
        return
    if not slot.sent_commit:
        return
    sigs = matching_commits(slot)
    if len(sigs) < r.q:
        return
    slot.certificate = CommitCertificate(slot.digest, tuple(sigs))
    try_deliver(r)
    try_commit(r, slot.seq + 1)


def try_deliver(r: "Replica") -> None:
    """Deliver committed-local blocks in height order."""
    while True:
        slot = r.slots.get(r.last_delivered + 1)
        if slot is None or not slot.committed:
            return
        head = r.tip.header
        if slot.block.header.prev_hash != (head.hash() if head is not None else bytes(32)):
            raise InvariantViolation("committed block %d does not extend the delivered chain" % slot.seq)
        r.deliver(slot.block, slot.certificate, slot.tip)
