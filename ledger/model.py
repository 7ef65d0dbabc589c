"""Entries: what the chain records.

Theory of operation
-------------------
An **entry** is a signed body of one of the types below; its wire form is
``["entry", 1, body_wire, signature]`` and its Merkle leaf is
``leaf_hash(encode(entry_wire))``.  The body's signer signs
``encode(body_wire)`` in the context ``"entry/<tag>"`` on the chain's id
(see ``ledger.crypto``), so a body signed for one chain or one type is worthless
elsewhere.

Body types (a tagged, versioned union; unknown tags and versions are refused):

* ``deposit``: a **batch** of 1..N evidence items signed once by a depositor.  The
  body holds ``items_root``, the RFC 9162 root over the items' leaf hashes, so one
  signature covers the batch while each item can still be proven on its own
  (item → items_root → entry → block).  A single deposit is a batch of one.
* ``credit_event``: a judicial-credit event reported by a credit source.
* ``case_event``: an event in a case (evidence attached, service of process, ...).
* ``access_record``: who retrieved which evidence, recorded by the serving node.
* ``governance``: reserved for membership changes; not accepted by this version.

Private metadata never enters a leaf.  An item (or event) carries only
``private_commitment = SHA-256("evledger/private-meta/1\\x00" || encode(private_wire))``
where the private part includes a random 16-byte salt, so a published receipt
reveals nothing about private fields, not even by guessing low-entropy values.
The private parts travel beside the entry inside an :class:`EntryRecord`, which is
what blocks carry and stores keep.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, ClassVar, Union

from . import merkle
from .codes import DepositCode, derive_code
from .codec import Fields, array_header, decode, encode, encode_wire, pack, Limits, DEFAULT_LIMITS
from .crypto import PublicKey, SecretKey
from .errors import DecodeError
from .memo import BoundedMemo
from .wire import KINDS, check_spec, from_wire, normalise, to_wire

ENTRY_VERSION = 1
_ENTRY_PREFIX = array_header(4) + encode("entry") + encode(ENTRY_VERSION)
MAX_BATCH_ITEMS = 10_000

ROLES = frozenset(
    {"validator", "observer", "depositor", "court", "procuratorate", "arbitration", "notary", "credit-source"}
)
# Roles that may query by case and see full records.
CALLER_ROLES = frozenset({"court", "procuratorate", "arbitration", "notary"})


class _Typed:
    """Mixin: validation on construction and the generic wire form."""

    __slots__ = ()
    TAG: ClassVar[str]
    VERSION: ClassVar[int] = 1
    SPEC: ClassVar[tuple[tuple[str, str], ...]]

    def __post_init__(self) -> None:
        normalise(self)

    def wire(self) -> list:
        return to_wire(self)

    def encode(self) -> bytes:
        return encode_wire(self.wire())


@check_spec
@dataclass(frozen=True, slots=True)
class PrivateMeta(_Typed):
    """Private fields of an item or event, kept off the Merkle leaves."""

    salt: bytes
    fields: Any

    TAG: ClassVar[str] = "private-meta"
    SPEC = (("salt", "salt"), ("fields", "meta"))

    def commitment(self) -> bytes:
        return hashlib.sha256(b"evledger/private-meta/1\x00" + self.encode()).digest()


@check_spec
@dataclass(frozen=True, slots=True)
class DepositItem(_Typed):
    """One piece of evidence: its digest(s) and public description."""

    digest: bytes
    sm3: bytes | None
    category: str
    case: str | None
    public_meta: Any
    private_commitment: bytes | None

    TAG: ClassVar[str] = "deposit-item"
    SPEC = (
        ("digest", "hash"),
        ("sm3", "opt_hash"),
        ("category", "text"),
        ("case", "opt_case"),
        ("public_meta", "meta"),
        ("private_commitment", "opt_hash"),
    )

    def leaf_hash(self) -> bytes:
        return merkle.leaf_hash(self.encode())


@check_spec
@dataclass(frozen=True, slots=True)
class Deposit(_Typed):
    """A depositor's signed batch of ``item_count`` items under ``items_root``."""

    depositor: str
    client_time: int
    item_count: int
    items_root: bytes

    TAG: ClassVar[str] = "deposit"
    SIGNER: ClassVar[str] = "depositor"
    SPEC = (("depositor", "name"), ("client_time", "time_ms"), ("item_count", "count"), ("items_root", "hash"))


