"""The consortium file's types: members, parameters, categories, limits, and the parsed ``Genesis``.

``ledger.genesis`` documents the format, parses and builds the file, and
re-exports everything here; import from there.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, fields
from typing import Iterable, Mapping

from .block import ValidatorSet
from .codec import encode
from .crypto import PublicKey
from .jsondoc import format_time
from .model import MAX_BATCH_ITEMS, ROLES
from .wire import MAX_CODES, MAX_META_KEYS

FORMAT = "evledger-genesis/1"
WIRE_TAG = "evledger-genesis"
WIRE_VERSION = 1
MAX_GENESIS_BYTES = 1024 * 1024
VIEW_CHANGE_BUDGET = 56 * 1024 * 1024  # bytes of blocks one new-view message may carry (consensus limit: 64 MiB)
MAX_MEMBERS = 1024
MAX_CATEGORIES = 256
NODE_ROLES = frozenset({"validator", "observer"})

_MiB = 1024 * 1024
_DAY_MS = 86_400_000


@dataclass(frozen=True, slots=True)
class Param:
    """One integral parameter: name, default and inclusive range, with its meaning."""

    name: str
    default: int
    lo: int
    hi: int
    doc: str


CONSENSUS_PARAMS: tuple[Param, ...] = (
    Param("batch_max_entries", 2000, 1, 100_000, "a block is cut once it holds this many entries"),
    Param("batch_max_bytes", 128 * 1024, 1024, 3 * _MiB,
          "a block is cut once its entries reach this many encoded bytes (below the 4 MiB decode bound)"),
    Param("batch_delay_ms", 10, 0, 10_000, "longest wait for more entries before a non-full block is cut"),
    Param("checkpoint_interval", 16, 1, 100_000, "a checkpoint is taken every this many blocks"),
    Param("watermark_window", 32, 2, 1_000_000,
          "blocks that may be in flight above the stable checkpoint; a multiple of checkpoint_interval, "
          ">= 2 * checkpoint_interval, and (quorum + 1) * watermark_window * batch_max_bytes <= 56 MiB"),
    Param("view_change_timeout_ms", 2000, 100, 600_000,
          "a replica suspects the primary when a known request is not ordered within this time"),
    Param("max_clock_skew_ms", 30_000, 0, 3_600_000,
          "trusted-time bound: a block timestamp may differ from a validator's clock by at most this"),
)

LIMIT_PARAMS: tuple[Param, ...] = (
    Param("max_items_per_deposit", 1000, 1, MAX_BATCH_ITEMS, "items in one signed deposit batch"),
    Param("max_meta_keys", 16, 0, MAX_META_KEYS, "keys in one public or private metadata map"),
    Param("client_time_window_ms", _DAY_MS, 1000, 7 * _DAY_MS,
          "how far an entry's client time may be from its block's timestamp, either way"),
    Param("max_case_len", 128, 1, 128, "characters of a case number"),
    Param("max_codes_per_event", 1000, 1, MAX_CODES, "deposit codes one case, credit or access entry may cite"),
)


@dataclass(frozen=True, slots=True)
class Category:
    """An evidence category that deposit items may name."""

    id: str
    display_name: str
    display_name_en: str

    def to_doc(self) -> dict:
        return {"id": self.id, "display_name": self.display_name, "display_name_en": self.display_name_en}


DEFAULT_CATEGORIES: tuple[Category, ...] = (
    Category("general", "通用存证", "General evidence"),
    Category("copyright", "版权作品", "Copyright work"),
    Category("ecommerce-order", "电商订单", "E-commerce order"),
    Category("e-contract", "电子合同", "Electronic contract"),
    Category("web-capture", "网页取证", "Web page capture"),
    Category("chat-record", "聊天记录", "Chat record"),
    Category("email", "电子邮件", "Email"),
    Category("audio-video", "音视频", "Audio and video recording"),
    Category("service-receipt", "电子送达回执", "Service of process receipt"),
    Category("credit-event", "司法信用事件", "Judicial credit event"),
    Category("mediation-agreement", "调解协议", "Mediation agreement"),
)
REQUIRED_CATEGORY_IDS: tuple[str, ...] = tuple(c.id for c in DEFAULT_CATEGORIES)


@dataclass(frozen=True, slots=True)
class ConsensusParams:
    """Consensus parameters (see :data:`CONSENSUS_PARAMS` for meaning and ranges)."""

    batch_max_entries: int = 2000
    batch_max_bytes: int = 128 * 1024
    batch_delay_ms: int = 10
    checkpoint_interval: int = 16
    watermark_window: int = 32
    view_change_timeout_ms: int = 2000
    max_clock_skew_ms: int = 30_000

    def to_doc(self) -> dict:
        return {p.name: getattr(self, p.name) for p in CONSENSUS_PARAMS}


@dataclass(frozen=True, slots=True)
class EntryLimits:
    """Limits on entries (see :data:`LIMIT_PARAMS` for meaning and ranges)."""

    max_items_per_deposit: int = 1000
    max_meta_keys: int = 16
    client_time_window_ms: int = _DAY_MS
    max_case_len: int = 128
    max_codes_per_event: int = 1000

    def to_doc(self) -> dict:
        return {p.name: getattr(self, p.name) for p in LIMIT_PARAMS}


def _check_tables() -> None:
    """Import-time guard: the dataclass defaults are the documented table's."""
    for cls, table in ((ConsensusParams, CONSENSUS_PARAMS), (EntryLimits, LIMIT_PARAMS)):
        got = tuple((f.name, f.default) for f in fields(cls))
        want = tuple((p.name, p.default) for p in table)
        if got != want or any(not p.lo <= p.default <= p.hi for p in table):
            raise AssertionError("%s disagrees with its parameter table" % cls.__name__)


