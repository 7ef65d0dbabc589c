"""Blocks, validator sets and commit certificates.

Theory of operation
-------------------
A block is a header plus the :class:`~ledger.model.EntryRecord` s it orders.  The
header commits to everything a later reader must trust:

* ``prev_hash``: hash of the previous header (all zero bytes at height 1's parent),
  so headers form a hash chain;
* ``entries_root``/``entry_count``: RFC 9162 root over this block's entry leaves;
* ``history_size``/``history_root``: the **history tree** over every entry ever
  committed, after this block.  Any two heads are linked by a consistency proof and
  any entry can be proven against any later head;
* ``timestamp`` (ms since the Unix epoch, UTC): the legal deposit time, checked by
  every validator against its clock (``consensus`` enforces the rule);
* ``view``, ``proposer``: the PBFT view and primary that proposed it;
* ``validator_set_hash``: which validators were in office, so a certificate can be
  checked against the right keys.

``header_hash = SHA-256(encode(header_wire))``.  A :class:`CommitCertificate` holds
signatures of at least ``quorum(n)`` distinct validators in office over that hash in
the context ``"block/commit"``; any single node's answer is checkable with it.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar

from .codec import Fields, array_header, decode, encode, encode_wire, Limits, DEFAULT_LIMITS
from .crypto import PublicKey, SecretKey
from .errors import DecodeError, SignatureError
from .model import EntryRecord, _Typed
from .wire import KINDS, check_spec

ZERO_HASH = bytes(32)
MAX_BLOCK_ENTRIES = 100_000
MAX_VALIDATORS = 256


def max_faulty(n: int) -> int:
    """f: the most Byzantine validators a set of ``n`` tolerates."""
    return (n - 1) // 3


def quorum(n: int) -> int:
    """Smallest number of votes such that any two quorums share ``f + 1`` validators.

    ``2q - n >= f + 1``; for ``n = 3f + 1`` this is the familiar ``2f + 1``.
    """
    return (n + max_faulty(n)) // 2 + 1


@check_spec
@dataclass(frozen=True, slots=True)
class BlockHeader(_Typed):
    chain_id: str
    height: int
    prev_hash: bytes
    entries_root: bytes
    entry_count: int
    history_size: int
    history_root: bytes
    timestamp: int
    view: int
    proposer: str
    validator_set_hash: bytes

    TAG: ClassVar[str] = "block-header"
    SPEC = (
        ("chain_id", "chain_id"),
        ("height", "uint"),
        ("prev_hash", "hash"),
        ("entries_root", "hash"),
        ("entry_count", "uint"),
        ("history_size", "uint"),
        ("history_root", "hash"),
        ("timestamp", "time_ms"),
        ("view", "uint"),
        ("proposer", "name"),
        ("validator_set_hash", "hash"),
    )
    # The hash, once computed: a block's header is hashed about ten times on its way
    # through a node (pre-prepare, votes, validation, append, index, certificate).
    _hash: bytes | None = field(default=None, init=False, repr=False, compare=False)
    WIRE_DEFAULTS: ClassVar[tuple] = (("_hash", None),)  # set by wire.from_wire, which skips __init__

    def hash(self) -> bytes:
        known = self._hash
        if known is None:
            known = hashlib.sha256(self.encode()).digest()
            object.__setattr__(self, "_hash", known)
        return known


@dataclass(frozen=True, slots=True)
class ValidatorSet:
    """The validators in office: names → public keys, in name order."""

    members: tuple[tuple[str, PublicKey], ...]

    def __post_init__(self) -> None:
        members = tuple(sorted(self.members, key=lambda m: m[0]))
        names = [name for name, _ in members]
        if not members:
            raise ValueError("a validator set needs at least one validator")
        if len(set(names)) != len(names):
            raise ValueError("validator names must be unique")
        if len({key.raw for _, key in members}) != len(members):
            raise ValueError("validator keys must be unique")
        if len(members) > MAX_VALIDATORS:
            raise ValueError("at most %d validators" % MAX_VALIDATORS)
        for name, key in members:
            KINDS["name"](name, "validator_set.name")
            if not isinstance(key, PublicKey):
                raise TypeError("validator keys must be PublicKey")
        object.__setattr__(self, "members", members)

    @property
    def n(self) -> int:
        return len(self.members)

    @property
    def f(self) -> int:
        return max_faulty(self.n)

    @property
    def quorum(self) -> int:
        return quorum(self.n)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.members)

    def key(self, name: str) -> PublicKey | None:
        for member, key in self.members:
            if member == name:
                return key
        return None

    def as_dict(self) -> dict[str, PublicKey]:
        return dict(self.members)

    def wire(self) -> list:
        return ["validator-set", 1, [[name, key.raw] for name, key in self.members]]

    def hash(self) -> bytes:
        return hashlib.sha256(encode(self.wire())).digest()


@dataclass(frozen=True, slots=True)
class CommitCertificate:
    """Signatures of a quorum of validators over one header hash."""

    header_hash: bytes
    signatures: tuple[tuple[str, bytes], ...]

    def __post_init__(self) -> None:
        KINDS["hash"](self.header_hash, "certificate.header_hash")
        sigs = tuple(sorted(self.signatures, key=lambda s: s[0]))
        names = [name for name, _ in sigs]
        if len(set(names)) != len(names):
            raise DecodeError("certificate.signatures: a validator appears twice")
        for name, sig in sigs:
            KINDS["name"](name, "certificate.signatures.name")
            KINDS["signature"](sig, "certificate.signatures[%s]" % name)
        object.__setattr__(self, "signatures", sigs)

    def wire(self) -> list:
        return ["commit-certificate", 1, self.header_hash, [[name, sig] for name, sig in self.signatures]]

    def encode(self) -> bytes:
        return encode_wire(self.wire())

    @classmethod
    def from_wire(cls, items: Any, where: str = "certificate") -> "CommitCertificate":
        reader = Fields(where, items, 4)
        reader.header("commit-certificate", 1)
        header_hash = reader.bytes("header_hash", 32, 32)
        pairs = []
        for i, pair in enumerate(reader.list("signatures", MAX_VALIDATORS)):
            sub = Fields("%s.signatures[%d]" % (where, i), pair, 2)
            pairs.append((sub.str("name", 64), sub.bytes("signature", 64, 64)))
        if [p[0] for p in pairs] != sorted(p[0] for p in pairs):
            raise DecodeError("%s.signatures: must be sorted by validator name" % where, reason="non_canonical")
        return cls(header_hash, tuple(pairs))

    def verify(self, header: BlockHeader, validators: ValidatorSet) -> None:
        """Raise unless a quorum of ``validators`` signed ``header``.

        Signatures from non-members or that fail are not counted; the error says
        how many valid ones were found against how many are needed.
        """
        if header.hash() != self.header_hash:
            raise SignatureError("certificate is for another header", reason="certificate_mismatch")
        if header.validator_set_hash != validators.hash():
            raise SignatureError("header names another validator set", reason="validator_set_mismatch")
        keys = validators.as_dict()
        valid = 0
        for name, sig in self.signatures:
            key = keys.get(name)
            if key is None:
                continue
            try:
                key.verify("block/commit", header.chain_id, self.header_hash, sig)
            except SignatureError:
                continue
            valid += 1
            if valid >= validators.quorum:
                return
        raise SignatureError(
            "only %d valid commit signatures, %d needed" % (valid, validators.quorum), reason="insufficient_quorum"
        )


def sign_commit(key: SecretKey, header: BlockHeader) -> bytes:
    """A validator's signature for the block's commit certificate."""
    return key.sign("block/commit", header.chain_id, header.hash())


_BLOCK_PREFIX = array_header(4) + encode("block") + encode(1)


@dataclass(frozen=True, slots=True)
class Block:
    """A header and its entry records, in order (certificate kept beside it)."""

    header: BlockHeader
    records: tuple[EntryRecord, ...]

    def wire(self) -> list:
        return ["block", 1, self.header.wire(), [r.wire() for r in self.records]]

    def encode(self) -> bytes:
        """``encode(self.wire())``, spliced from each record's (remembered) canonical bytes."""
        return b"".join([_BLOCK_PREFIX, encode_wire(self.header.wire()), array_header(len(self.records)),
                         *(r.encode() for r in self.records)])

    @classmethod
    def from_wire(cls, items: Any, where: str = "block") -> "Block":
        from .wire import from_wire

        reader = Fields(where, items, 4)
        reader.header("block", 1)
        header_items, _ = reader.raw("header")
        header = from_wire(BlockHeader, header_items)
        records = reader.list("records", MAX_BLOCK_ENTRIES)
        if len(records) != header.entry_count:
            raise DecodeError("%s: header announces %d entries, body has %d" % (where, header.entry_count, len(records)))
        return cls(header, tuple(EntryRecord.from_wire(r, "%s.records[%d]" % (where, i)) for i, r in enumerate(records)))

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> "Block":
        return cls.from_wire(decode(data, limits, typed=True))

    @staticmethod
    def height_of_wire(items: Any, where: str = "block") -> int:
        """The height in a block's wire array, from its checked header alone (records unread)."""
        from .wire import from_wire

        reader = Fields(where, items, 4)
        reader.header("block", 1)
        header_items, _ = reader.raw("header")
        return from_wire(BlockHeader, header_items).height

    def leaf_hashes(self) -> list[bytes]:
        return [r.entry.leaf_hash() for r in self.records]