@check_spec
@dataclass(frozen=True, slots=True)
class CreditEvent(_Typed):
    """A judicial-credit event about a (pseudonymous) subject."""

    source: str
    subject: str
    dimension: str
    kind: str
    score_delta: int
    occurred_at: int
    evidence: tuple
    public_meta: Any
    private_commitment: bytes | None
    client_time: int

    TAG: ClassVar[str] = "credit_event"
    SIGNER: ClassVar[str] = "source"
    SPEC = (
        ("source", "name"),
        ("subject", "text"),
        ("dimension", "text"),
        ("kind", "text"),
        ("score_delta", "int"),
        ("occurred_at", "time_ms"),
        ("evidence", "codes"),
        ("public_meta", "meta"),
        ("private_commitment", "opt_hash"),
        ("client_time", "time_ms"),
    )


@check_spec
@dataclass(frozen=True, slots=True)
class CaseEvent(_Typed):
    """An event in a case: evidence attached, process served, exchange, appeal."""

    actor: str
    case: str
    kind: str
    codes: tuple
    public_meta: Any
    private_commitment: bytes | None
    client_time: int

    TAG: ClassVar[str] = "case_event"
    SIGNER: ClassVar[str] = "actor"
    SPEC = (
        ("actor", "name"),
        ("case", "case"),
        ("kind", "text"),
        ("codes", "codes"),
        ("public_meta", "meta"),
        ("private_commitment", "opt_hash"),
        ("client_time", "time_ms"),
    )


@check_spec
@dataclass(frozen=True, slots=True)
class AccessRecord(_Typed):
    """A retrieval of evidence by a caller, recorded (and signed) by the serving node."""

    recorder: str
    accessor: str
    case: str | None
    codes: tuple
    purpose: str
    accessed_at: int

    TAG: ClassVar[str] = "access_record"
    SIGNER: ClassVar[str] = "recorder"
    SPEC = (
        ("recorder", "name"),
        ("accessor", "name"),
        ("case", "opt_case"),
        ("codes", "codes"),
        ("purpose", "text"),
        ("accessed_at", "time_ms"),
    )


Body = Union[Deposit, CreditEvent, CaseEvent, AccessRecord]
BODY_TYPES: dict[str, type] = {cls.TAG: cls for cls in (Deposit, CreditEvent, CaseEvent, AccessRecord)}
RESERVED_TAGS = frozenset({"governance"})


def body_from_wire(items: Any, where: str = "entry.body") -> Body:
    if not isinstance(items, list) or not items:
        raise DecodeError("%s: expected a non-empty array" % where)
    tag = items[0]
    if tag in RESERVED_TAGS:
        raise DecodeError(
            "%s: entry type %r is reserved and not accepted by this version" % (where, tag),
            reason="unsupported_entry_type",
        )
    cls = BODY_TYPES.get(tag) if isinstance(tag, str) else None
    if cls is None:
        raise DecodeError("%s: unknown entry type %r" % (where, tag if isinstance(tag, (str, int)) else type(tag).__name__),
                          reason="unknown_entry_type")
    return from_wire(cls, items)


