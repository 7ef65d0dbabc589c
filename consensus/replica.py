"""The PBFT replica: ``step(event, now) -> list[Action]`` and ``next_deadline()``.

Theory of operation
-------------------
The replica is a deterministic state machine.  It never reads a clock, draws a
random number or performs I/O: the node feeds it events with the current time and
executes the returned actions in order (the contract is in ``consensus.io``).
Same events + same times => same actions, which is what the simulator relies on.

Each phase lives in its own module and owns its part of the state:
``ordering`` (the log of slots), ``checkpoint`` (``CheckpointState``),
``view_change`` (``ViewChangeState``), ``state_transfer`` (``TransferState``),
``requests`` (``RequestQueue``).  This module only dispatches and enforces the
rules common to every message, cheapest first (celo #183, CometBFT ASA-2025-002):

1. size bound, envelope decoding, the transport sender must equal the signer,
   the signer must be a validator;
2. view and sequence windows: older views and sequence numbers at or below the
   low watermark are dropped; a later view (up to ``max_view_jump``) or a sequence
   number beyond the high watermark (up to one window) is kept in a bounded
   per-peer buffer and replayed when the view or window moves; anything further is
   dropped;
3. duplicates (same sender, kind, view, seq) are dropped without verification;
4. only then the signature is verified, then nested contents (blocks, proofs).

A peer fault is reported as ``Suspect``/``Dropped`` and never raises out of
``step``; caller misuse raises ``Misuse``; an impossible state raises
``InvariantViolation``.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Mapping

from ledger.block import Block, CommitCertificate
from ledger.errors import DecodeError, SignatureError

from . import checkpoint, io, ordering, state_transfer, view_change
from .checkpoint import CheckpointState
from .requests import request_id
from .errors import Misuse, PeerFault
from .log import Slot, discard_below
from .messages import (CONTEXT, Checkpoint, Commit, Complaint, NewView, PrePrepare, Prepare, ViewChange, open_envelope,
                       parse_body)
from .params import Params
from .requests import RequestQueue
from .state_transfer import TransferState
from .view_change import ViewChangeState

BUFFER, DUPLICATE = "buffer", "duplicate"


class Replica:
    """One PBFT replica (validator) or observer.  See the module docstring."""

    def __init__(self, name: str, auth: Any, app: Any, tip: Any, params: Params | None = None,
                 persisted: Mapping[str, bytes] | None = None):
        self.name, self.auth, self.app = name, auth, app
        self.params = params or Params()
        self.names: tuple[str, ...] = tuple(auth.names)
        self.n, self.f, self.q = len(self.names), (len(self.names) - 1) // 3, auth.quorum
        self.validator = name in self.names
        self.view, self.in_vc, self.failed_views = 0, False, 0
        self.view_base = tip.height  # last delivered height when the current view was entered
        self.tip, self.last_delivered = tip, tip.height
        self.hashes: dict[int, bytes] = {}
        if tip.header is not None:
            self.hashes[tip.height] = tip.header.hash()
        self.slots: dict[int, Slot] = {}
        self.prepared_certs: dict[int, tuple] = {}  # seq -> (view, digest, pp, prepares, block)
        self.votes: dict[tuple[str, int], tuple[int, bytes]] = {}  # own (phase, seq) -> (view, digest)
        self.requests = RequestQueue(self.params.max_pending_requests)
        self.ckpt, self.vc, self.xfer = CheckpointState(), ViewChangeState(), TransferState()
        self.buffers: dict[str, deque] = {}
        self.now = 0
        self.work_since: int | None = None
        self.last_retransmit = 0
        self.stats: dict[str, int] = {}
        self.out: list = []
        self._replay = False
        self._restored_pps: list[tuple[bytes, bool]] = []  # (own pre-prepare, re-proposed by NEW-VIEW)
        self._timer: int | None = None
        if persisted:
            from .recovery import restore

            restore(self, persisted)

    # ------------------------------------------------------------ helpers used by phases

    def primary(self, view: int | None = None) -> str:
        return self.names[(self.view if view is None else view) % self.n]

    def is_primary(self) -> bool:
        return self.validator and self.primary() == self.name

    def low_watermark(self) -> int:
        return self.ckpt.stable_seq

    def high_watermark(self) -> int:
        return self.ckpt.stable_seq + self.params.watermark_window

    def can_propose(self) -> bool:
        if not self.is_primary() or self.in_vc:
            return False
        seq = self.next_seq()
        voted = self.votes.get(("pre_prepare", seq))
        if voted is not None and voted[0] == self.view:
            return False  # never propose twice for one (view, seq), even after a restart
        return (seq <= self.high_watermark() and seq - self.last_delivered <= self.params.max_in_flight
                and ordering.parent_tip(self, seq) is not None)

    def next_seq(self) -> int:
        # Never at or below the low watermark: our persisted votes there are gone, and
        # a block there is already decided (found by the simulator's equivocation check).
        top = max(self.last_delivered, self.ckpt.stable_seq)
        for seq, slot in self.slots.items():
            if seq > top and (slot.view == self.view and slot.pp_bytes is not None or slot.waiting):
                top = seq
        return top + 1

    def slot(self, seq: int) -> Slot:
        s = self.slots.get(seq)
        if s is None:
            s = self.slots[seq] = Slot(seq)
        return s

    def emit(self, action: Any) -> None:
        self.out.append(action)

    def persist(self, *writes: tuple[str, bytes | None]) -> None:
        self.out.append(io.Persist(tuple(writes)))

    def suspect(self, peer: str, reason: str) -> None:
        self._count("suspect")
        self.out.append(io.Suspect(peer, reason))

    def _count(self, key: str) -> None:
        self.stats[key] = self.stats.get(key, 0) + 1

    def start_view_change(self, view: int, now: int, reason: str = "primary_fault") -> None:
        view_change.start_view_change(self, view, now, reason)

    def request_transfer(self, target: int, peers: list[str]) -> None:
        state_transfer.request_transfer(self, target, peers)

    def replay_buffers(self) -> None:
        self._replay = True

    def on_window_moved(self) -> None:
        self._replay = True

    def has_work(self) -> bool:
        """Pending requests, or a proposed block not yet delivered.  Slots that hold
        only votes do not count: a peer's stray prepare must not start our timer."""
        if self.requests.pending:
            return True
        return any(s > self.last_delivered and (slot.pp_bytes is not None or slot.waiting is not None)
                   for s, slot in self.slots.items())

    def deliver(self, block: Block, cert: CommitCertificate, tip: Any) -> None:
        """Emit ``Deliver`` for the next height and update everything that depends on it."""
        seq = block.header.height
        digest = block.header.hash()
        slot = self.slots.get(seq)
        if slot is not None and slot.committed and slot.digest != digest:
            from .errors import InvariantViolation

            raise InvariantViolation("two certified blocks at height %d" % seq)
        if seq == self.ckpt.stable_seq and digest != self.ckpt.stable_digest:
            from .errors import InvariantViolation

            raise InvariantViolation("delivered block %d differs from the stable checkpoint" % seq)
        self.emit(io.Deliver(block, cert))
        self.last_delivered, self.tip = seq, tip
        self.hashes[seq] = digest
        self.hashes.pop(seq - self.params.watermark_window - 1, None)
        for rec in block.records:
            self.requests.delivered(request_id(rec))
        if seq >= self.view_base + self.params.checkpoint_interval:
            # The backoff resets once the view has delivered a checkpoint interval of
            # blocks, not at its first delivery: on an overloaded host a new view that
            # delivered only the blocks it re-proposed would otherwise get the base
            # timeout again and cascade into the next view change.
            self.failed_views = 0
        self.work_since = self.now
        self.last_retransmit = self.now
        self._count("delivered")
        checkpoint.on_delivered(self, seq, digest)

    def discard_below(self, seq: int, *also: tuple[str, bytes | None]) -> None:
        """Forget everything at or below ``seq``; the deletions and ``also`` form one Persist
        (atomic: a crash keeps all of it or none)."""
        discard_below(self.slots, seq)
        for s in [s for s in self.prepared_certs if s <= seq]:
            del self.prepared_certs[s]
        for s in [s for s in self.hashes if s < min(seq, self.last_delivered)]:
            del self.hashes[s]
        writes = []
        for key in [k for k in self.votes if k[1] <= seq]:
            del self.votes[key]
            writes.append(("%s/%d" % key, None))
            if key[0] == "commit":
                writes.append(("prepared/%d" % key[1], None))
        writes.extend(also)
        if writes:
            self.persist(*writes)

    def after_transfer(self, now: int) -> None:
        for s in [s for s in self.slots if s <= self.last_delivered]:
            del self.slots[s]
        ordering.advance_waiting(self, self.last_delivered + 1, now)
        ordering.try_commit(self, self.last_delivered + 1)
        ordering.try_deliver(self)
        view_change.retry_deferred(self, now)
        self._replay = True

    def sizes(self) -> dict[str, int]:
        """Sizes of every growing structure (the simulator asserts they stay bounded)."""
        return {
            "slots": len(self.slots),
            "prepared_certs": len(self.prepared_certs),
            "hashes": len(self.hashes),
            "votes": len(self.votes),
            "pending": len(self.requests.pending),
            "recent": len(self.requests.recent),
            "checkpoint_votes": self.ckpt.size(),
            "view_change": self.vc.size(),
            "buffered": sum(len(b) for b in self.buffers.values()),
        }

    # ------------------------------------------------------------ the API

    def step(self, event: Any, now: int) -> list:
        if type(now) is not int or now < self.now:
            raise Misuse("now must be a non-decreasing int of milliseconds")
        self.now, self.out = now, []
        if isinstance(event, io.MessageReceived):
            self._on_message(event.sender, event.data, now)
        elif isinstance(event, io.ClientRequest):
            self._on_request(event, now)
        elif isinstance(event, io.TimerFired):
            self._timer = None  # the node's timer is consumed by firing
            self._on_timer(now)
        elif isinstance(event, io.FetchResult):
            state_transfer.on_fetch_result(self, event, now)
        elif isinstance(event, io.Started):
            self._on_started(now)
        else:
            raise Misuse("unknown event %r" % (event,))
        self._settle(now)
        out = self.out
        self.out = []
        deadline = self.next_deadline()
        if deadline != self._timer:
            self._timer = deadline
            out.append(io.SetTimer(deadline))
        return out

    def next_deadline(self) -> int | None:
        deadlines = [state_transfer.deadline(self)]
        if self.validator:
            if self.in_vc:
                deadlines.append(self.vc.deadline)
            elif self.work_since is not None:
                deadlines.append(view_change.progress_deadline(self))
            if self.in_vc or self.work_since is not None:
                deadlines.append(self.last_retransmit + self.params.retransmit_ms)
            if self.can_propose():
                oldest = self.requests.oldest_waiting()
                if oldest is not None:
                    deadlines.append(oldest + self.params.batch_delay_ms)
        known = [d for d in deadlines if d is not None]
        return min(known) if known else None

    # ------------------------------------------------------------ event handlers

    def _settle(self, now: int) -> None:
        for _ in range(8):
            if not self._replay:
                break
            self._replay = False
            self._drain_buffers(now)
        if self.validator:
            ordering.maybe_propose(self, now)
            if self.has_work():
                if self.work_since is None:
                    self.work_since = now
                self.xfer.next_poll = 0
            else:
                self.work_since = None
                if not self.xfer.next_poll:
                    self.xfer.next_poll = now + self.params.idle_poll_ms

    def _on_started(self, now: int) -> None:
        self.work_since = None
        self.last_retransmit = now
        if not self.validator:
            state_transfer.poll(self, now)
            return
        if self.in_vc and self.vc.own is not None:
            self.emit(io.Broadcast(self.vc.own))
        if self.tip.header is not None and self.last_delivered > self.ckpt.stable_seq:
            # Restarted exactly at a checkpoint: nobody else may ever see it from us otherwise.
            checkpoint.on_delivered(self, self.last_delivered, self.tip.header.hash())
        for data, reused in self._restored_pps:
            if not reused:
                self._on_message(self.name, data, now, own=True)
                continue
            msg = parse_body(open_envelope(data, self.params.max_message_bytes))
            if msg.seq > max(self.last_delivered, self.ckpt.stable_seq):
                ordering.on_pre_prepare(self, self.name, data, msg, now, reused=True)
        self._restored_pps = []
        if self.ckpt.stable_seq > self.last_delivered:
            self.request_transfer(self.ckpt.stable_seq, [])

    def _on_request(self, ev: io.ClientRequest, now: int) -> None:
        if not self.validator:
            self.emit(io.RequestDropped(request_id(ev.record), "observer"))
            return
        rid, refused = self.requests.add(ev.record, now)
        if refused is not None and refused != "duplicate":
            self.emit(io.RequestDropped(rid, refused))

    def _on_timer(self, now: int) -> None:
        state_transfer.on_timer(self, now)
        if not self.validator:
            return
        if self.in_vc:
            if self.vc.deadline is not None and now >= self.vc.deadline:
                self.start_view_change(self.view + 1, now, "view_change_timeout")
        elif self.work_since is not None and now >= view_change.progress_deadline(self):
            view_change.complain(self, now)
        if now >= self.last_retransmit + self.params.retransmit_ms:
            self.last_retransmit = now
            from .retransmit import retransmit

            retransmit(self, now)

    def _on_message(self, sender: str, data: bytes, now: int, own: bool = False) -> None:
        if not self.validator:
            self.emit(io.Dropped(sender, "observer_does_not_vote"))
            return
        try:
            env = open_envelope(data, self.params.max_message_bytes)
            if env.sender != sender:
                if env.kind != "new_view":
                    raise PeerFault("signed by %s" % env.sender, reason="sender_mismatch")
                sender = env.sender  # NEW-VIEW is self-certifying and may be relayed by anyone
            if sender not in self.names or (sender == self.name and not own):
                self.emit(io.Dropped(sender, "not_a_validator"))
                return
            msg = parse_body(env)
            verdict = self._admit(sender, data, msg)
            if verdict is not None:
                if verdict == BUFFER:
                    self._buffer(sender, data)
                elif verdict != DUPLICATE:
                    self.emit(io.Dropped(sender, verdict))
                else:
                    self._count("duplicate")
                return
            if not own:
                self.auth.verify(sender, CONTEXT[env.kind], env.body, env.signature)
            self._handle(sender, data, msg, now)
        except SignatureError:
            self.suspect(sender, "bad_signature")
        except DecodeError as exc:
            self.suspect(sender, "malformed: %s" % getattr(exc, "reason", "bad"))
        except PeerFault as exc:
            self.suspect(sender, exc.reason)

    def _handle(self, sender: str, data: bytes, msg: Any, now: int) -> None:
        if isinstance(msg, PrePrepare):
            ordering.on_pre_prepare(self, sender, data, msg, now)
        elif isinstance(msg, Prepare):
            ordering.on_prepare(self, sender, data, msg)
        elif isinstance(msg, Commit):
            self.auth.verify_block_sig(sender, msg.digest, msg.block_sig)
            ordering.on_commit(self, sender, data, msg)
        elif isinstance(msg, Checkpoint):
            checkpoint.add_vote(self, sender, msg.seq, msg.digest, data)
        elif isinstance(msg, ViewChange):
            view_change.on_view_change(self, sender, data, msg, now)
        elif isinstance(msg, NewView):
            view_change.on_new_view(self, sender, data, msg, now)
        elif isinstance(msg, Complaint):
            view_change.on_complaint(self, sender, data, msg, now)

    def _admit(self, sender: str, data: bytes, msg: Any) -> str | None:
        """Cheap checks before any signature: None to process, else BUFFER/DUPLICATE/reason."""
        if isinstance(msg, (PrePrepare, Prepare, Commit)):
            return self._admit_ordering(sender, data, msg)
        if isinstance(msg, Checkpoint):
            reason = checkpoint.admissible(self, msg.seq)
            if reason is None and sender in self.ckpt.votes.get(msg.seq, {}):
                return DUPLICATE
            return reason
        if isinstance(msg, Complaint):
            if msg.view < self.view:  # it missed our NEW-VIEW
                view_change.stale_view_change(self, sender, msg.view + 1)
                return "stale_view"
            if msg.view > self.view or self.in_vc:
                return "not_this_view"
            if self.vc.complaints.get(sender, (-1, -1))[:2] >= (msg.view, msg.seq):
                return DUPLICATE
            return None
        if isinstance(msg, ViewChange):
            if msg.new_view < self.view or (msg.new_view == self.view and not self.in_vc):
                view_change.stale_view_change(self, sender, msg.new_view)
                return DUPLICATE
            if msg.new_view > self.view + self.params.max_view_jump:
                return "view_too_far"
            held = self.vc.votes.get(sender)
            if held is not None and held[0] >= msg.new_view:
                return DUPLICATE
            return None
        if msg.view < self.view or (msg.view == self.view and not self.in_vc):
            return DUPLICATE if msg.view == self.view else "stale_view"
        if msg.view > self.view + self.params.max_view_jump:
            return "view_too_far"
        if sender != self.primary(msg.view):
            raise PeerFault("NEW-VIEW from a non-primary", reason="not_primary")
        if self.vc.deferred is not None and self.vc.deferred[1] == data:
            return DUPLICATE
        return None

    def _admit_ordering(self, sender: str, data: bytes, msg: Any) -> str | None:
        if msg.view < self.view:
            return "stale_view"
        if msg.view > self.view + self.params.max_view_jump:
            return "view_too_far"
        if msg.seq <= max(self.ckpt.stable_seq, self.last_delivered):
            return "stale_seq"
        if msg.seq > self.high_watermark() + self.params.watermark_window:
            return "seq_too_far"
        if msg.view > self.view or self.in_vc or msg.seq > self.high_watermark():
            return BUFFER
        primary = self.primary()
        slot = self.slots.get(msg.seq)
        if isinstance(msg, PrePrepare):
            if sender != primary:
                raise PeerFault("pre-prepare from a backup", reason="not_primary")
            if slot is not None and (slot.pp_bytes == data or (slot.waiting and slot.waiting[1] == data)):
                return DUPLICATE
        elif isinstance(msg, Prepare):
            if sender == primary:
                return "prepare_from_primary"
            if slot is not None and slot.prepares.get(sender, (-1,))[0] == msg.view:
                return DUPLICATE
        else:
            if slot is not None and slot.commits.get(sender, (-1,))[0] == msg.view:
                return DUPLICATE
        return None

    def _buffer(self, sender: str, data: bytes) -> None:
        buf = self.buffers.get(sender)
        if buf is None:
            buf = self.buffers[sender] = deque()
        if data in buf:
            return
        if len(buf) >= self.params.max_buffered_per_peer:
            buf.popleft()
            self.emit(io.Dropped(sender, "buffer_full"))
        buf.append(data)

    def _drain_buffers(self, now: int) -> None:
        pending = self.buffers
        self.buffers = {}
        for sender in sorted(pending):
            for data in pending[sender]:
                self._on_message(sender, data, now)

