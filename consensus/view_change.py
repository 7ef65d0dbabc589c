"""View changes: VIEW-CHANGE, NEW-VIEW and the selection rule (TOCS'02 §4.4, §4.5.2).

Theory of operation
-------------------
A backup whose progress timer expires (work outstanding, nothing delivered for
``timeout(k)``) first *complains*: it broadcasts COMPLAINT(v, last delivered) and
keeps working in view ``v``, re-complaining every ``timeout(k)`` while it stays
stuck.  It moves to view ``v + 1`` once f+1 replicas (itself included) complain
about ``v`` from at least as far as it got — so at least one correct replica is
stuck where it is stuck.  A complaint from behind our own delivered height does not
count: the chain moved on after it.  One starved or partitioned replica therefore
no longer leaves the protocol on its own (which left the cluster one fault from
stopping until the next real view change); a dead primary still costs only one
message delay more.  Its VIEW-CHANGE carries the f+1 complaints, and a replica
still in ``v`` that receives it follows (``join_justified``): replicas at different
heights count differently, and without this one of them could still end up alone.
A replica that holds proof that the primary is faulty (an invalid or equivocating
pre-prepare) moves at once.  Moving to ``v + 1`` means: it stops accepting
normal-case messages, persists and broadcasts VIEW-CHANGE(v+1, stable checkpoint +
proof, prepared certificates above it, complaints).  ``timeout(k) = base * 2**k``
where ``k`` counts view changes since the last view that delivered a checkpoint
interval of blocks, so it backs off exponentially and resets after real progress.  As in the paper, the view-change timer only starts once a quorum
of VIEW-CHANGEs for the view is in (a lone replica waits instead of running ahead in
views, polygon-edge #187), and a replica that sees f+1 VIEW-CHANGEs for higher views
joins the smallest of them (§4.5.2).  A replica that is in an older view and sends
a VIEW-CHANGE gets the current NEW-VIEW in reply, which lets it catch up.

The new primary, holding ``quorum`` VIEW-CHANGEs, computes (and every backup
recomputes from the same messages):

* ``min_s`` = highest stable checkpoint among them (each carries its proof of
  ``quorum`` signed CHECKPOINTs, so it cannot be invented — indy-plenum #1506);
* for ``s = min_s + 1, ...``: the prepared certificate with the highest view at
  ``s``, kept *only while its block extends the block kept at ``s - 1``* (the chain
  rule).  The first sequence number without such a certificate ends the list: by
  the in-order commit rule of ordering nothing at or beyond it can have committed,
  so no null blocks are needed and the new primary simply continues from there.

NEW-VIEW carries the VIEW-CHANGEs and one new pre-prepare per kept block.  Kept
blocks keep their header (original view, proposer and timestamp) and are not
subjected to the clock check again (indy-plenum #1488).  A replica behind
``min_s`` first fetches the missing blocks (state transfer), then installs the view.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger.block import ZERO_HASH, Block
from ledger.codec import encode
from ledger.errors import DecodeError, SignatureError

from . import checkpoint, io, ordering
from .requests import request_id
from .errors import InvariantViolation, PeerFault
from .log import reset_for_view
from .messages import Complaint, NewView, ViewChange, open_signed, seal, seal_pre_prepare

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


@dataclass(frozen=True, slots=True)
class VCInfo:
    sender: str
    view: int
    stable_seq: int
    stable_digest: bytes
    certs: dict  # seq -> (view, digest, block)
    proof: tuple = ()  # the checkpoint envelopes proving (stable_seq, stable_digest)


@dataclass(slots=True)
class ViewChangeState:
    votes: dict[str, tuple[int, bytes, VCInfo]] = field(default_factory=dict)  # sender -> (view, env, info)
    own: bytes | None = None          # our VIEW-CHANGE for the current view
    new_view: bytes | None = None     # NEW-VIEW that installed the current view (or the one we sent)
    deadline: int | None = None       # view-change timer (armed after a quorum of VIEW-CHANGEs)
    deferred: tuple | None = None     # NEW-VIEW waiting for state transfer
    replied: dict[str, int] = field(default_factory=dict)  # sender -> view we answered with NEW-VIEW
    complaints: dict[str, tuple[int, int, bytes]] = field(default_factory=dict)  # sender -> (view, seq, envelope)
    complained_at: int | None = None  # when we last complained in the current view

    def size(self) -> int:
        return len(self.votes) + len(self.replied) + len(self.complaints)


def timeout(r: "Replica") -> int:
    p = r.params
    return min(p.view_change_timeout_ms << min(r.failed_views, 30), p.max_view_change_timeout_ms)


def progress_deadline(r: "Replica") -> int | None:
    """When the progress timer fires next: ``timeout`` after the later of the last
    delivery (or the work arriving) and our last complaint in this view."""
    if r.work_since is None:
        return None
    return max(r.work_since, r.vc.complained_at or 0) + timeout(r)


def complain(r: "Replica", now: int) -> None:
    """Our progress timer expired: tell the others, and count ourselves."""
    st = r.vc
    st.complained_at = now
    data = seal(Complaint(r.view, r.last_delivered), r.name, r.auth)
    st.complaints[r.name] = (r.view, r.last_delivered, data)
    r.emit(io.Complained(r.view, now - r.work_since if r.work_since is not None else 0))
    r.emit(io.Broadcast(data))
    _count_complaints(r, now)


def on_complaint(r: "Replica", sender: str, data: bytes, msg: Complaint, now: int) -> None:
    held = r.vc.complaints.get(sender)
    if held is None or (msg.view, msg.seq) > held[:2]:
        r.vc.complaints[sender] = (msg.view, msg.seq, data)
    _count_complaints(r, now)


def _count_complaints(r: "Replica", now: int) -> None:
    """f+1 complaints about this view from at least our delivered height: change view,
    carrying those complaints so that the others follow (``join_justified``)."""
    if r.in_vc:
        return
    stuck = sorted((s, c[2]) for s, c in r.vc.complaints.items() if c[0] == r.view and c[1] >= r.last_delivered)
    if len(stuck) >= r.f + 1:
        reason = "progress_timeout" if any(s == r.name for s, _ in stuck) else "complaints"
        start_view_change(r, r.view + 1, now, reason, tuple(d for _, d in stuck[: r.f + 1]))


def join_justified(r: "Replica", msg: ViewChange, now: int) -> None:
    """A VIEW-CHANGE to ``view + 1`` carrying f+1 signed complaints about our view: at
    least one correct replica was stuck in it, so we move too — otherwise the sender
    could sit alone in the next view (each replica counts complaints from its own
    height, so two can disagree).  Like a HotStuff timeout certificate.  A Byzantine
    replica holding an old correct complaint can force at most one extra view change
    per view in which a correct replica complained."""
    if r.in_vc or msg.new_view != r.view + 1 or len(msg.complaints) < r.f + 1:
        return
    senders = set()
    try:
        for data in msg.complaints:
            env, c = open_signed(data, r.auth, r.params.max_message_bytes, "complaint")
            if c.view != r.view:
                raise PeerFault("VIEW-CHANGE justified by a complaint about another view", reason="bad_view_change")
            senders.add(env.sender)
    except (DecodeError, SignatureError) as exc:
        raise PeerFault("view-change complaints: %s" % str(exc)[:120], reason="bad_view_change") from None
    if len(senders) >= r.f + 1:
        start_view_change(r, msg.new_view, now, "complaints", msg.complaints)


def start_view_change(r: "Replica", new_view: int, now: int, reason: str = "primary_fault",
                      complaints: tuple[bytes, ...] = ()) -> None:
    if not r.validator or new_view <= r.view:
        return
    waited = now - r.work_since if r.work_since is not None else 0
    r.emit(io.ViewChangeStarted(new_view, reason, waited))
    r.view, r.in_vc = new_view, True
    r.failed_views += 1
    st = r.vc
    st.deadline, st.deferred, st.complained_at = None, None, None
    st.complaints = {s: c for s, c in st.complaints.items() if c[0] >= new_view}
    reset_for_view(r.slots, new_view)
    r.requests.reset_proposed(())
    stable = r.ckpt.stable_seq
    certs = {s: c for s, c in r.prepared_certs.items() if s > stable}
    prepared = tuple((certs[s][2], certs[s][3]) for s in sorted(certs))
    msg = ViewChange(new_view, stable, r.ckpt.stable_digest, r.ckpt.proof, prepared, complaints)
    data = seal(msg, r.name, r.auth)
    r.persist(("view", encode([new_view, 1])), ("view_change", data))
    st.own = data
    r.emit(io.Broadcast(data))
    info = VCInfo(r.name, new_view, stable, r.ckpt.stable_digest,
                  {s: (c[0], c[1], c[4]) for s, c in certs.items()})
    st.votes[r.name] = (new_view, data, info)
    _progress(r, now)


def on_view_change(r: "Replica", sender: str, data: bytes, msg: ViewChange, now: int) -> None:
    info = verify_view_change(r, sender, msg)
    r.vc.votes[sender] = (msg.new_view, data, info)
    adopt_stable(r, info)
    join_justified(r, msg, now)
    _progress(r, now)


def _progress(r: "Replica", now: int) -> None:
    """Apply the f+1 join rule, arm the timer at a quorum, let the new primary act."""
    higher = sorted((v for s, (v, _, _) in r.vc.votes.items() if s != r.name and v > r.view), reverse=True)
    if len(higher) >= r.f + 1:
        start_view_change(r, higher[r.f], now, "joined")
        return
    if not r.in_vc:
        return
    # The timer starts once a quorum is changing views to this view *or a later one*:
    # replicas scattered over views v and v+1 must not wait for each other forever.
    changing = sum(1 for v, _, _ in r.vc.votes.values() if v >= r.view)
    if changing >= r.q and r.vc.deadline is None:
        r.vc.deadline = now + timeout(r)
    if r.primary() == r.name:
        try_new_view(r, now)


def verify_view_change(r: "Replica", sender: str, msg: ViewChange) -> VCInfo:
    """Check the checkpoint proof and every prepared certificate; raise PeerFault."""
    try:
        _verify_checkpoint_proof(r, msg)
        certs: dict[int, tuple[int, bytes, Block]] = {}
        for pp_bytes, prepares in msg.prepared:
            seq, cert = _verify_prepared(r, msg, pp_bytes, prepares)
            if seq in certs:
                raise PeerFault("two prepared certificates for seq %d" % seq, reason="bad_view_change")
            certs[seq] = cert
    except (DecodeError, SignatureError) as exc:
        raise PeerFault("view-change: %s" % str(exc)[:120], reason="bad_view_change") from None
    return VCInfo(sender, msg.new_view, msg.stable_seq, msg.stable_digest, certs, msg.checkpoint_proof)


def adopt_stable(r: "Replica", info: VCInfo) -> None:
    """A VIEW-CHANGE proves its stable checkpoint (``quorum`` signed CHECKPOINTs): a
    replica that missed those votes adopts it.  Without this, a replica that delivered
    past a checkpoint it never saw become stable (it restarted, or caught up by state
    transfer while a peer was silent) keeps its high watermark there and buffers every
    later block for ever, and one more silent peer stops the cluster (simulator seed 458)."""
    if info.stable_seq > r.ckpt.stable_seq:
        checkpoint.make_stable(r, info.stable_seq, info.stable_digest, info.proof)


def _verify_checkpoint_proof(r: "Replica", msg: ViewChange) -> None:
    if msg.stable_seq == 0:
        if msg.stable_digest != ZERO_HASH or msg.checkpoint_proof:
            raise PeerFault("genesis checkpoint carries a proof", reason="bad_view_change")
        return
    senders = set()
    for env_bytes in msg.checkpoint_proof:
        env, ck = open_signed(env_bytes, r.auth, r.params.max_message_bytes, "checkpoint")
        if (ck.seq, ck.digest) != (msg.stable_seq, msg.stable_digest):
            raise PeerFault("checkpoint proof for another checkpoint", reason="bad_view_change")
        senders.add(env.sender)
    if len(senders) < r.q:
        raise PeerFault("checkpoint proof has %d signers" % len(senders), reason="bad_view_change")


def _verify_prepared(r: "Replica", msg: ViewChange, pp_bytes: bytes, prepares: tuple) -> tuple[int, tuple]:
    env, pp = open_signed(pp_bytes, r.auth, r.params.max_message_bytes, "pre_prepare")
    if pp.view >= msg.new_view or env.sender != r.primary(pp.view):
        raise PeerFault("prepared certificate from a wrong view or primary", reason="bad_view_change")
    if not msg.stable_seq < pp.seq <= msg.stable_seq + r.params.watermark_window:
        raise PeerFault("prepared certificate outside the watermarks", reason="bad_view_change")
    block = Block.from_wire(pp.block_wire)
    if block.header.height != pp.seq:
        raise PeerFault("prepared block height mismatch", reason="bad_view_change")
    digest = block.header.hash()
    senders = set()
    for prep_bytes in prepares:
        penv, prep = open_signed(prep_bytes, r.auth, r.params.max_message_bytes, "prepare")
        if (prep.view, prep.seq, prep.digest) != (pp.view, pp.seq, digest) or penv.sender == env.sender:
            raise PeerFault("prepare does not match its pre-prepare", reason="bad_view_change")
        senders.add(penv.sender)
    if len(senders) < r.q - 1:
        raise PeerFault("prepared certificate with %d prepares" % len(senders), reason="bad_view_change")
    return pp.seq, (pp.view, digest, block)


def select(r: "Replica", infos: list[VCInfo]) -> tuple[int, bytes, list[tuple[int, bytes, Block]]]:
    """The NEW-VIEW computation: (min_s, its digest, blocks kept above it in order)."""
    min_s, min_digest = 0, ZERO_HASH
    for info in infos:
        if info.stable_seq > min_s:
            min_s, min_digest = info.stable_seq, info.stable_digest
    for info in infos:
        if info.stable_seq == min_s and info.stable_digest != min_digest:
            raise InvariantViolation("two stable checkpoints at seq %d" % min_s)
    best: dict[int, tuple[int, bytes, Block]] = {}
    for info in infos:
        for seq, cert in info.certs.items():
            if seq > min_s and (seq not in best or cert[0] > best[seq][0]):
                best[seq] = cert
    kept = []
    prev, seq = min_digest, min_s + 1
    while seq in best and best[seq][2].header.prev_hash == prev:
        _, digest, block = best[seq]
        kept.append((seq, digest, block))
        prev, seq = digest, seq + 1
    return min_s, min_digest, kept


def _check_against_delivered(r: "Replica", min_s: int, min_digest: bytes, kept: list) -> None:
    if min_s <= r.last_delivered and min_s in r.hashes and r.hashes[min_s] != min_digest:
        raise InvariantViolation("stable checkpoint %d conflicts with the delivered chain" % min_s)
    for seq, digest, _ in kept:
        if seq <= r.last_delivered and seq in r.hashes and r.hashes[seq] != digest:
            raise InvariantViolation("view change would replace delivered block %d" % seq)


def try_new_view(r: "Replica", now: int) -> None:
    view = r.view
    votes = sorted((s, d, i) for s, (v, d, i) in r.vc.votes.items() if v == view)
    if len(votes) < r.q:
        return
    chosen = [votes_i for votes_i in votes if votes_i[0] == r.name] + [x for x in votes if x[0] != r.name]
    chosen = chosen[: r.q]
    infos = [i for _, _, i in chosen]
    min_s, min_digest, kept = select(r, infos)
    if r.last_delivered < min_s:
        r.request_transfer(min_s, [i.sender for i in infos if i.stable_seq == min_s and i.sender != r.name])
        return
    _check_against_delivered(r, min_s, min_digest, kept)
    pps = [(seq, seal_pre_prepare(view, seq, block, r.name, r.auth), block) for seq, _, block in kept]
    data = seal(NewView(view, tuple(d for _, d, _ in chosen), tuple(p for _, p, _ in pps)), r.name, r.auth)
    r.persist(("new_view", data))
    r.emit(io.Broadcast(data))
    enter_view(r, view, data, pps, now)


def on_new_view(r: "Replica", sender: str, data: bytes, msg: NewView, now: int) -> None:
    """A signature-checked NEW-VIEW from the primary of ``msg.view``."""
    infos, seen = [], set()
    known = {d: i for _, d, i in r.vc.votes.values()}
    try:
        for vc_bytes in msg.view_changes:
            info = known.get(vc_bytes)
            if info is None:
                env, vc = open_signed(vc_bytes, r.auth, r.params.max_message_bytes, "view_change")
                info = verify_view_change(r, env.sender, vc)
            adopt_stable(r, info)
            if info.view != msg.view or info.sender in seen:
                raise PeerFault("NEW-VIEW carries a wrong or repeated VIEW-CHANGE", reason="bad_new_view")
            seen.add(info.sender)
            infos.append(info)
        if len(infos) < r.q:
            raise PeerFault("NEW-VIEW with too few VIEW-CHANGEs", reason="bad_new_view")
        min_s, min_digest, kept = select(r, infos)
        pps = _check_pre_prepares(r, msg, kept)
    except (DecodeError, SignatureError) as exc:
        raise PeerFault("NEW-VIEW: %s" % str(exc)[:120], reason="bad_new_view") from None
    if r.last_delivered < min_s:
        r.vc.deferred = (sender, data, msg)
        r.request_transfer(min_s, [i.sender for i in infos if i.stable_seq == min_s and i.sender != r.name])
        return
    _check_against_delivered(r, min_s, min_digest, kept)
    r.persist(("new_view", data))
    enter_view(r, msg.view, data, pps, now)


def _check_pre_prepares(r: "Replica", msg: NewView, kept: list) -> list[tuple[int, bytes, Block]]:
    if len(msg.pre_prepares) != len(kept):
        raise PeerFault("NEW-VIEW re-proposes the wrong set", reason="bad_new_view")
    out = []
    for pp_bytes, (seq, digest, block) in zip(msg.pre_prepares, kept):
        env, pp = open_signed(pp_bytes, r.auth, r.params.max_message_bytes, "pre_prepare")
        if env.sender != r.primary(msg.view) or pp.view != msg.view or pp.seq != seq:
            raise PeerFault("NEW-VIEW pre-prepare for a wrong view or seq", reason="bad_new_view")
        if encode(pp.block_wire) != block.encode():
            raise PeerFault("NEW-VIEW re-proposes another block", reason="bad_new_view")
        out.append((seq, pp_bytes, block))
    return out


def enter_view(r: "Replica", view: int, nv_bytes: bytes, pps: list[tuple[int, bytes, Any]], now: int) -> None:
    """Install ``view`` and the re-proposed blocks; resume normal operation."""
    if view != r.view or r.in_vc:
        reset_for_view(r.slots, view)
    r.view, r.in_vc = view, False
    r.view_base = r.last_delivered
    st = r.vc
    st.deadline, st.deferred, st.new_view, st.own = None, None, nv_bytes, None
    st.votes = {s: v for s, v in st.votes.items() if v[0] > view}
    st.complaints = {s: c for s, c in st.complaints.items() if c[0] >= view}
    st.complained_at = None
    st.replied.clear()
    r.persist(("view", encode([view, 0])))
    r.requests.reset_proposed(request_id(rec) for s in r.slots.values() if s.committed for rec in s.block.records)
    r.work_since = now
    r.emit(io.ViewChanged(view, r.primary()))
    first = None
    for seq, pp_bytes, block in pps:
        if seq <= max(r.last_delivered, r.ckpt.stable_seq):
            continue
        r.slot(seq).waiting = (view, pp_bytes, block, True)
        r.votes.setdefault(("pre_prepare", seq), (view, block.header.hash()))
        first = seq if first is None else first
    if first is not None:
        ordering.advance_waiting(r, first, now)
    r.replay_buffers()


def stale_view_change(r: "Replica", sender: str, new_view: int) -> None:
    """A peer in an older view asks for a view change: send it our NEW-VIEW once."""
    st = r.vc
    if st.new_view is None or r.in_vc or st.replied.get(sender, -1) >= new_view:
        return
    st.replied[sender] = new_view
    r.emit(io.Send(sender, st.new_view))


def retry_deferred(r: "Replica", now: int) -> None:
    if r.vc.deferred is not None and r.last_delivered >= 0:
        sender, data, msg = r.vc.deferred
        r.vc.deferred = None
        if msg.view >= r.view:
            on_new_view(r, sender, data, msg, now)
    elif r.in_vc and r.primary() == r.name:
        try_new_view(r, now)
