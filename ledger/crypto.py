"""Identities and domain-separated Ed25519 signatures.

Theory of operation
-------------------
Every member of a consortium (a node or an institution's client) is one Ed25519 key
pair.  A signature is never made over raw object bytes.  It is made over

    encode(["evledger-sig/1", context, chain_id, payload])

(canonical msgpack, see ``ledger.codec``), where ``context`` names the purpose
(one of :data:`CONTEXTS`) and ``chain_id`` the consortium.  A signature made for one
purpose or on one chain therefore never verifies for another: a deposit signature
cannot be replayed as a commit vote, nor a test chain's vote on the production chain.

Key files are versioned JSON (``"format": "evledger-key/1"``) holding the 32-byte
seed and the public key in hex.  They are created with mode 0600 (never widened
afterwards) and refused on load if group or others can read them.

Fingerprints are ``SHA-256("evledger/key-fingerprint/1\\x00" || public_key)``,
shown as the first 16 bytes in hex, in groups of four.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import nacl.exceptions
import nacl.signing
from nacl.bindings import crypto_sign, crypto_sign_open, crypto_sign_seed_keypair

from .codec import encode
from .errors import KeyFileError, SignatureError

SIGNATURE_VERSION = "evledger-sig/1"
KEY_FILE_FORMAT = "evledger-key/1"
PUBLIC_KEY_SIZE = 32
SIGNATURE_SIZE = 64

# Every purpose a signature can have.  Adding one is a protocol change: document it
# in docs/data_model.md.
CONTEXTS = frozenset(
    {
        "entry/deposit",
        "entry/credit_event",
        "entry/case_event",
        "entry/access_record",
        "entry/governance",
        "block/commit",
        "consensus/pre_prepare",
        "consensus/prepare",
        "consensus/commit",
        "consensus/checkpoint",
        "consensus/view_change",
        "consensus/new_view",
        "consensus/complaint",
        "consensus/state_transfer",
        "peer/handshake",
        "http/request",
    }
)

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
HEX64_RE = re.compile(r"[0-9a-f]{64}")


_PREFIXES: dict[tuple[str, str], bytes] = {}  # (context, chain_id) -> the bytes before the payload
_MAX_PREFIXES = 256


def _bin_header(size: int) -> bytes:
    """msgpack's bin 8/16/32 header for ``size`` bytes (what ``encode`` emits for bytes)."""
    if size < 0x100:
        return b"\xc4" + size.to_bytes(1, "big")
    if size < 0x10000:
        return b"\xc5" + size.to_bytes(2, "big")
    return b"\xc6" + size.to_bytes(4, "big")


def signing_bytes(context: str, chain_id: str, payload: bytes) -> bytes:
    """The exact bytes that are signed for ``payload`` in ``context`` on ``chain_id``:
    ``encode([SIGNATURE_VERSION, context, chain_id, payload])``.

    Every signature and verification goes through here (seven of each per block and
    node, and one per deposit), so the part before the payload is encoded once per
    context and chain.
    """
    prefix = _PREFIXES.get((context, chain_id)) if type(context) is str and type(chain_id) is str else None
    if prefix is None:  # checked in this order, as always
        if context not in CONTEXTS:
            raise ValueError("unknown signing context %r" % context)
        if not isinstance(chain_id, str) or not chain_id:
            raise ValueError("chain_id must be a non-empty string")
        if not isinstance(payload, bytes):
            raise TypeError("payload must be bytes")
        prefix = encode([SIGNATURE_VERSION, context, chain_id, b""])[:-2]  # less the empty payload's c4 00
        if len(_PREFIXES) < _MAX_PREFIXES:  # chain ids can come from strangers: bounded
            _PREFIXES[(context, chain_id)] = prefix
    elif not isinstance(payload, bytes):
        raise TypeError("payload must be bytes")
    return prefix + _bin_header(len(payload)) + payload


@dataclass(frozen=True, slots=True)
class PublicKey:
    """An Ed25519 public key (32 raw bytes)."""

    raw: bytes

    def __post_init__(self) -> None:
        if not isinstance(self.raw, bytes) or len(self.raw) != PUBLIC_KEY_SIZE:
            raise ValueError("an Ed25519 public key is 32 bytes")

    @classmethod
    def from_hex(cls, text: str) -> "PublicKey":
        if not isinstance(text, str) or not HEX64_RE.fullmatch(text):
            raise ValueError("expected 64 lowercase hex characters")
        return cls(bytes.fromhex(text))

    @property
    def hex(self) -> str:
        return self.raw.hex()

    def fingerprint(self) -> str:
        return fingerprint(self.raw)

    def verify(self, context: str, chain_id: str, payload: bytes, signature: bytes) -> None:
        """Return ``None`` if ``signature`` is valid; raise :class:`SignatureError` if not."""
        if not isinstance(signature, bytes) or len(signature) != SIGNATURE_SIZE:
            raise SignatureError("signature must be 64 bytes")
        if len(self.raw) != PUBLIC_KEY_SIZE:  # the binding below does not check it (__post_init__ does)
            raise SignatureError("an Ed25519 public key is 32 bytes")
        message = signing_bytes(context, chain_id, payload)
        try:
            # The binding itself: a VerifyKey object per call costs a quarter as much again.
            crypto_sign_open(signature + message, self.raw)
        except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
            raise SignatureError("signature does not verify for key %s in context %s" % (self.fingerprint(), context)) from None


