"""Rebuilding a replica after a crash from what it persisted (``Persist`` actions).

Persisted keys (values are canonical msgpack or signed envelopes):

==================  ==========================================================
``view``            ``[view, in_view_change]``
``stable``          ``[seq, digest, [checkpoint envelopes]]``
``pre_prepare/S``   our PRE-PREPARE for sequence S (primary)
``prepare/S``       our PREPARE for S
``commit/S``        our COMMIT for S
``prepared/S``      ``[view, digest, pre_prepare, [prepares]]``: the prepared
                    certificate we reported by committing (needed for VIEW-CHANGE)
``view_change``     our last VIEW-CHANGE
``new_view``        the NEW-VIEW that installed our view (or that we sent)
==================  ==========================================================

Keys of sequence numbers at or below the stable checkpoint are deleted when it
moves, so the record set stays bounded.  On restart the replica resumes in the
persisted view, never signs a vote that conflicts with a persisted one for the same
(view, seq) (``votes``), re-sends its VIEW-CHANGE if it was changing views, and
re-processes its own persisted pre-prepares of the current view — including the
re-proposals inside the NEW-VIEW it sent as primary — instead of cutting new blocks
at those sequence numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

from ledger.block import Block
from ledger.codec import decode

from .messages import open_envelope, parse_body

if TYPE_CHECKING:  # pragma: no cover
    from .replica import Replica


def restore(r: "Replica", persisted: Mapping[str, bytes]) -> None:
    limit = r.params.max_message_bytes
    view, in_vc = 0, False
    if "view" in persisted:
        view, in_vc = decode(persisted["view"])
    if "stable" in persisted:
        seq, digest, proof = decode(persisted["stable"])
        r.ckpt.stable_seq, r.ckpt.stable_digest, r.ckpt.proof = seq, digest, tuple(proof)
    r.view, r.in_vc = view, bool(in_vc)
    if r.in_vc:
        r.vc.own = persisted.get("view_change")
    r.vc.new_view = persisted.get("new_view")
    if r.vc.own is not None:
        from .view_change import verify_view_change

        own = parse_body(open_envelope(r.vc.own, limit))
        r.vc.votes[r.name] = (own.new_view, r.vc.own, verify_view_change(r, r.name, own))
    for key, value in sorted(persisted.items()):
        phase, _, suffix = key.partition("/")
        if not suffix:
            continue
        seq = int(suffix)
        if phase in ("pre_prepare", "prepare", "commit"):
            msg = parse_body(open_envelope(value, limit))
            digest = Block.from_wire(msg.block_wire).header.hash() if phase == "pre_prepare" else msg.digest
            held = r.votes.get((phase, seq))
            if held is None or held[0] <= msg.view:
                r.votes[(phase, seq)] = (msg.view, digest)
            if phase == "pre_prepare" and msg.view == view and not r.in_vc:
                r._restored_pps.append((value, False))
        elif phase == "prepared":
            pview, digest, pp, prepares = decode(value)
            block = Block.from_wire(parse_body(open_envelope(pp, limit)).block_wire)
            r.prepared_certs[seq] = (pview, digest, pp, tuple(prepares), block)
    if r.vc.new_view is not None and not r.in_vc:
        _restore_new_view(r, limit)


def _restore_new_view(r: "Replica", limit: int) -> None:
    """As the primary that sent our NEW-VIEW, its re-proposals are our pre-prepares."""
    env = open_envelope(r.vc.new_view, limit)
    nv = parse_body(env)
    if env.sender != r.name or nv.view != r.view:
        return
    for pp_bytes in nv.pre_prepares:
        pp = parse_body(open_envelope(pp_bytes, limit))
        r.votes[("pre_prepare", pp.seq)] = (pp.view, Block.from_wire(pp.block_wire).header.hash())
        r._restored_pps.append((pp_bytes, True))