_check_tables()


@dataclass(frozen=True, slots=True)
class Node:
    """Where a validator or observer listens: peer (consensus) and API (HTTP) addresses."""

    peer: str
    api: str

    def to_doc(self) -> dict:
        return {"peer": self.peer, "api": self.api}


@dataclass(frozen=True, slots=True)
class Member:
    """One key of the consortium and what it may do."""

    name: str
    display_name: str
    institution: str
    roles: tuple[str, ...]
    public_key: PublicKey
    node: Node | None = None

    @classmethod
    def make(cls, name: str, roles: Iterable[str], public_key: PublicKey | str, *, display_name: str | None = None,
             institution: str | None = None, node: Node | None = None) -> "Member":
        """Convenience constructor (validation happens when a genesis is built from it)."""
        key = public_key if isinstance(public_key, PublicKey) else PublicKey.from_hex(public_key)
        return cls(name, display_name or name, institution or name, tuple(sorted(roles)), key, node)

    def has_role(self, role: str) -> bool:
        return role in self.roles

    def to_doc(self) -> dict:
        return {
            "name": self.name,
            "display_name": self.display_name,
            "institution": self.institution,
            "roles": list(self.roles),
            "public_key": self.public_key.hex,
            "node": None if self.node is None else self.node.to_doc(),
        }

    def wire(self) -> list:
        node = None if self.node is None else [self.node.peer, self.node.api]
        return [self.name, self.display_name, self.institution, list(self.roles), self.public_key.raw, node]


@dataclass(frozen=True, slots=True)
class Genesis:
    """A parsed, validated consortium file.  Build with :func:`parse_genesis`."""

    chain_id: str
    display_name: str
    created_at: int  # ms since the Unix epoch, UTC
    members: tuple[Member, ...]
    consensus: ConsensusParams
    categories: tuple[Category, ...]
    limits: EntryLimits
    _by_name: Mapping[str, Member] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", {m.name: m for m in self.members})

    def member(self, name: str) -> Member | None:
        """The member called ``name``, or ``None`` if there is none."""
        return self._by_name.get(name)

    def members_with_role(self, role: str) -> tuple[Member, ...]:
        """Members holding ``role``, in document order; an unknown role is misuse (``ValueError``)."""
        if role not in ROLES:
            raise ValueError("unknown role %r (valid: %s)" % (role, ", ".join(sorted(ROLES))))
        return tuple(m for m in self.members if role in m.roles)

    @property
    def category_ids(self) -> tuple[str, ...]:
        return tuple(c.id for c in self.categories)

    @property
    def created_at_text(self) -> str:
        return format_time(self.created_at)

    def validator_set(self) -> ValidatorSet:
        return ValidatorSet(tuple((m.name, m.public_key) for m in self.members_with_role("validator")))

    def wire(self) -> list:
        """The canonical array hashed by :meth:`fingerprint` (layout in the module docstring)."""
        return [
            WIRE_TAG,
            WIRE_VERSION,
            self.chain_id,
            self.display_name,
            self.created_at,
            [m.wire() for m in self.members],
            self.consensus.to_doc(),
            [[c.id, c.display_name, c.display_name_en] for c in self.categories],
            self.limits.to_doc(),
        ]

    def hash(self) -> bytes:
        return hashlib.sha256(encode(self.wire())).digest()

    def fingerprint(self) -> str:
        """SHA-256 hex of the canonical encoding: the id every node compares at handshake."""
        return self.hash().hex()

    def to_doc(self) -> dict:
        return {
            "format": FORMAT,
            "chain_id": self.chain_id,
            "display_name": self.display_name,
            "created_at": self.created_at_text,
            "members": [m.to_doc() for m in self.members],
            "consensus": self.consensus.to_doc(),
            "categories": [c.to_doc() for c in self.categories],
            "limits": self.limits.to_doc(),
        }

    def to_json(self) -> str:
        """Pretty JSON (UTF-8 text, non-ASCII kept) that :func:`parse_genesis_bytes` reads back equal."""
        return json.dumps(self.to_doc(), indent=2, ensure_ascii=False) + "\n"