def fingerprint(public_key: bytes) -> str:
    digest = hashlib.sha256(b"evledger/key-fingerprint/1\x00" + public_key).hexdigest()[:32]
    return ":".join(digest[i : i + 4] for i in range(0, 32, 4))


class SecretKey:
    """An Ed25519 signing key.  ``repr`` never shows the secret."""

    __slots__ = ("_key", "_expanded", "public")

    def __init__(self, seed: bytes):
        if not isinstance(seed, bytes) or len(seed) != 32:
            raise ValueError("an Ed25519 seed is 32 bytes")
        self._key = nacl.signing.SigningKey(seed)
        public, self._expanded = crypto_sign_seed_keypair(seed)  # libsodium's 64-byte signing key
        self.public = PublicKey(public)

    @classmethod
    def generate(cls) -> "SecretKey":
        return cls(bytes(nacl.signing.SigningKey.generate()))

    def sign(self, context: str, chain_id: str, payload: bytes) -> bytes:
        return crypto_sign(signing_bytes(context, chain_id, payload), self._expanded)[:SIGNATURE_SIZE]

    def seed_hex(self) -> str:
        return bytes(self._key).hex()

    def __repr__(self) -> str:
        return "SecretKey(public=%s)" % self.public.fingerprint()


@dataclass(frozen=True)
class KeyFile:
    """A loaded key file: the member name it belongs to and its key."""

    name: str
    key: SecretKey


def write_key_file(path: str | os.PathLike, name: str, key: SecretKey, *, overwrite: bool = False) -> None:
    """Write ``key`` for member ``name`` to ``path`` with mode 0600.

    The file is created with 0600 from the start (no window where it is readable),
    written to a temporary name, fsynced, then renamed into place.
    """
    if not NAME_RE.fullmatch(name):
        raise ValueError("member names are lowercase [a-z0-9-], 1-64 characters: %r" % name)
    path = Path(path)
    if path.exists() and not overwrite:
        raise FileExistsError("refusing to overwrite existing key file %s" % path)
    doc = {
        "format": KEY_FILE_FORMAT,
        "name": name,
        "algorithm": "ed25519",
        "public_key": key.public.hex,
        "secret_key": key.seed_hex(),
    }
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (json.dumps(doc, indent=2) + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def load_key_file(path: str | os.PathLike) -> KeyFile:
    """Load and validate a key file; refuse one that group or others can read."""
    path = Path(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise KeyFileError("key file %s does not exist" % path, reason="key_not_found") from None
    if not stat.S_ISREG(st.st_mode):
        raise KeyFileError("key file %s is not a regular file" % path)
    if st.st_mode & 0o077:
        raise KeyFileError(
            "key file %s has mode %o: it must not be accessible to group or others (chmod 600 %s)"
            % (path, stat.S_IMODE(st.st_mode), path),
            reason="unsafe_permissions",
        )
    if st.st_size > 4096:
        raise KeyFileError("key file %s is too large to be a key file" % path)
    try:
        doc = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise KeyFileError("key file %s is not valid JSON: %s" % (path, exc)) from None
    return _parse_key_doc(doc, path)


def _parse_key_doc(doc: object, path: Path) -> KeyFile:
    if not isinstance(doc, dict):
        raise KeyFileError("key file %s: expected a JSON object" % path)
    if doc.get("format") != KEY_FILE_FORMAT:
        raise KeyFileError("key file %s: format must be %r, got %r" % (path, KEY_FILE_FORMAT, doc.get("format")))
    expected = {"format", "name", "algorithm", "public_key", "secret_key"}
    unknown = set(doc) - expected
    if unknown:
        raise KeyFileError("key file %s: unknown fields %s" % (path, ", ".join(sorted(unknown))))
    missing = expected - set(doc)
    if missing:
        raise KeyFileError("key file %s: missing fields %s" % (path, ", ".join(sorted(missing))))
    if doc["algorithm"] != "ed25519":
        raise KeyFileError("key file %s: algorithm must be 'ed25519'" % path)
    name = doc["name"]
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise KeyFileError("key file %s: name must be lowercase [a-z0-9-]" % path)
    for field in ("public_key", "secret_key"):
        if not isinstance(doc[field], str) or not HEX64_RE.fullmatch(doc[field]):
            raise KeyFileError("key file %s: %s must be 64 lowercase hex characters" % (path, field))
    key = SecretKey(bytes.fromhex(doc["secret_key"]))
    if key.public.hex != doc["public_key"]:
        raise KeyFileError("key file %s: public_key does not belong to secret_key" % path)
    return KeyFile(name=name, key=key)