@dataclass(frozen=True, slots=True)
class Entry:
    """A signed body: the unit that is a leaf of the block and history trees."""

    body: Body
    signature: bytes
    # Kept once computed: a node encodes and hashes each entry several times (its
    # request id, the block's leaf hashes, its signature check, its delivery).
    _body_bytes: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _encoded: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _leaf: bytes | None = field(default=None, init=False, repr=False, compare=False)

    TAG: ClassVar[str] = "entry"

    def __post_init__(self) -> None:
        if not isinstance(self.body, tuple(BODY_TYPES.values())):
            raise TypeError("entry body must be one of %s" % ", ".join(BODY_TYPES))
        KINDS["signature"](self.signature, "entry.signature")

    @property
    def tag(self) -> str:
        return self.body.TAG

    @property
    def signer(self) -> str:
        return getattr(self.body, self.body.SIGNER)

    @property
    def context(self) -> str:
        return "entry/" + self.body.TAG

    def wire(self) -> list:
        return ["entry", ENTRY_VERSION, self.body.wire(), self.signature]

    def body_bytes(self) -> bytes:
        """The canonical encoding of the body: what the signature covers."""
        data = self._body_bytes
        if data is None:
            data = self.body.encode()
            object.__setattr__(self, "_body_bytes", data)
        return data

    def encode(self) -> bytes:
        data = self._encoded
        if data is None:  # msgpack concatenates: the same bytes as encode_wire(self.wire())
            data = _ENTRY_PREFIX + self.body_bytes() + encode_wire(self.signature)
            object.__setattr__(self, "_encoded", data)
        return data

    def leaf_hash(self) -> bytes:
        leaf = self._leaf
        if leaf is None:
            leaf = merkle.leaf_hash(self.encode())
            object.__setattr__(self, "_leaf", leaf)
        return leaf

    def item_code(self, chain_id: str, index: int) -> DepositCode:
        """The deposit code of item ``index`` of this (deposit) entry."""
        if not isinstance(self.body, Deposit) or not 0 <= index < self.body.item_count:
            raise ValueError("entry has no deposit item %r" % (index,))
        return derive_code(chain_id, self.signature, index)

    def verify(self, key: PublicKey, chain_id: str) -> None:
        """Raise ``SignatureError`` unless ``key`` signed this body on ``chain_id``."""
        key.verify(self.context, chain_id, self.body_bytes(), self.signature)

    @classmethod
    def sign(cls, body: Body, key: SecretKey, chain_id: str) -> "Entry":
        data = body.encode()
        entry = cls(body, key.sign("entry/" + body.TAG, chain_id, data))
        object.__setattr__(entry, "_body_bytes", data)
        return entry

    @classmethod
    def from_wire(cls, items: Any, where: str = "entry") -> "Entry":
        reader = Fields(where, items, 4)
        reader.header("entry", ENTRY_VERSION)
        body_items, body_where = reader.raw("body")
        body = body_from_wire(body_items, body_where)
        signature = reader.bytes("signature", 64, 64)
        obj = object.__new__(cls)
        object.__setattr__(obj, "body", body)
        object.__setattr__(obj, "signature", signature)
        object.__setattr__(obj, "_body_bytes", None)
        object.__setattr__(obj, "_encoded", None)
        object.__setattr__(obj, "_leaf", None)
        return obj


def items_root(items: tuple[DepositItem, ...] | list[DepositItem]) -> bytes:
    return merkle.root([item.leaf_hash() for item in items])


# signature -> (encoded record, EntryRecord), weighted by encoded bytes: 4 MiB of
# encoding is about 20 MiB with the decoded objects; it covers the seconds between
# a record's admission (or forward) and its pre-prepare at any load.
_RECORDS = BoundedMemo(4 * 1024 * 1024)


def records_memo() -> BoundedMemo:
    return _RECORDS


def forget_record(record: "EntryRecord") -> None:
    """Drop a record from the record memo (it was committed: ``ledger.derived.forget``)."""
    _RECORDS.discard(record.entry.signature)


def _signature_of(items: Any) -> bytes | None:
    """The entry signature of a record's wire array, or None if it is not shaped like one."""
    if type(items) is list and len(items) == 5:
        entry = items[2]
        if type(entry) is list and len(entry) == 4 and type(entry[3]) is bytes:
            return entry[3]
    return None


