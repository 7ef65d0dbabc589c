"""Wire format of consensus messages: canonical, strict, signed per context."""

import pytest

from ledger.block import ValidatorSet
from ledger.codec import encode
from ledger.crypto import SecretKey
from ledger.errors import DecodeError, SignatureError

from consensus.auth import Ed25519Auth
from consensus.messages import (CONTEXT, Checkpoint, Commit, Complaint, Envelope, NewView, PrePrepare, Prepare, ViewChange,
                                open_envelope, open_signed, parse_body, seal)

KEYS = {n: SecretKey(bytes([i + 1]) * 32) for i, n in enumerate(("a", "b", "c", "d"))}
VSET = ValidatorSet(tuple((n, k.public) for n, k in KEYS.items()))
AUTH = {n: Ed25519Auth("test", VSET, k) for n, k in KEYS.items()}
H = bytes(range(32))
SAMPLES = [
    Prepare(3, 7, H),
    Commit(3, 7, H, bytes(64)),
    Checkpoint(64, H),
    ViewChange(4, 64, H, (b"x",), ((b"pp", (b"p1", b"p2")),)),
    ViewChange(4, 64, H, (), (), (b"c1", b"c2")),
    Complaint(3, 70),
    NewView(4, (b"vc1", b"vc2"), (b"pp",)),
    PrePrepare(1, 2, ["block", 1, [], []]),
]


@pytest.mark.parametrize("msg", SAMPLES, ids=lambda m: type(m).__name__)
def test_round_trip(msg):
    data = seal(msg, "a", AUTH["a"])
    env = open_envelope(data, 1 << 20)
    assert env.sender == "a" and env.encode() == data
    assert parse_body(env) == msg


def test_signature_binds_the_kind():
    # Reference: ledger.crypto domain separation — a prepare is not a commit.
    data = seal(Prepare(0, 1, H), "a", AUTH["a"])
    env = open_envelope(data, 1 << 20)
    AUTH["b"].verify("a", CONTEXT["prepare"], env.body, env.signature)
    with pytest.raises(SignatureError):
        AUTH["b"].verify("a", CONTEXT["commit"], env.body, env.signature)
    with pytest.raises(SignatureError):
        AUTH["b"].verify("b", CONTEXT["prepare"], env.body, env.signature)


def test_open_signed_checks_kind_and_signature():
    data = seal(Prepare(0, 1, H), "a", AUTH["a"])
    with pytest.raises(DecodeError):
        open_signed(data, AUTH["b"], 1 << 20, "commit")
    forged = Envelope("prepare", "a", encode([0, 2, H]), open_envelope(data, 1 << 20).signature).encode()
    with pytest.raises(SignatureError):
        open_signed(forged, AUTH["b"], 1 << 20, "prepare")


@pytest.mark.parametrize("mutate, reason", [
    (lambda items: items + [1], "field count"),
    (lambda items: items[:2] + [2] + items[3:], "version"),
    (lambda items: items[:2] + ["nope"] + items[3:], "kind"),
    (lambda items: items[:-1] + [bytes(63)], "signature size"),
])
def test_envelope_is_strict(mutate, reason):
    env = open_envelope(seal(Prepare(0, 1, H), "a", AUTH["a"]), 1 << 20)
    items = ["pbft", 1, env.kind, env.sender, env.body, env.signature]
    with pytest.raises(DecodeError):
        open_envelope(encode(mutate(items)), 1 << 20)


def test_oversized_and_non_canonical_are_refused():
    data = seal(Prepare(0, 1, H), "a", AUTH["a"])
    with pytest.raises(DecodeError):
        open_envelope(data, len(data) - 1)
    # uint8 written as uint16: same value, not the canonical shortest form
    body_bad = b"\x93\xcd\x00\x00\x01\xc4\x20" + H
    env = Envelope("prepare", "a", body_bad, bytes(64))
    with pytest.raises(DecodeError):
        parse_body(env)


@pytest.mark.parametrize("body", [[0, 0, H], [-1, 1, H], [0, 1, H[:31]], [0, 1, H, 5]])
def test_body_fields_are_checked(body):
    with pytest.raises(DecodeError):
        parse_body(Envelope("prepare", "a", encode(body), bytes(64)))


@pytest.mark.parametrize("kind, body", [
    ("complaint", [0]),  # too few fields
    ("complaint", [0, 1, 2]),  # too many
    ("complaint", [-1, 0]),  # negative view
    ("complaint", [0, "7"]),  # seq of the wrong type
    ("view_change", [1, 0, H, [], []]),  # the five-field form of peer protocol 1
    ("view_change", [1, 0, H, [], [], [5]]),  # a complaint that is not bytes
    ("view_change", [1, 0, H, [], [], [b"c"] * 300]),  # more complaints than validators can send
])
def test_complaint_fields_are_checked(kind, body):
    with pytest.raises(DecodeError):
        parse_body(Envelope(kind, "a", encode(body), bytes(64)))
