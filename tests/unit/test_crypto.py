"""Identities, key files and domain-separated signatures."""

from __future__ import annotations

import json
import os

import pytest

from ledger.crypto import CONTEXTS, PublicKey, SecretKey, fingerprint, load_key_file, signing_bytes, write_key_file
from ledger.errors import KeyFileError, SignatureError

CHAIN = "test-chain"


def test_sign_and_verify():
    key = SecretKey.generate()
    sig = key.sign("entry/deposit", CHAIN, b"payload")
    assert key.public.verify("entry/deposit", CHAIN, b"payload", sig) is None


@pytest.mark.parametrize(
    "context, chain, payload",
    [
        ("block/commit", CHAIN, b"payload"),  # another purpose
        ("entry/deposit", "other-chain", b"payload"),  # another chain
        ("entry/deposit", CHAIN, b"payloaD"),  # other bytes
    ],
)
def test_a_signature_does_not_verify_for_another_purpose_chain_or_payload(context, chain, payload):
    key = SecretKey.generate()
    sig = key.sign("entry/deposit", CHAIN, b"payload")
    with pytest.raises(SignatureError):
        key.public.verify(context, chain, payload, sig)


def test_wrong_key_and_malformed_signatures_fail():
    key, other = SecretKey.generate(), SecretKey.generate()
    sig = key.sign("entry/deposit", CHAIN, b"p")
    with pytest.raises(SignatureError):
        other.public.verify("entry/deposit", CHAIN, b"p", sig)
    for bad in (sig[:-1], sig + b"\x00", b"", "x" * 64, None):
        with pytest.raises(SignatureError):
            key.public.verify("entry/deposit", CHAIN, b"p", bad)
    flipped = bytes([sig[0] ^ 1]) + sig[1:]
    with pytest.raises(SignatureError):
        key.public.verify("entry/deposit", CHAIN, b"p", flipped)


def test_signing_bytes_are_unambiguous_and_contexts_are_closed():
    assert signing_bytes("entry/deposit", "ab", b"c") != signing_bytes("entry/deposit", "a", b"bc")
    with pytest.raises(ValueError):
        signing_bytes("made/up", CHAIN, b"")
    with pytest.raises(ValueError):
        signing_bytes("entry/deposit", "", b"")
    assert "block/commit" in CONTEXTS and "http/request" in CONTEXTS


@pytest.mark.parametrize("size", [0, 1, 255, 256, 65535, 65536, 70000])
def test_signing_bytes_are_the_canonical_encoding_of_the_four_fields(size):
    from ledger.codec import encode
    from ledger.crypto import SIGNATURE_VERSION

    payload = os.urandom(size)
    for context in ("block/commit", "http/request"):
        for _ in range(2):  # the second time from the remembered prefix
            assert signing_bytes(context, CHAIN, payload) == encode([SIGNATURE_VERSION, context, CHAIN, payload])


def test_signing_bytes_remember_a_bounded_number_of_prefixes_and_still_check_their_input(monkeypatch):
    from ledger import crypto

    monkeypatch.setattr(crypto, "_PREFIXES", {})
    for i in range(crypto._MAX_PREFIXES + 50):  # chain ids from strangers
        signing_bytes("http/request", "chain-%d" % i, b"x")
    assert len(crypto._PREFIXES) == crypto._MAX_PREFIXES
    with pytest.raises(ValueError):
        signing_bytes("made/up", CHAIN, b"")
    with pytest.raises(TypeError):
        signing_bytes("http/request", CHAIN, "text")  # remembered prefix, still only bytes
    with pytest.raises(ValueError):  # the context and chain are checked before the payload, as always
        signing_bytes("made/up", CHAIN, "text")
    with pytest.raises(ValueError):
        signing_bytes("http/request", ["not", "a", "string"], b"x")


