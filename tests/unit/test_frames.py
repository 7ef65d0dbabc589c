"""The peer wire, without sockets: frame splitting, frame sealing, the handshake, backoff.

``docs/transport.md`` is the byte-exact reference; the example session there is
recomputed here (``test_the_documented_example_session``), so the page cannot drift.
"""

from __future__ import annotations

import asyncio
import random
import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.codec import encode
from ledger.crypto import SecretKey
from runtime.frames import (
    HANDSHAKE_MAX_FRAME,
    FrameDecoder,
    FrameError,
    Opener,
    Sealer,
    encode_frame,
    read_frame,
)
from runtime.handshake import (
    ACCEPTOR,
    DIALER,
    SIGNING_CONTEXT,
    VERSION,
    Auth,
    Handshake,
    HandshakeError,
    Hello,
    transcript,
)
from runtime.transport import Backoff

DOC = Path(__file__).resolve().parents[2] / "docs" / "transport.md"
CHAIN = "test-chain"


# ----------------------------------------------------------------------------- frames


@settings(max_examples=200, deadline=None)
@given(
    bodies=st.lists(st.binary(min_size=1, max_size=300), max_size=20),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=12),
)
def test_any_split_of_the_stream_yields_the_same_bodies(bodies, cuts):
    stream = b"".join(encode_frame(b) for b in bodies)
    points = sorted({c % (len(stream) + 1) for c in cuts} | {0, len(stream)})
    decoder = FrameDecoder(max_frame=300)
    out = []
    for lo, hi in zip(points, points[1:]):
        out += decoder.feed(stream[lo:hi])
    assert out == bodies
    assert decoder.buffered == 0 and decoder.error is None


def test_the_length_prefix_is_four_bytes_big_endian():
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert FrameDecoder().feed(b"\x00\x00\x01\x00" + b"x" * 256) == [b"x" * 256]


def test_an_oversize_prefix_is_refused_before_any_body_byte_arrives():
    decoder = FrameDecoder(max_frame=1024)
    assert decoder.feed(b"\x00\x00\x04") == []  # three bytes: no verdict yet
    assert decoder.feed(b"\x01") == []  # 1025 announced, no body sent
    assert decoder.error is not None and decoder.error.reason == "frame_too_large"
    assert decoder.buffered == 0  # nothing of the refused frame is held
    with pytest.raises(FrameError):
        decoder.feed(b"more")


def test_a_frame_of_exactly_the_limit_is_accepted():
    assert FrameDecoder(max_frame=1024).feed(encode_frame(b"y" * 1024)) == [b"y" * 1024]


def test_a_zero_length_frame_is_refused_after_the_good_ones_before_it():
    decoder = FrameDecoder()
    assert decoder.feed(encode_frame(b"ok") + b"\x00\x00\x00\x00" + encode_frame(b"never")) == [b"ok"]
    assert decoder.error.reason == "zero_length_frame"


def test_a_huge_frame_in_small_chunks_is_linear_and_bounded():
    body = bytes(range(256)) * 4096  # 1 MiB
    stream = encode_frame(body)
    decoder = FrameDecoder(max_frame=len(body))
    got = []
    for i in range(0, len(stream), 1000):
        got += decoder.feed(stream[i : i + 1000])
        assert decoder.buffered <= len(body) + 4
    assert got == [body]


def test_encode_frame_refuses_an_empty_body():
    with pytest.raises(ValueError):
        encode_frame(b"")


def _reader(data: bytes, eof: bool = True) -> asyncio.StreamReader:
    reader = asyncio.StreamReader()
    reader.feed_data(data)
    if eof:
        reader.feed_eof()
    return reader


@pytest.mark.parametrize(
    "data, eof, reason",
    [
        (b"", True, "closed"),
        (b"\x00\x00", True, "truncated"),
        (b"\x00\x00\x00\x05abc", True, "truncated"),
        (b"\x00\x00\x00\x00", True, "zero_length_frame"),
        # No EOF and no body: the verdict cannot depend on reading the body.
        (b"\x00\x00\x04\x01", False, "frame_too_large"),
    ],
)
def test_read_frame_refusals(data, eof, reason):
    async def go():
        with pytest.raises(FrameError) as info:
            await asyncio.wait_for(read_frame(_reader(data, eof), HANDSHAKE_MAX_FRAME), 2)
        return info.value.reason

    assert asyncio.run(go()) == reason


