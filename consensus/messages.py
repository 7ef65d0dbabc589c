"""PBFT messages and their canonical, signed wire form.

Every consensus message travels in one envelope::

    encode(["pbft", 1, kind, sender, body, signature])

``body`` is the canonical msgpack encoding (``ledger.codec``) of the kind's field
array; ``signature`` is the sender's Ed25519 signature over ``body`` in the signing
context ``"consensus/<kind>"`` (``ledger.crypto``), so a prepare can never be
replayed as a commit nor a message moved to another chain.  The sender name is not
inside the body: a forged sender simply fails verification under that sender's key.

All messages are signed (TOCS'02 §4 with signatures rather than MACs): it is the
simplest design that gives non-repudiable view-change proofs, and costs about 8
signs + 24 verifies per block at n=4 (docs/consensus.md has the figures).  COMMIT
also carries ``block_sig``, the sender's ``block/commit`` signature over the header
hash: a quorum of commits *is* the block's ``CommitCertificate``.

Decoding is strict and split in two so that cheap checks run before crypto:
:func:`open_envelope` parses the envelope only; :func:`parse_body` parses the body
into a typed message whose nested parts (the block of a pre-prepare, the embedded
messages of VIEW-CHANGE / NEW-VIEW) stay raw until the signature has been checked.
Errors are ``DecodeError`` (a ``ValueError``) naming the field.

Bodies (``seq`` is the block height; ``digest`` the header hash):

================  ==========================================================
pre_prepare       ``[view, seq, block_wire]``
prepare           ``[view, seq, digest]``
commit            ``[view, seq, digest, block_sig]``
checkpoint        ``[seq, digest]``
view_change       ``[new_view, stable_seq, stable_digest, checkpoint_proof,
                  prepared, complaints]`` — proof: checkpoint envelopes; prepared:
                  list of ``[pre_prepare_envelope, [prepare_envelope, ...]]``;
                  complaints: the f+1 complaint envelopes about ``new_view - 1``
                  that made the sender move (empty for other reasons)
new_view          ``[view, view_change_envelopes, pre_prepare_envelopes]``
complaint         ``[view, seq]`` — "nothing delivered beyond ``seq`` in
                  ``view`` for a progress timeout" (the complain step before
                  a view change, docs/consensus.md)
================  ==========================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Union

from ledger.block import MAX_VALIDATORS
from ledger.codec import Fields, Limits, array_header, decode, encode
from ledger.errors import DecodeError

ENVELOPE_TAG = "pbft"
ENVELOPE_VERSION = 1
KINDS = ("pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view", "complaint")
CONTEXT = {kind: "consensus/" + kind for kind in KINDS}
MAX_SEQ = 2**63 - 1
MAX_VIEW = 2**63 - 1
MAX_PREPARED = 4096
MAX_NESTED = 64 << 20

_LIMITS = Limits(max_bytes=MAX_NESTED + 1024, max_bin=MAX_NESTED, max_array=100_000)


@dataclass(frozen=True, slots=True)
class Envelope:
    kind: str
    sender: str
    body: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encode([ENVELOPE_TAG, ENVELOPE_VERSION, self.kind, self.sender, self.body, self.signature])


def open_envelope(data: bytes, max_bytes: int) -> Envelope:
    """Parse the outer envelope of ``data`` (size checked first)."""
    if len(data) > max_bytes:
        raise DecodeError("message of %d bytes exceeds %d" % (len(data), max_bytes), reason="too_large")
    items = decode(data, Limits(max_bytes=max_bytes, max_bin=max_bytes, max_array=16, max_map=0), typed=True)
    reader = Fields("envelope", items, 6)
    reader.header(ENVELOPE_TAG, ENVELOPE_VERSION)
    kind = reader.str("kind", 16)
    if kind not in CONTEXT:
        raise DecodeError("envelope.kind: unknown message kind %r" % kind, reason="unknown_kind")
    sender = reader.str("sender", 64)
    body = reader.bytes("body", None, max_bytes)
    signature = reader.bytes("signature", 64, 64)
    return Envelope(kind, sender, body, signature)


# ------------------------------------------------------------------ typed bodies


@dataclass(frozen=True, slots=True)
class PrePrepare:
    view: int
    seq: int
    block_wire: Any  # raw ["block", 1, ...] array; decoded after the signature check

    def body(self) -> list:
        return [self.view, self.seq, self.block_wire]


@dataclass(frozen=True, slots=True)
class Prepare:
    view: int
    seq: int
    digest: bytes

    def body(self) -> list:
        return [self.view, self.seq, self.digest]


@dataclass(frozen=True, slots=True)
class Commit:
    view: int
    seq: int
    digest: bytes
    block_sig: bytes

    def body(self) -> list:
        return [self.view, self.seq, self.digest, self.block_sig]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    seq: int
    digest: bytes

    def body(self) -> list:
        return [self.seq, self.digest]


@dataclass(frozen=True, slots=True)
class ViewChange:
    new_view: int
    stable_seq: int
    stable_digest: bytes
    checkpoint_proof: tuple[bytes, ...]
    prepared: tuple[tuple[bytes, tuple[bytes, ...]], ...]
    complaints: tuple[bytes, ...] = ()

    def body(self) -> list:
        return [
            self.new_view,
            self.stable_seq,
            self.stable_digest,
            list(self.checkpoint_proof),
            [[pp, list(prepares)] for pp, prepares in self.prepared],
            list(self.complaints),
        ]


@dataclass(frozen=True, slots=True)
class NewView:
    view: int
    view_changes: tuple[bytes, ...]
    pre_prepares: tuple[bytes, ...]

    def body(self) -> list:
        return [self.view, list(self.view_changes), list(self.pre_prepares)]


@dataclass(frozen=True, slots=True)
class Complaint:
    view: int
    seq: int  # the sender's last delivered height when it complained

    def body(self) -> list:
        return [self.view, self.seq]


Message = Union[PrePrepare, Prepare, Commit, Checkpoint, ViewChange, NewView, Complaint]
KIND_OF = {PrePrepare: "pre_prepare", Prepare: "prepare", Commit: "commit", Checkpoint: "checkpoint",
           ViewChange: "view_change", NewView: "new_view", Complaint: "complaint"}


def _bytes_list(reader: Fields, name: str, max_len: int) -> tuple[bytes, ...]:
    out = []
    for i, item in enumerate(reader.list(name, max_len)):
        if not isinstance(item, bytes):
            raise DecodeError("%s[%d]: expected bytes" % (name, i))
        out.append(item)
    return tuple(out)


def parse_body(env: Envelope) -> Message:
    """Typed message of ``env`` (nested parts left raw); ``DecodeError`` if malformed."""
    items = decode(env.body, _LIMITS, typed=True)
    kind = env.kind
    if kind == "pre_prepare":
        r = Fields(kind, items, 3)
        return PrePrepare(r.int("view", 0, MAX_VIEW), r.int("seq", 1, MAX_SEQ), r.raw("block")[0])
    if kind == "prepare":
        r = Fields(kind, items, 3)
        return Prepare(r.int("view", 0, MAX_VIEW), r.int("seq", 1, MAX_SEQ), r.bytes("digest", 32, 32))
    if kind == "commit":
        r = Fields(kind, items, 4)
        return Commit(r.int("view", 0, MAX_VIEW), r.int("seq", 1, MAX_SEQ), r.bytes("digest", 32, 32),
                      r.bytes("block_sig", 64, 64))
    if kind == "checkpoint":
        r = Fields(kind, items, 2)
        return Checkpoint(r.int("seq", 1, MAX_SEQ), r.bytes("digest", 32, 32))
    if kind == "view_change":
        r = Fields(kind, items, 6)
        new_view = r.int("new_view", 1, MAX_VIEW)
        stable_seq = r.int("stable_seq", 0, MAX_SEQ)
        stable_digest = r.bytes("stable_digest", 32, 32)
        proof = _bytes_list(r, "checkpoint_proof", MAX_VALIDATORS)
        prepared = []
        for i, pair in enumerate(r.list("prepared", MAX_PREPARED)):
            p = Fields("view_change.prepared[%d]" % i, pair, 2)
            pp = p.bytes("pre_prepare", None, MAX_NESTED)
            prepared.append((pp, _bytes_list(p, "prepares", MAX_VALIDATORS)))
        complaints = _bytes_list(r, "complaints", MAX_VALIDATORS)
        return ViewChange(new_view, stable_seq, stable_digest, proof, tuple(prepared), complaints)
    if kind == "new_view":
        r = Fields(kind, items, 3)
        view = r.int("view", 1, MAX_VIEW)
        return NewView(view, _bytes_list(r, "view_changes", MAX_VALIDATORS), _bytes_list(r, "pre_prepares", MAX_PREPARED))
    if kind == "complaint":
        r = Fields(kind, items, 2)
        return Complaint(r.int("view", 0, MAX_VIEW), r.int("seq", 0, MAX_SEQ))
    raise DecodeError("unknown kind %r" % kind)  # pragma: no cover - open_envelope refuses it


def seal(message: Message, sender: str, auth: Any) -> bytes:
    """Sign ``message`` as ``sender`` with ``auth`` and return the envelope bytes."""
    kind = KIND_OF[type(message)]
    body = encode(message.body())
    return Envelope(kind, sender, body, auth.sign(CONTEXT[kind], body)).encode()


def seal_pre_prepare(view: int, seq: int, block: Any, sender: str, auth: Any) -> bytes:
    """``seal(PrePrepare(view, seq, block.wire()), sender, auth)``, with the block's
    canonical bytes spliced in (``Block.encode``) instead of walking its items."""
    body = array_header(3) + encode(view) + encode(seq) + block.encode()
    return Envelope("pre_prepare", sender, body, auth.sign(CONTEXT["pre_prepare"], body)).encode()


def open_signed(data: bytes, auth: Any, max_bytes: int, kind: str) -> tuple[Envelope, Message]:
    """Parse and verify a nested envelope of an expected ``kind`` (raises on any fault)."""
    env = open_envelope(data, max_bytes)
    if env.kind != kind:
        raise DecodeError("expected a %s, got a %s" % (kind, env.kind))
    auth.verify(env.sender, CONTEXT[kind], env.body, env.signature)
    return env, parse_body(env)
