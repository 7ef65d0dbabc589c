"""The data the deterministic state layer (``ledger.state``) works with.

:class:`Rules` (the part of a genesis that decides whether an entry may be
applied), :class:`ChainView` (what the chain held before the block) with its
reference :class:`MemoryView`, and what applying a block yields:
:class:`BlockEffects` for the store's indexes and a :class:`Rejection` for each
record left out.  ``ledger.state`` re-exports all of them; the checks and
:func:`ledger.state.apply_block` live there.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Iterable, Mapping, NamedTuple, Protocol

from .crypto import PublicKey
from .errors import EntryRejected
from .genesis import EntryLimits, Genesis
from .model import CALLER_ROLES, AccessRecord, CaseEvent, CreditEvent, Deposit, EntryRecord

# Which roles may sign which entry type (any one of them suffices).
SIGNER_ROLES: Mapping[str, frozenset[str]] = MappingProxyType({
    Deposit.TAG: frozenset({"depositor"}),
    CreditEvent.TAG: frozenset({"credit-source"}),
    CaseEvent.TAG: frozenset({"court", "procuratorate", "arbitration", "notary"}),
    AccessRecord.TAG: frozenset({"validator", "observer"}),  # the serving node records the access
})
ACCESSOR_ROLES = CALLER_ROLES

ENTRY_KEY_DOMAIN = b"evledger/entry-key/1\x00"


class ChainView(Protocol):
    """What the chain already holds, as of the parent of the block being applied."""

    def has_code(self, key: bytes) -> bool:
        """True iff ``key`` (a deposit code key or an entry key) was recorded by an earlier block."""
        ...

    # Optional: ``codes_present(keys) -> list`` of the deposit code keys among
    # ``keys`` for which ``has_code`` is true, asked once per deposit instead of
    # once per item (``ledger.store.Store`` and ``ledger.chain`` provide it).


class MemoryView:
    """Reference :class:`ChainView`: a set of keys, grown with :meth:`add`."""

    def __init__(self, keys: Iterable[bytes] = ()):
        self.keys: set[bytes] = set(keys)

    def has_code(self, key: bytes) -> bool:
        return key in self.keys

    def add(self, effects: "BlockEffects") -> None:
        """Record a committed block's effects (what a store indexes)."""
        self.keys.update(effects.codes)
        self.keys.update(effects.entry_keys)


@dataclass(frozen=True, slots=True)
class _MemberRule:
    key: PublicKey
    roles: frozenset[str]


@dataclass(frozen=True, slots=True)
class Rules:
    """The part of a genesis that decides whether an entry may be applied."""

    chain_id: str
    members: Mapping[str, _MemberRule]
    categories: frozenset[str]
    limits: EntryLimits

    @classmethod
    def from_genesis(cls, genesis: Genesis) -> "Rules":
        members = {m.name: _MemberRule(m.public_key, frozenset(m.roles)) for m in genesis.members}
        return cls(genesis.chain_id, MappingProxyType(members), frozenset(genesis.category_ids), genesis.limits)


@dataclass(frozen=True, slots=True)
class BlockEffects:
    """What a store must index for a valid block (read-only; do not mutate the maps).

    * ``codes``: deposit code key -> ``(entry_index, item_index)``, in block order;
    * ``entry_keys``: replay key of each non-deposit entry -> ``entry_index``;
    * ``cases``: case -> code keys attached in this block (deposit items naming the
      case, then codes cited by case events), first-seen order, no repeats;
    * ``entry_codes``: per entry, the code keys of its items (empty for non-deposits).
    """

    codes: Mapping[bytes, tuple[int, int]] = field(default_factory=dict)
    entry_keys: Mapping[bytes, int] = field(default_factory=dict)
    cases: Mapping[str, tuple[bytes, ...]] = field(default_factory=dict)
    entry_codes: tuple[tuple[bytes, ...], ...] = ()


class Rejection(NamedTuple):
    """A record :func:`filter_valid` left out, and why."""

    index: int
    record: EntryRecord
    reason: str
    error: EntryRejected