def test_read_frame_reads_one_body():
    async def go():
        return await read_frame(_reader(encode_frame(b"hi") + b"rest"), 16)

    assert asyncio.run(go()) == b"hi"


# ----------------------------------------------------------------------------- sealing


def test_sealed_frames_open_in_order_and_hide_the_payload():
    key = bytes(range(32))
    sealer, opener = Sealer(key), Opener(key)
    bodies = [sealer.seal(p) for p in (b"one", b"", b"three")]
    assert all(b"one" not in b and b"three" not in b for b in bodies)
    assert [opener.open(b) for b in bodies] == [b"one", b"", b"three"]


@pytest.mark.parametrize("mutation", ["flip", "replay", "reorder", "drop", "other_key", "short"])
def test_a_tampered_stream_fails_to_open(mutation):
    key = bytes(range(32))
    sealer, opener = Sealer(key), Opener(key)
    first, second = sealer.seal(b"first"), sealer.seal(b"second")
    if mutation == "other_key":
        opener = Opener(bytes(32))
    if mutation == "flip":
        first = first[:-1] + bytes([first[-1] ^ 1])
    if mutation == "short":
        first = first[:10]
    sequence = {
        "flip": [first],
        "other_key": [first],
        "short": [first],
        "replay": [first, first],
        "reorder": [second, first],
        "drop": [second],
    }[mutation]
    with pytest.raises(FrameError) as info:
        for body in sequence:
            opener.open(body)
    assert info.value.reason == "bad_mac"


# ----------------------------------------------------------------------------- handshake

KEYS = {name: SecretKey(bytes([i + 1]) * 32) for i, name in enumerate(["bank", "carrier", "court", "mallory"])}
MEMBERS = {name: KEYS[name].public for name in ("bank", "carrier", "court")}  # mallory is not a member


def pair(dialer="bank", acceptor="carrier", **kw):
    d = Handshake(DIALER, dialer, KEYS[dialer], CHAIN, MEMBERS, expected=kw.pop("expected", acceptor))
    a = Handshake(ACCEPTOR, acceptor, KEYS[acceptor], CHAIN, MEMBERS)
    return d, a


def complete(d: Handshake, a: Handshake):
    auth_from_a = a.receive_hello(d.hello)
    auth_from_d = d.receive_hello(a.hello)
    return d.receive_auth(auth_from_a), a.receive_auth(auth_from_d)


def refused(fn, *args) -> str:
    with pytest.raises(HandshakeError) as info:
        fn(*args)
    return info.value.reason


def test_a_handshake_authenticates_both_names_and_agrees_on_crossed_keys():
    sd, sa = complete(*pair())
    assert (sd.peer, sa.peer) == ("carrier", "bank")
    assert sd.session_id == sa.session_id
    assert sd.send_key == sa.recv_key and sd.recv_key == sa.send_key and sd.send_key != sd.recv_key
    assert sa.opener().open(sd.sealer().seal(b"ping")) == b"ping"
    assert "send_key" not in repr(sd) and sd.send_key.hex() not in repr(sd)


def test_two_handshakes_between_the_same_pair_get_different_keys():
    s1, _ = complete(*pair())
    s2, _ = complete(*pair())
    assert s1.send_key != s2.send_key and s1.session_id != s2.session_id


