"""Who may sign what: the replica's view of identities and signatures.

The replica never touches keys or algorithms directly; it calls an ``Auth`` object:

* ``names``               — validator names in office (sorted); ``n``/``f``/``quorum``.
* ``sign(context, payload)``              — sign as this replica (raises for observers).
* ``verify(sender, context, payload, sig)`` — ``None`` or raise ``SignatureError``.
* ``sign_block(header)`` / ``verify_block_sig(sender, header_hash, sig)`` — the
  ``block/commit`` signature that makes up commit certificates.
* ``verify_certificate(header, certificate)`` — ``None`` or raise.

:class:`Ed25519Auth` is the production implementation over ``ledger.crypto`` and
``ledger.block``.  The simulator may inject a cheap fake with the same interface
(tests only); the protocol code cannot tell the difference.
"""

from __future__ import annotations

from ledger.block import BlockHeader, CommitCertificate, ValidatorSet, sign_commit
from ledger.crypto import SecretKey
from ledger.errors import SignatureError

from .errors import Misuse


class Ed25519Auth:
    """Real Ed25519 signatures under ``ledger.crypto`` signing contexts."""

    def __init__(self, chain_id: str, validators: ValidatorSet, key: SecretKey | None):
        self.chain_id = chain_id
        self.validators = validators
        self.names = validators.names
        self.n = validators.n
        self.f = validators.f
        self.quorum = validators.quorum
        self.validator_set_hash = validators.hash()
        self._keys = validators.as_dict()
        self._key = key

    def sign(self, context: str, payload: bytes) -> bytes:
        if self._key is None:
            raise Misuse("an observer has no key and signs nothing")
        return self._key.sign(context, self.chain_id, payload)

    def verify(self, sender: str, context: str, payload: bytes, signature: bytes) -> None:
        key = self._keys.get(sender)
        if key is None:
            raise SignatureError("%s is not a validator" % sender, reason="non_member")
        key.verify(context, self.chain_id, payload, signature)

    def sign_block(self, header: BlockHeader) -> bytes:
        if self._key is None:
            raise Misuse("an observer has no key and signs nothing")
        return sign_commit(self._key, header)

    def verify_block_sig(self, sender: str, header_hash: bytes, signature: bytes) -> None:
        self.verify(sender, "block/commit", header_hash, signature)

    def verify_certificate(self, header: BlockHeader, certificate: CommitCertificate) -> None:
        certificate.verify(header, self.validators)
