"""Cheap stand-in for ``consensus.auth.Ed25519Auth`` — SIMULATOR ONLY.

Signatures are ``SHA-256(secret(name) | context | payload)`` doubled to 64 bytes,
where ``secret(name)`` is private to this module; a simulated Byzantine replica
only ever signs with its own name, so it cannot forge another's.  It exercises the
same code paths (every message signed and verified, certificates counted) at a
fraction of Ed25519's cost so that CI can run thousands of scenarios; a subset of
scenarios runs with the real ``Ed25519Auth``.
"""

from __future__ import annotations

import hashlib

from ledger.block import BlockHeader, CommitCertificate, max_faulty, quorum
from ledger.errors import SignatureError


def _secret(name: str) -> bytes:
    return hashlib.sha256(b"sim-secret/" + name.encode()).digest()


def fake_sign(name: str, context: str, payload: bytes) -> bytes:
    d = hashlib.sha256(_secret(name) + context.encode() + b"\x00" + payload).digest()
    return d + d


class FakeAuth:
    def __init__(self, name: str | None, names: tuple[str, ...]):
        self.names = tuple(sorted(names))
        self.n = len(self.names)
        self.f = max_faulty(self.n)
        self.quorum = quorum(self.n)
        self._name = name
        self._members = frozenset(self.names)
        self.validator_set_hash = hashlib.sha256(b"sim-validators/" + ",".join(self.names).encode()).digest()

    def sign(self, context: str, payload: bytes) -> bytes:
        return fake_sign(self._name, context, payload)

    def verify(self, sender: str, context: str, payload: bytes, signature: bytes) -> None:
        if sender not in self._members:
            raise SignatureError("%s is not a validator" % sender, reason="non_member")
        if signature != fake_sign(sender, context, payload):
            raise SignatureError("bad signature")

    def sign_block(self, header: BlockHeader) -> bytes:
        return fake_sign(self._name, "block/commit", header.hash())

    def verify_block_sig(self, sender: str, header_hash: bytes, signature: bytes) -> None:
        self.verify(sender, "block/commit", header_hash, signature)

    def verify_certificate(self, header: BlockHeader, cert: CommitCertificate) -> None:
        if header.hash() != cert.header_hash:
            raise SignatureError("certificate is for another header")
        if header.validator_set_hash != self.validator_set_hash:
            raise SignatureError("header names another validator set")
        valid = 0
        for name, sig in cert.signatures:
            if name in self._members and sig == fake_sign(name, "block/commit", cert.header_hash):
                valid += 1
        if valid < self.quorum:
            raise SignatureError("only %d valid commit signatures" % valid, reason="insufficient_quorum")