def test_the_documented_example_session():
    # Fixed keys, nonces and ephemeral keys; docs/transport.md shows the same bytes.
    bank, carrier = SecretKey(bytes([1]) * 32), SecretKey(bytes([2]) * 32)
    members = {"bank": bank.public, "carrier": carrier.public}
    d = Handshake(DIALER, "bank", bank, "evledger-example", members, expected="carrier",
                  nonce=b"\x11" * 32, ephemeral=b"\x33" * 32)
    a = Handshake(ACCEPTOR, "carrier", carrier, "evledger-example", members,
                  nonce=b"\x22" * 32, ephemeral=b"\x44" * 32)
    auth_a, auth_d = a.receive_hello(d.hello), d.receive_hello(a.hello)
    sd, sa = d.receive_auth(auth_a), a.receive_auth(auth_d)
    first = Sealer(sd.send_key).seal(b"hello")
    assert sa.opener().open(first) == b"hello"
    doc = re.sub(r"\s+", "", DOC.read_text(encoding="utf-8"))
    for label, value in [
        ("dialer HELLO", d.hello.hex()),
        ("acceptor HELLO", a.hello.hex()),
        ("dialer AUTH", auth_d.hex()),
        ("acceptor AUTH", auth_a.hex()),
        ("dialer->acceptor key", sd.send_key.hex()),
        ("acceptor->dialer key", sd.recv_key.hex()),
        ("first sealed frame", first.hex()),
        ("session id", sd.session_id),
    ]:
        assert value in doc, "docs/transport.md lacks the %s %s" % (label, value)


def hello_bytes(name="court", key=None, chain=CHAIN, version=VERSION, nonce=b"\x05" * 32, eph=None) -> bytes:
    key = key or KEYS.get(name) or SecretKey.generate()
    eph = eph or Handshake(DIALER, "bank", KEYS["bank"], CHAIN, MEMBERS).hello[-32:]
    return encode(["evledger-peer-hello", version, chain, name, key.public.raw, nonce, eph])


