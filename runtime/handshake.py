"""The peer handshake: two consortium members prove who they are and agree on session keys.

Theory of operation
-------------------
Both ends know the consortium's members (name -> Ed25519 public key, from genesis)
and the chain id.  Over a fresh TCP connection, in frames of at most
:data:`~runtime.frames.HANDSHAKE_MAX_FRAME` bytes, each side sends at once::

    HELLO = encode(["evledger-peer-hello", 1, chain_id, name, public_key(32), nonce(32), ephemeral(32)])

where ``nonce`` is 32 fresh random bytes and ``ephemeral`` a fresh X25519 public
key.  On the peer's HELLO each side checks, in order: the encoding (``malformed_hello``,
``unsupported_version``), the chain (``wrong_chain``), that it is not talking to itself
(``self_connection``), the name (``unknown_member``), that the key is the one genesis
holds for that name (``unknown_key``) and, when it dialled, that it reached the member
it meant to (``unexpected_peer``).  Then it answers::

    AUTH = encode(["evledger-peer-auth", 1, peer_nonce(32), signature(64)])
    signature = Ed25519 over signing_bytes("peer/handshake", chain_id,
                    encode(["evledger-peer-auth/1", signer_role, dialer_hello, acceptor_hello]))

``signer_role`` is ``"dialer"`` or ``"acceptor"``; the two hellos are the exact bytes
sent.  On the peer's AUTH each side checks that it echoes *its own* nonce
(``replayed_auth``: an AUTH captured from another session) and that the signature
verifies under the peer's genesis key (``bad_signature``).

Why this is enough:

* Fresh nonces both ways: an AUTH only verifies in the session whose two nonces it
  signs, so recorded handshakes cannot be replayed in either direction.
* Both names, both keys and both ephemeral keys are inside both hellos, and both
  hellos are inside what is signed: a signature made in a session with Mallory
  names Mallory and cannot be spliced into a session that claims to be with anyone
  else; the role label keeps a signature from being reflected back as the other
  side's.
* Session keys come from the ephemeral X25519 exchange, salted with the transcript::

      salt = SHA-256(encode(["evledger-peer-keys/1", dialer_hello, acceptor_hello]))
      okm  = HKDF-SHA256(ikm = X25519(own ephemeral, peer ephemeral), salt, info = b"evledger-peer/1 session keys", L = 64)
      dialer -> acceptor key = okm[0:32]; acceptor -> dialer key = okm[32:64]

  and every later frame is sealed with them (``runtime/frames.py``), so what the
  handshake authenticates is the whole connection, not only its first round trip;
  an on-path attacker can cut it but not read, alter or inject frames.  Ephemeral
  keys give forward secrecy: a node key stolen later does not open recorded traffic.

This module is sans-I/O: :class:`Handshake` turns received bytes into bytes to send
or into a :class:`Session`; the caller owns the socket and the deadline.  Every
refusal is a :class:`HandshakeError` with a ``reason``.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass, field
from typing import Mapping

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from ledger.codec import Fields, Limits, decode, encode
from ledger.crypto import NAME_RE, PublicKey, SecretKey
from ledger.errors import DecodeError, InputError, SignatureError

from .frames import Opener, Sealer

HELLO_TAG = "evledger-peer-hello"
AUTH_TAG = "evledger-peer-auth"
# The peer protocol version: 2 since COMPLAINT and the six-field VIEW-CHANGE
# (docs/consensus.md).  Nodes of different versions refuse each other at the
# handshake (``unsupported_version``) instead of misreading consensus messages.
VERSION = 2
SIGNING_CONTEXT = "peer/handshake"
TRANSCRIPT_LABEL = "evledger-peer-auth/1"
KEYS_LABEL = "evledger-peer-keys/1"
HKDF_INFO = b"evledger-peer/1 session keys"
NONCE_SIZE = 32
DIALER = "dialer"
ACCEPTOR = "acceptor"
ROLES = (DIALER, ACCEPTOR)
MAX_CHAIN_ID = 128
CHAIN_ID_RE = re.compile(r"[^\x00-\x1f\x7f]{1,%d}" % MAX_CHAIN_ID)

_LIMITS = Limits(max_bytes=1024, max_str=256, max_bin=64, max_array=8, max_map=1)


class HandshakeError(InputError):
    """The other end failed the handshake; ``reason`` says how (see the module docstring)."""

    reason = "handshake_failed"


@dataclass(frozen=True, slots=True)
class Hello:
    """A decoded HELLO.  ``encode()`` gives its canonical bytes."""

    chain_id: str
    name: str
    public_key: bytes
    nonce: bytes
    ephemeral: bytes

    def encode(self) -> bytes:
        return encode([HELLO_TAG, VERSION, self.chain_id, self.name, self.public_key, self.nonce, self.ephemeral])

    @classmethod
    def decode(cls, data: bytes) -> "Hello":
        try:
            f = Fields("hello", decode(data, _LIMITS), 7)
            f.header(HELLO_TAG, VERSION)
            return cls(
                chain_id=f.str("chain_id", MAX_CHAIN_ID, CHAIN_ID_RE),
                name=f.str("name", 64, NAME_RE),
                public_key=f.bytes("public_key", 32),
                nonce=f.bytes("nonce", NONCE_SIZE),
                ephemeral=f.bytes("ephemeral", 32),
            )
        except DecodeError as exc:
            reason = "unsupported_version" if exc.reason == "unsupported_version" else "malformed_hello"
            raise HandshakeError("HELLO refused: %s" % exc, reason=reason) from None


@dataclass(frozen=True, slots=True)
class Auth:
    """A decoded AUTH: the echoed nonce of its recipient and the signature."""

    nonce_echo: bytes
    signature: bytes

    def encode(self) -> bytes:
        return encode([AUTH_TAG, VERSION, self.nonce_echo, self.signature])

    @classmethod
    def decode(cls, data: bytes) -> "Auth":
        try:
            f = Fields("auth", decode(data, _LIMITS), 4)
            f.header(AUTH_TAG, VERSION)
            return cls(nonce_echo=f.bytes("nonce", NONCE_SIZE), signature=f.bytes("signature", 64))
        except DecodeError as exc:
            reason = "unsupported_version" if exc.reason == "unsupported_version" else "malformed_auth"
            raise HandshakeError("AUTH refused: %s" % exc, reason=reason) from None


def transcript(signer_role: str, dialer_hello: bytes, acceptor_hello: bytes) -> bytes:
    """The payload each side signs (under context ``peer/handshake`` and the chain id)."""
    if signer_role not in ROLES:
        raise ValueError("signer_role must be %r or %r" % ROLES)
    return encode([TRANSCRIPT_LABEL, signer_role, dialer_hello, acceptor_hello])


def derive_keys(shared: bytes, dialer_hello: bytes, acceptor_hello: bytes) -> tuple[bytes, bytes]:
    """``(dialer->acceptor key, acceptor->dialer key)`` from the X25519 secret and the hellos."""
    salt = hashlib.sha256(encode([KEYS_LABEL, dialer_hello, acceptor_hello])).digest()
    okm = HKDF(algorithm=hashes.SHA256(), length=64, salt=salt, info=HKDF_INFO).derive(shared)
    return okm[:32], okm[32:]


def session_id(dialer_hello: bytes, acceptor_hello: bytes) -> str:
    """A public label of a session (both ends compute the same), for correlating logs."""
    return hashlib.sha256(encode([KEYS_LABEL, dialer_hello, acceptor_hello])).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Session:
    """An authenticated session: who the peer is and the keys of both directions."""

    peer: str
    peer_key: PublicKey
    role: str
    session_id: str
    send_key: bytes = field(repr=False)
    recv_key: bytes = field(repr=False)

    def sealer(self) -> Sealer:
        return Sealer(self.send_key)

    def opener(self) -> Opener:
        return Opener(self.recv_key)


class Handshake:
    """One side of one handshake (sans-I/O).

    Send :attr:`hello` first; pass the peer's HELLO body to :meth:`receive_hello`
    and send the AUTH it returns; pass the peer's AUTH body to :meth:`receive_auth`,
    which returns the :class:`Session`.  Any refusal raises :class:`HandshakeError`;
    calling out of order raises ``RuntimeError`` (caller misuse).  ``nonce`` and
    ``ephemeral`` (an X25519 private key) are fresh random bytes unless given (tests
    and vectors only).
    """

    def __init__(
        self,
        role: str,
        name: str,
        key: SecretKey,
        chain_id: str,
        members: Mapping[str, PublicKey],
        *,
        expected: str | None = None,
        nonce: bytes | None = None,
        ephemeral: bytes | None = None,
    ):
        if role not in ROLES:
            raise ValueError("role must be %r or %r" % ROLES)
        if not isinstance(chain_id, str) or not CHAIN_ID_RE.fullmatch(chain_id):
            raise ValueError("chain_id must be 1-%d printable characters" % MAX_CHAIN_ID)
        self.role = role
        self._name = name
        self._key = key
        self._chain_id = chain_id
        self._members = members
        self._expected = expected
        self._nonce = os.urandom(NONCE_SIZE) if nonce is None else nonce
        self._ephemeral = (
            X25519PrivateKey.generate() if ephemeral is None else X25519PrivateKey.from_private_bytes(ephemeral)
        )
        self.hello = Hello(
            chain_id, name, key.public.raw, self._nonce, self._ephemeral.public_key().public_bytes_raw()
        ).encode()
        self.peer_hello: Hello | None = None
        self._peer_hello_bytes = b""
        self._done = False

    @property
    def nonce(self) -> bytes:
        """This side's nonce (public: it is in :attr:`hello`)."""
        return self._nonce

    @property
    def peer_name(self) -> str | None:
        """The name the peer claims (known once a HELLO decoded; not yet authenticated)."""
        return None if self.peer_hello is None else self.peer_hello.name

    def _hellos(self) -> tuple[bytes, bytes]:
        if self.role == DIALER:
            return self.hello, self._peer_hello_bytes
        return self._peer_hello_bytes, self.hello

    def receive_hello(self, data: bytes) -> bytes:
        """Check the peer's HELLO; return the AUTH body to send."""
        if self.peer_hello is not None:
            raise RuntimeError("receive_hello() called twice")
        hello = Hello.decode(data)
        self.peer_hello = hello
        if hello.chain_id != self._chain_id:
            raise HandshakeError("peer %r is on another chain" % hello.name, reason="wrong_chain")
        if hello.name == self._name:
            raise HandshakeError("peer claims this node's own name %r" % hello.name, reason="self_connection")
        member = self._members.get(hello.name)
        if member is None:
            raise HandshakeError("%r is not a member of the consortium" % hello.name, reason="unknown_member")
        if member.raw != hello.public_key:
            raise HandshakeError(
                "%r presented key %s; genesis has %s"
                % (hello.name, PublicKey(hello.public_key).fingerprint(), member.fingerprint()),
                reason="unknown_key",
            )
        if self._expected is not None and hello.name != self._expected:
            raise HandshakeError(
                "dialled %r but reached %r" % (self._expected, hello.name), reason="unexpected_peer"
            )
        self._peer_hello_bytes = bytes(data)
        dialer_hello, acceptor_hello = self._hellos()
        signature = self._key.sign(
            SIGNING_CONTEXT, self._chain_id, transcript(self.role, dialer_hello, acceptor_hello)
        )
        return Auth(hello.nonce, signature).encode()

    def receive_auth(self, data: bytes) -> Session:
        """Check the peer's AUTH; return the established :class:`Session`."""
        if not self._peer_hello_bytes or self._done:
            raise RuntimeError("receive_auth() needs a successful receive_hello() first, once")
        self._done = True
        auth = Auth.decode(data)
        hello = self.peer_hello
        assert hello is not None
        if auth.nonce_echo != self._nonce:
            raise HandshakeError("AUTH from %r answers another session's nonce" % hello.name, reason="replayed_auth")
        dialer_hello, acceptor_hello = self._hellos()
        peer_role = ACCEPTOR if self.role == DIALER else DIALER
        peer_key = self._members[hello.name]
        try:
            peer_key.verify(
                SIGNING_CONTEXT, self._chain_id, transcript(peer_role, dialer_hello, acceptor_hello), auth.signature
            )
        except SignatureError:
            raise HandshakeError("AUTH signature from %r does not verify" % hello.name, reason="bad_signature") from None
        try:
            shared = self._ephemeral.exchange(X25519PublicKey.from_public_bytes(hello.ephemeral))
        except ValueError:
            raise HandshakeError("peer %r sent a degenerate ephemeral key" % hello.name, reason="bad_ephemeral") from None
        d2a, a2d = derive_keys(shared, dialer_hello, acceptor_hello)
        send_key, recv_key = (d2a, a2d) if self.role == DIALER else (a2d, d2a)
        return Session(
            peer=hello.name,
            peer_key=peer_key,
            role=self.role,
            session_id=session_id(dialer_hello, acceptor_hello),
            send_key=send_key,
            recv_key=recv_key,
        )