def test_public_key_parsing_and_fingerprint():
    key = SecretKey.generate()
    assert PublicKey.from_hex(key.public.hex) == key.public
    for bad in ("00" * 31, "zz" * 32, key.public.hex.upper(), 5):
        with pytest.raises((ValueError, TypeError)):
            PublicKey.from_hex(bad)
    fp = key.public.fingerprint()
    assert fp == fingerprint(key.public.raw) and len(fp) == 39 and fp.count(":") == 7
    assert "secret" not in repr(key).lower() or key.seed_hex() not in repr(key)
    assert key.seed_hex() not in repr(key)


def test_key_file_round_trip_with_mode_0600(tmp_path):
    key = SecretKey.generate()
    path = tmp_path / "court.key"
    write_key_file(path, "court", key)
    assert os.stat(path).st_mode & 0o777 == 0o600
    loaded = load_key_file(path)
    assert loaded.name == "court" and loaded.key.public == key.public
    with pytest.raises(FileExistsError):
        write_key_file(path, "court", key)


def test_key_file_readable_by_others_is_refused(tmp_path):
    path = tmp_path / "k.key"
    write_key_file(path, "court", SecretKey.generate())
    os.chmod(path, 0o644)
    with pytest.raises(KeyFileError, match="chmod 600") as info:
        load_key_file(path)
    assert info.value.reason == "unsafe_permissions"


def _write(path, doc, mode=0o600):
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    os.chmod(path, mode)


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d.update(format="evledger-key/2"), "format"),
        (lambda d: d.update(extra=1), "unknown fields extra"),
        (lambda d: d.pop("name"), "missing fields name"),
        (lambda d: d.update(algorithm="rsa"), "algorithm"),
        (lambda d: d.update(name="Court!"), "name"),
        (lambda d: d.update(secret_key="00"), "secret_key"),
        (lambda d: d.update(public_key="11" * 32), "does not belong"),
    ],
)
def test_malformed_key_files_name_the_problem(tmp_path, mutate, message):
    key = SecretKey.generate()
    doc = {"format": "evledger-key/1", "name": "court", "algorithm": "ed25519",
           "public_key": key.public.hex, "secret_key": key.seed_hex()}
    mutate(doc)
    path = tmp_path / "k.key"
    _write(path, doc)
    with pytest.raises(KeyFileError, match=message):
        load_key_file(path)


def test_garbage_and_missing_key_files(tmp_path):
    path = tmp_path / "k.key"
    _write(path, "not json {")
    with pytest.raises(KeyFileError, match="not valid JSON"):
        load_key_file(path)
    _write(path, "[]")
    with pytest.raises(KeyFileError, match="JSON object"):
        load_key_file(path)
    _write(path, "x" * 10000)
    with pytest.raises(KeyFileError, match="too large"):
        load_key_file(path)
    with pytest.raises(KeyFileError, match="does not exist"):
        load_key_file(tmp_path / "missing.key")
    with pytest.raises(KeyFileError, match="regular file"):
        load_key_file(tmp_path)


def test_signatures_are_libsodiums_ed25519_over_the_signing_bytes():
    import nacl.signing

    seed = os.urandom(32)
    key = SecretKey(seed)
    reference = nacl.signing.SigningKey(seed)
    assert key.public.raw == bytes(reference.verify_key)
    for payload in (b"", b"p" * 300):
        message = signing_bytes("block/commit", CHAIN, payload)
        assert key.sign("block/commit", CHAIN, payload) == reference.sign(message).signature


def test_verify_refuses_a_key_of_the_wrong_length_even_one_built_around_its_checks():
    key = SecretKey.generate()
    sig = key.sign("block/commit", CHAIN, b"p")
    short = object.__new__(PublicKey)  # __post_init__ would refuse it; libsodium's binding would not
    object.__setattr__(short, "raw", key.public.raw[:31])
    with pytest.raises(SignatureError):
        short.verify("block/commit", CHAIN, b"p", sig)