@pytest.mark.parametrize(
    "hello, reason",
    [
        (hello_bytes(chain="other-chain"), "wrong_chain"),
        (hello_bytes(name="carrier"), "self_connection"),
        (hello_bytes(name="mallory"), "unknown_member"),
        (hello_bytes(name="court", key=SecretKey(b"\x09" * 32)), "unknown_key"),
        (hello_bytes(version=1), "unsupported_version"),  # a node before COMPLAINT
        (hello_bytes(version=VERSION + 1), "unsupported_version"),
        (b"\xc1", "malformed_hello"),
        (encode(["evledger-peer-hello", VERSION, CHAIN, "court"]), "malformed_hello"),
        (encode(["evledger-peer-auth", VERSION, b"\x00" * 32, b"\x00" * 64]), "malformed_hello"),
        (hello_bytes(nonce=b"\x05" * 31), "malformed_hello"),
        (hello_bytes(name="Court"), "malformed_hello"),  # names are lowercase
        (bytes.fromhex("97") + hello_bytes()[1:] + b"\x00", "malformed_hello"),  # trailing byte
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_the_acceptor_refuses_a_bad_hello(hello, reason):
    acceptor = Handshake(ACCEPTOR, "carrier", KEYS["carrier"], CHAIN, MEMBERS)
    assert refused(acceptor.receive_hello, hello) == reason


def test_the_dialer_refuses_a_member_it_did_not_dial():
    d, _ = pair(expected="carrier")
    other = Handshake(ACCEPTOR, "court", KEYS["court"], CHAIN, MEMBERS)
    assert refused(d.receive_hello, other.hello) == "unexpected_peer"


def test_a_corrupted_signature_is_refused():
    d, a = pair()
    auth = a.receive_hello(d.hello)
    d.receive_hello(a.hello)
    bad = bytearray(auth)
    bad[-1] ^= 0x01
    assert refused(d.receive_auth, bytes(bad)) == "bad_signature"


def test_an_auth_from_an_old_session_is_refused_as_replayed():
    d1, a1 = pair()
    old_auth = d1.receive_hello(a1.hello)  # what the dialer sent in session 1
    d2, a2 = pair()
    a2.receive_hello(d1.hello)  # an attacker replays the dialer's old HELLO ...
    assert refused(a2.receive_auth, old_auth) == "replayed_auth"  # ... and its old AUTH


def test_an_old_auth_with_a_rewritten_echo_fails_its_signature():
    d1, a1 = pair()
    old = Auth.decode(d1.receive_hello(a1.hello))
    d2, a2 = pair()
    a2.receive_hello(d1.hello)
    forged = Auth(a2.nonce, old.signature).encode()
    assert refused(a2.receive_auth, forged) == "bad_signature"


def test_a_signature_from_a_session_with_mallory_cannot_be_spliced_into_one_with_carrier():
    # bank dials court, a member that turned hostile; court wants to pass as bank to carrier.
    bank = Handshake(DIALER, "bank", KEYS["bank"], CHAIN, MEMBERS, expected="court")
    court = Handshake(ACCEPTOR, "court", KEYS["court"], CHAIN, MEMBERS)
    bank_auth = Auth.decode(bank.receive_hello(court.hello))  # bank signs (bank, court) hellos
    # court opens a session to carrier with bank's own HELLO (the only one bank's key vouches for)
    carrier = Handshake(ACCEPTOR, "carrier", KEYS["carrier"], CHAIN, MEMBERS)
    carrier.receive_hello(bank.hello)
    forged = Auth(carrier.nonce, bank_auth.signature).encode()
    assert refused(carrier.receive_auth, forged) == "bad_signature"


def test_a_man_in_the_middle_cannot_substitute_his_ephemeral_key():
    d, a = pair()
    mitm_hello = Hello.decode(d.hello)
    swapped = Hello(mitm_hello.chain_id, mitm_hello.name, mitm_hello.public_key, mitm_hello.nonce,
                    Handshake(DIALER, "court", KEYS["court"], CHAIN, MEMBERS).hello[-32:]).encode()
    a.receive_hello(swapped)  # acceptor sees bank's identity with the attacker's ephemeral
    auth_from_d = d.receive_hello(a.hello)  # bank signs the real transcript
    assert refused(a.receive_auth, auth_from_d) == "bad_signature"


def test_a_signature_is_bound_to_the_role_of_its_signer():
    d, a = pair()
    a.receive_hello(d.hello)
    d.receive_hello(a.hello)
    # bank's key signing the right hellos but labelled as the acceptor's statement
    wrong_role = KEYS["bank"].sign(SIGNING_CONTEXT, CHAIN, transcript(ACCEPTOR, d.hello, a.hello))
    assert refused(a.receive_auth, Auth(a.nonce, wrong_role).encode()) == "bad_signature"


def test_a_signature_for_another_chain_is_refused():
    d, a = pair()
    a.receive_hello(d.hello)
    d.receive_hello(a.hello)
    other_chain = KEYS["bank"].sign(SIGNING_CONTEXT, "other-chain", transcript(DIALER, d.hello, a.hello))
    assert refused(a.receive_auth, Auth(a.nonce, other_chain).encode()) == "bad_signature"


def test_handshake_steps_out_of_order_are_misuse():
    d, a = pair()
    with pytest.raises(RuntimeError):
        d.receive_auth(b"anything")
    d.receive_hello(a.hello)
    with pytest.raises(RuntimeError):
        d.receive_hello(a.hello)


def test_messages_fit_the_handshake_frame_limit():
    long_chain = "c" * 128
    h = Handshake(DIALER, "a" * 64, SecretKey.generate(), long_chain, MEMBERS)
    assert len(h.hello) < HANDSHAKE_MAX_FRAME
    assert len(Auth(b"\x00" * 32, b"\x00" * 64).encode()) < HANDSHAKE_MAX_FRAME


# ----------------------------------------------------------------------------- backoff


def test_backoff_doubles_with_jitter_up_to_the_cap_and_resets():
    b = Backoff(0.1, 5.0, random.Random(7))
    delays = [b.next() for _ in range(12)]
    for i, delay in enumerate(delays):
        ceiling = min(5.0, 0.1 * 2**i)
        assert ceiling / 2 <= delay <= ceiling
    assert max(delays) <= 5.0 and delays[-1] >= 2.5
    b.reset()
    assert 0.05 <= b.next() <= 0.1
