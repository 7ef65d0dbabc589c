"""Values the store interface speaks: locations, the per-block index, the head, check
reports, and an append's plan (with the check that a block's index covers exactly
its deposit items and other entries).

``BlockIndex`` is what the deterministic state layer hands to ``Store.append``
beside a block: code key -> :class:`Location` of each deposit item, replay key ->
:class:`EntryRef` of each non-deposit entry, and ``(case, code key)`` links.  It is
validated and normalised (sorted tuples, no duplicates) on construction, so a
backend can write it as is.  Key rules: a code key is 1..64 bytes of printable
ASCII (``DepositCode.key``, 25 bytes today), an entry key is 32 bytes
(``ledger.state.entry_key``), a case is 1..128 characters of UTF-8 without NUL
(NUL separates case and code in the LevelDB case index).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from itertools import chain, repeat
from typing import Any, Mapping, NamedTuple

from . import merkle
from .block import ZERO_HASH, Block, BlockHeader, CommitCertificate
from .errors import StoreError
from .model import Deposit

MAX_CODE_KEY = 64
ENTRY_KEY_SIZE = 32
MAX_CASE_CHARS = 128
MAX_PAGE = 1000
_PRINTABLE = bytes(range(0x21, 0x7F))


class Location(NamedTuple):
    """Where a deposit item lives: block height, entry index in the block, item index in the batch."""

    height: int
    entry_index: int
    item_index: int


class EntryRef(NamedTuple):
    """Where an entry lives: block height and entry index in the block."""

    height: int
    entry_index: int


def check_code_key(code: Any, where: str = "code") -> bytes:
    """A code key is 1..64 bytes of printable, non-space ASCII (``DepositCode.key``)."""
    if type(code) is not bytes:
        raise TypeError("%s must be bytes, got %s" % (where, type(code).__name__))
    if not 0 < len(code) <= MAX_CODE_KEY or min(code) < 0x21 or max(code) > 0x7E:
        raise ValueError("%s must be 1..%d bytes of printable ASCII, got %r" % (where, MAX_CODE_KEY, code[:80]))
    return code


def check_code_keys(keys: Any) -> bool:
    """True iff every element of the list ``keys`` passes :func:`check_code_key` (whole-list checks)."""
    if not keys:
        return True
    if set(map(type, keys)) != {bytes} or min(map(len, keys)) < 1 or max(map(len, keys)) > MAX_CODE_KEY:
        return False
    return not b"".join(keys).translate(None, _PRINTABLE)  # nothing left once printable ASCII is deleted


def check_entry_key(key: Any, where: str = "entry key") -> bytes:
    """An entry key (replay key of a non-deposit entry, ``ledger.state.entry_key``) is 32 bytes."""
    if type(key) is not bytes:
        raise TypeError("%s must be bytes, got %s" % (where, type(key).__name__))
    if len(key) != ENTRY_KEY_SIZE:
        raise ValueError("%s must be %d bytes, got %d" % (where, ENTRY_KEY_SIZE, len(key)))
    return key


def check_case(case: Any, where: str = "case") -> str:
    """A case reference: non-empty str of at most 128 characters, no NUL, valid UTF-8."""
    if type(case) is not str:
        raise TypeError("%s must be str, got %s" % (where, type(case).__name__))
    if not 0 < len(case) <= MAX_CASE_CHARS or "\x00" in case:
        raise ValueError("%s must be 1..%d characters without NUL" % (where, MAX_CASE_CHARS))
    try:
        case.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("%s is not encodable as UTF-8" % where) from None
    return case


def check_int(value: Any, where: str) -> int:
    if type(value) is not int:
        raise TypeError("%s must be int, got %s" % (where, type(value).__name__))
    return value


def _keyed_bulk(pairs: Any, check: Any, kind: type) -> tuple | None:
    """:func:`_keyed` for well-formed input, checked with whole-list operations (C loops).

    ``None`` whenever anything is off: the item-by-item path then finds it and
    names it in its error.  A block of 2,000 items is indexed on every replica.
    """
    try:
        items = list(pairs.items()) if isinstance(pairs, Mapping) else list(pairs)
        keys = [k for k, _ in items]
        targets = [t for _, t in items]
    except (TypeError, ValueError):
        return None
    if not items:
        return ()
    if set(map(type, keys)) != {bytes} or set(map(type, targets)) != {tuple}:
        return None
    if check is check_code_key:
        if not check_code_keys(keys):
            return None
    elif check is not check_entry_key or set(map(len, keys)) != {ENTRY_KEY_SIZE}:
        return None
    if set(map(len, targets)) != {len(kind._fields)} or set(map(type, chain.from_iterable(targets))) != {int}:
        return None
    if len(set(keys)) != len(keys) or len(set(targets)) != len(targets):
        return None
    return tuple(sorted(zip(keys, map(tuple.__new__, repeat(kind), targets))))


def _keyed(pairs: Any, check: Any, kind: type, what: str) -> tuple:
    """Sorted ``(key, kind(...))`` pairs from a mapping or pairs; keys and targets unique."""
    fast = _keyed_bulk(pairs, check, kind)
    if fast is not None:
        return fast
    out: dict[bytes, Any] = {}
    for key, target in pairs.items() if isinstance(pairs, Mapping) else pairs:
        check(key, "index %s" % what)
        if key in out:
            raise ValueError("index names %s %r twice" % (what, key))
        out[key] = kind(*(check_int(v, "index location") for v in target))
    if len(set(out.values())) != len(out):
        raise ValueError("index gives one target two %ss" % what)
    return tuple(sorted(out.items()))


@dataclass(frozen=True, slots=True)
class BlockIndex:
    """Index additions computed by the state layer for one block.

    ``codes``: code key -> :class:`Location` of the deposit item it names.
    ``cases``: ``(case, code key)`` links to add (codes of this or earlier blocks).
    ``entry_keys``: replay key -> :class:`EntryRef` of each non-deposit entry.
    Mappings or pairs are accepted; all are normalised to sorted tuples of pairs.
    """

    codes: Any = ()
    cases: Any = ()
    entry_keys: Any = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "codes", _keyed(self.codes, check_code_key, Location, "code"))
        object.__setattr__(self, "entry_keys", _keyed(self.entry_keys, check_entry_key, EntryRef, "entry key"))
        links = {(check_case(case, "index case"), check_code_key(code, "index case code")) for case, code in self.cases}
        object.__setattr__(self, "cases", tuple(sorted(links)))

    @classmethod
    def from_effects(cls, height: int, effects: Any) -> "BlockIndex":
        """Adapter for ``ledger.state.BlockEffects`` of the block at ``height`` (duck-typed:
        the store does not import the state layer)."""
        fast = _deposit_only_index(height, effects)
        if fast is not None:
            return fast
        return cls(
            codes=[(code, (height, e, i)) for code, (e, i) in effects.codes.items()],
            cases=[(case, code) for case, codes in effects.cases.items() for code in codes],
            entry_keys=[(key, (height, e)) for key, e in effects.entry_keys.items()],
        )


def _deposit_only_index(height: Any, effects: Any) -> BlockIndex | None:
    """``BlockIndex.from_effects`` for a block of deposits without case links (the common
    block), with the same checks as whole-column C loops and without the intermediate
    pairs; ``None`` for anything else, which takes the general path."""
    codes = effects.codes
    if effects.cases or effects.entry_keys or type(codes) is not dict or not codes or type(height) is not int:
        return None
    keys, targets = list(codes), list(codes.values())
    if not check_code_keys(keys) or set(map(type, targets)) != {tuple} or set(map(len, targets)) != {2}:
        return None
    entries, items = zip(*targets)
    if (set(map(type, entries)) != {int} or set(map(type, items)) != {int} or height < 0
            or min(entries) < 0 or min(items) < 0 or len(set(targets)) != len(targets)):
        return None  # negative or repeated locations: the general path names the problem
    index = object.__new__(BlockIndex)
    located = dict(zip(keys, map(tuple.__new__, repeat(Location), zip(repeat(height), entries, items))))
    order = sorted(keys)  # bytes against bytes: cheaper than sorting (key, location) pairs
    object.__setattr__(index, "codes", tuple(zip(order, map(located.__getitem__, order))))
    object.__setattr__(index, "entry_keys", ())
    object.__setattr__(index, "cases", ())
    return index


class AbsentCodes:
    """Code keys this process has seen absent from its store, and not appended since.

    Every deposit item is looked up three times on a validator (admission, block
    validation, the store's own duplicate check); this remembers the first answer.
    It is exact, not probabilistic: the store calls :meth:`stored` for every code
    it appends, after the write and before its head moves, and an answer looked up
    while an append was under way (the generation moved) is not remembered, so a
    stale "absent" can never survive.  Bounded: forgotten wholesale at ``limit``.
    """

    __slots__ = ("keys", "generation", "lock", "limit")

    def __init__(self, limit: int = 60_000):
        self.keys: set[bytes] = set()
        self.generation = 0
        self.lock = threading.Lock()
        self.limit = limit

    def unknown(self, keys: Any) -> tuple[int, list[bytes]]:
        """The current generation and the keys not known to be absent."""
        with self.lock:
            known = self.keys
            return self.generation, [k for k in keys if k not in known]

    def learn(self, generation: int, asked: list[bytes], found: list[bytes]) -> None:
        """Remember ``asked`` minus ``found`` as absent, if no append happened meanwhile."""
        with self.lock:
            if generation != self.generation or not asked:
                return
            if len(self.keys) + len(asked) > self.limit:
                self.keys.clear()
            self.keys.update(asked)
            if found:
                self.keys.difference_update(found)

    def stored(self, codes: Any) -> None:
        """``codes`` are now stored: forget them (call after the write, before the head moves)."""
        with self.lock:
            self.generation += 1
            self.keys.difference_update(codes)


@dataclass(frozen=True, slots=True)
class Head:
    """The latest committed block (``height == 0``, ``header is None`` for an empty store)."""

    height: int
    header: BlockHeader | None
    header_hash: bytes
    history_size: int
    history_root: bytes


EMPTY_HEAD = Head(0, None, ZERO_HASH, 0, merkle.EMPTY_ROOT)


@dataclass
class CheckReport:
    """Result of :meth:`Store.check`: what was examined and every problem found."""

    deep: bool
    blocks: int = 0
    entries: int = 0
    nodes: int = 0
    codes: int = 0
    entry_keys: int = 0
    case_links: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True, slots=True)
class AppendPlan:
    """Everything one append writes, computed and checked before any write."""

    block: Block
    certificate: CommitCertificate | None
    index: BlockIndex
    nodes: dict
    head: Head


def index_targets(block: Block) -> tuple[set[Location], set[EntryRef]]:
    """The deposit items (which need codes) and other entries (which need entry keys) of ``block``."""
    height, items, others = block.header.height, set(), set()
    for e, record in enumerate(block.records):
        if isinstance(record.entry.body, Deposit):
            # plain tuples, built at C speed: equal to (and hashed like) the Locations they stand for
            items.update(zip(repeat(height), repeat(e), range(record.entry.body.item_count)))
        else:
            others.add(EntryRef(height, e))
    return items, others


def check_index_cover(wanted: set, given: set, what: str) -> None:
    """The index covers exactly ``wanted`` (deposit items, or other entries) of the block."""
    extra, missing = sorted(given - wanted), sorted(wanted - given)
    if extra:
        raise StoreError("append refused: index names %r, which is not a %s of this block" % (tuple(extra[0]), what),
                         reason="bad_index")
    if missing:
        raise StoreError("append refused: %s %r is missing from the index" % (what, tuple(missing[0])),
                         reason="bad_index")
