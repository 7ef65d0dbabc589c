"""State transfer and observers: catching up from certified blocks (TOCS'02 §5.3.2).

A replica that learns it is behind — a stable checkpoint proof beyond its head,
a NEW-VIEW whose ``min_s`` it has not reached — asks the node to ``Fetch``
committed blocks from a peer that should have them; these targets are proven.  A
validator also polls a peer when stalled or idle, for a few blocks; when a poll
brings blocks and the replica holds no pre-prepare for its next height, it chases:
full-size fetches until an answer brings nothing new.  Results come back as
``FetchResult`` events.  Nothing in a result is trusted because of who sent it:
every block must extend the replica's head (height and ``prev_hash``), carry a
certificate for exactly its header that verifies with ``quorum`` signatures of the
validator set, and pass the application's validation; the first block that fails stops processing the result
and the peer is reported with ``Suspect``.  A peer that answers nothing useful or
times out is replaced by the next one (round robin), so one silent or lying peer
cannot stall the transfer (concord-bft #269, sawtooth-pbft #166).

Observers (non-voting members) run only this module: they poll validators in
turn for blocks after their head.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ledger.block import ZERO_HASH
from ledger.errors import SignatureError

from . import io
from .errors import AppRejected

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


@dataclass(slots=True)
class TransferState:
    target: int = 0  # fetch up to here (validators); at least ``proven``
    proven: int = 0  # the highest height a stable checkpoint or a NEW-VIEW proved committed
    peers: list[str] = field(default_factory=list)
    turn: int = 0
    outstanding: tuple[str, int] | None = None  # (peer, deadline)
    next_poll: int = 0


def request_transfer(r: "Replica", target: int, peers: list[str]) -> None:
    st = r.xfer
    if target <= r.last_delivered:
        return
    st.proven = max(st.proven, target)
    st.target = max(st.target, target)
    for p in peers:
        if p not in st.peers and p != r.name:
            st.peers.append(p)
    issue(r, r.now)


def _peer(r: "Replica") -> str | None:
    st = r.xfer
    # Peers known to have the blocks first, then every other validator: a preferred
    # peer that lies or stays silent must not stall the transfer.
    pool = st.peers + [n for n in r.names if n != r.name and n not in st.peers]
    if not pool:
        return None
    return pool[st.turn % len(pool)]


def issue(r: "Replica", now: int) -> None:
    st = r.xfer
    if st.outstanding is not None:
        return
    if r.validator and r.last_delivered >= st.target:
        st.peers = []
        return
    peer = _peer(r)
    if peer is None:
        return
    start = r.last_delivered + 1
    end = start + r.params.fetch_max_blocks - 1
    if r.validator:
        end = min(end, st.target)
    st.outstanding = (peer, now + r.params.fetch_timeout_ms)
    r.emit(io.Fetch(peer, start, end))


# A validator's poll asks for this many blocks at most.  It polls when stalled
# (``retransmit``) or idle, and under load a stall is mostly a queue: the blocks a
# peer would send are ones the replica is about to deliver itself, and a full
# answer (up to ``fetch_max_blocks``, megabytes) is read, sent and decoded for
# nothing.  A poll that does bring blocks, to a replica that is idle or holds no
# pre-prepare for its next height, starts a chase: full-size fetches until one
# brings nothing new (``on_fetch_result``).  One that lags behind a checkpoint
# fetches through ``request_transfer``.
VALIDATOR_POLL_BLOCKS = 2


def poll(r: "Replica", now: int) -> None:
    """Ask the next peer for anything after our head (observers; idle or stalled validators)."""
    st = r.xfer
    peer = _peer(r)
    if st.outstanding is not None or peer is None:
        return
    st.outstanding = (peer, now + r.params.fetch_timeout_ms)
    start = r.last_delivered + 1
    count = min(r.params.fetch_max_blocks, VALIDATOR_POLL_BLOCKS) if r.validator else r.params.fetch_max_blocks
    r.emit(io.Fetch(peer, start, start + count - 1))


def deadline(r: "Replica") -> int | None:
    st = r.xfer
    if st.outstanding is not None:
        return st.outstanding[1]
    if not r.validator or st.next_poll:
        return st.next_poll
    return None


def on_timer(r: "Replica", now: int) -> None:
    """Fetch timeouts rotate to the next peer; polls run when due.

    Validators poll only while idle (``next_poll`` is set by the replica when it has
    nothing outstanding), so a replica that restarted or was cut off while the
    cluster went quiet still reaches the common head.
    """
    st = r.xfer
    if st.outstanding is not None and now >= st.outstanding[1]:
        st.outstanding = None
        st.turn += 1
        issue(r, now)
    if st.outstanding is None and st.next_poll and now >= st.next_poll:
        st.next_poll = now + r.params.observer_poll_ms if not r.validator else 0
        poll(r, now)


def on_fetch_result(r: "Replica", ev: io.FetchResult, now: int) -> None:
    st = r.xfer
    if st.outstanding is not None and st.outstanding[0] == ev.peer:
        st.outstanding = None
    before = r.last_delivered
    for block, cert in ev.blocks:
        h = block.header
        if h.height <= r.last_delivered:
            continue
        if h.height != r.last_delivered + 1 or not _apply(r, ev.peer, block, cert):
            break
    if r.last_delivered == before:
        st.turn += 1
        if not r.validator:
            st.next_poll = now + r.params.observer_poll_ms
        else:  # a chase ends at an answer with nothing new; a proven target does not
            st.target = max(st.proven, min(st.target, r.last_delivered))
    elif not r.validator or not r.has_work() or not _holds_next(r):
        # Got blocks, and nothing of our own is about to deliver the next one: the
        # replica is behind, not queued.  Ask again at once, at full size, until an
        # answer brings nothing new.
        st.target = max(st.target, r.last_delivered + r.params.fetch_max_blocks)
    r.after_transfer(now)
    issue(r, now)


def _holds_next(r: "Replica") -> bool:
    """Whether the replica has a pre-prepare for the height after its head."""
    slot = r.slots.get(r.last_delivered + 1)
    return slot is not None and (slot.pp_bytes is not None or slot.waiting is not None)


def _apply(r: "Replica", peer: str, block, cert) -> bool:
    h = block.header
    head = r.tip.header
    if h.prev_hash != (head.hash() if head is not None else ZERO_HASH):
        r.suspect(peer, "transfer_broken_chain")
        return False
    try:
        r.auth.verify_certificate(h, cert)
    except (SignatureError, ValueError) as exc:
        r.suspect(peer, "transfer_bad_certificate: %s" % getattr(exc, "reason", "invalid"))
        return False
    try:
        tip = r.app.validate(r.tip, block)
    except AppRejected as exc:
        r.suspect(peer, "transfer_invalid_block: %s" % exc.reason)
        return False
    r.deliver(block, cert, tip)
    return True