@dataclass(frozen=True, slots=True)
class EntryRecord:
    """An entry with what travels beside it: a deposit's items and the private parts.

    ``items`` is empty except for deposits, where it holds exactly ``item_count``
    items whose root is ``items_root``.  ``private`` is aligned with ``items`` for a
    deposit, holds one element for credit and case events, none for access records;
    each element is the :class:`PrivateMeta` whose commitment the item or event
    carries, or ``None`` where it carries none.
    """

    entry: Entry
    items: tuple[DepositItem, ...] = ()
    private: tuple[PrivateMeta | None, ...] = ()
    # The canonical encoding, kept once known (decoded from it, or encoded once).
    _encoded: bytes | None = field(default=None, repr=False, compare=False)
    _memo: dict | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_encoded", None)
        object.__setattr__(self, "_memo", None)
        object.__setattr__(self, "items", tuple(self.items))
        object.__setattr__(self, "private", tuple(self.private))
        self.check()

    def check(self, where: str = "entry_record", _root: bytes | None = None) -> None:
        """Structural consistency; raises ``DecodeError`` naming what disagrees."""
        body = self.entry.body
        if isinstance(body, Deposit):
            if len(self.items) != body.item_count:
                raise DecodeError("%s: deposit announces %d items but carries %d" % (where, body.item_count, len(self.items)))
            if len(self.private) != len(self.items):
                raise DecodeError("%s: private parts must be aligned with the items" % where)
            if (_root if _root is not None else items_root(self.items)) != body.items_root:
                raise DecodeError("%s: items do not match items_root" % where, reason="items_root_mismatch")
            commitments = [item.private_commitment for item in self.items]
        else:
            if self.items:
                raise DecodeError("%s: only deposits carry items" % where)
            commitments = [getattr(body, "private_commitment")] if hasattr(body, "private_commitment") else []
            if len(self.private) != len(commitments):
                raise DecodeError("%s: expected %d private parts, got %d" % (where, len(commitments), len(self.private)))
        for i, (commitment, part) in enumerate(zip(commitments, self.private)):
            if (commitment is None) != (part is None):
                raise DecodeError("%s.private[%d]: present exactly when a commitment is" % (where, i))
            if part is not None and part.commitment() != commitment:
                raise DecodeError("%s.private[%d]: does not match its commitment" % (where, i), reason="private_mismatch")

    def wire(self) -> list:
        return [
            "entry-record",
            1,
            self.entry.wire(),
            [item.wire() for item in self.items],
            [None if p is None else p.wire() for p in self.private],
        ]

    @property
    def memo(self) -> dict:
        """Values derived from this record by other layers (request id, ...), kept with it."""
        memo = self._memo
        if memo is None:
            memo = {}
            object.__setattr__(self, "_memo", memo)
        return memo

    def encode(self) -> bytes:
        data = self._encoded
        if data is None:
            data = encode_wire(self.wire())
            object.__setattr__(self, "_encoded", data)
        return data

    @classmethod
    def from_wire(cls, items: Any, where: str = "entry_record") -> "EntryRecord":
        """The record of a decoded wire array, remembered by its encoding.

        A node meets every record several times (a peer's forward or its own
        admission, the pre-prepare, state transfer); a wire array whose encoding
        equals one already read returns that record, without re-reading its items.
        """
        signature = _signature_of(items)
        if signature is None:
            return cls._read(items, where)
        data = pack(items)
        hit = _RECORDS.get(signature)
        if hit is not None and hit[0] == data:
            return hit[1]
        record = cls._read(items, where)
        object.__setattr__(record, "_encoded", data)
        _RECORDS.put(signature, (data, record), len(data))
        return record

    @classmethod
    def _read(cls, items: Any, where: str) -> "EntryRecord":
        from .item_reader import items_from_wire  # imports this module: bound here, not at the top

        reader = Fields(where, items, 5)
        reader.header("entry-record", 1)
        entry_items, entry_where = reader.raw("entry")
        entry = Entry.from_wire(entry_items, entry_where)
        item_list = reader.list("items", MAX_BATCH_ITEMS)
        private_list = reader.list("private", MAX_BATCH_ITEMS)
        record = object.__new__(cls)
        object.__setattr__(record, "_encoded", None)
        object.__setattr__(record, "_memo", None)
        object.__setattr__(record, "entry", entry)
        items, root = items_from_wire(item_list) if item_list else ((), None)
        object.__setattr__(record, "items", items)
        object.__setattr__(
            record, "private", tuple(None if p is None else from_wire(PrivateMeta, p) for p in private_list)
        )
        record.check(where, root)
        return record

    @classmethod
    def decode(cls, data: bytes, limits: Limits = DEFAULT_LIMITS) -> "EntryRecord":
        return cls.from_wire(decode(data, limits, typed=True))


def make_deposit(
    items: list[DepositItem], depositor: str, client_time: int, key: SecretKey, chain_id: str,
    private: list[PrivateMeta | None] | None = None,
) -> EntryRecord:
    """Build and sign a deposit batch (convenience for clients and tests)."""
    body = Deposit(depositor=depositor, client_time=client_time, item_count=len(items), items_root=items_root(items))
    private = list(private) if private is not None else [None] * len(items)
    return EntryRecord(Entry.sign(body, key, chain_id), tuple(items), tuple(private))
