"""Building and checking the next block: the ledger side of consensus.

Theory of operation
-------------------
Consensus orders blocks; it does not know what makes one valid.  This module is
the deterministic application it asks (``consensus.app.Application``):

* :meth:`LedgerApp.build` cuts the next block on top of a parent :class:`Tip`
  from pending entry records, leaving out those the chain state refuses
  (duplicates, no permission, bad signature...);
* :meth:`LedgerApp.validate` checks a proposed block against its parent: links
  (height, ``prev_hash``, chain id, validator set), roots (entries, history),
  counts, and every entry (``ledger.state.apply_block``); it returns the new tip.

A :class:`Tip` is an immutable summary of the chain after a block: its header,
the history tree's :class:`Frontier` (the roots of the perfect subtrees that
make up the tree, O(log n) hashes), the block's ``BlockEffects`` (what the store
will index), and the keys (codes and entry keys) of recent blocks that may not
be stored yet.  Because tips are values, the primary can build block h+1 on the
*tentative* tip of h while h is still being agreed (pipelining); if h is replaced
after a view change, what was built on it is rebuilt from the replacement's tip.

Whether a key is already on chain is answered by the store (``has_code``) plus
the keys of tentative ancestors that are newer than the store's head.  Those are
dropped from a tip as soon as the store has them, so a tip stays small however
long the chain runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

from . import merkle
from .block import ZERO_HASH, Block, BlockHeader
from .errors import InputError
from .model import EntryRecord
from .state import BlockEffects, ChainView, Rejection, Rules, apply_block, filter_block


@dataclass(frozen=True, slots=True)
class Frontier:
    """The history tree as its perfect subtrees' roots, largest first: ``((level, hash), ...)``.

    The root of the whole tree is the right fold ``node_hash(a, node_hash(b, c))``
    of these roots, which is RFC 9162's MTH for any size.
    """

    size: int = 0
    nodes: tuple[tuple[int, bytes], ...] = ()

    def append(self, leaves: Sequence[bytes]) -> "Frontier":
        stack = list(self.nodes)
        for leaf in leaves:
            stack.append((0, leaf))
            while len(stack) >= 2 and stack[-1][0] == stack[-2][0]:
                level, right = stack.pop()
                _, left = stack.pop()
                stack.append((level + 1, merkle.node_hash(left, right)))
        return Frontier(self.size + len(leaves), tuple(stack))

    def root(self) -> bytes:
        if not self.nodes:
            return merkle.EMPTY_ROOT
        acc = self.nodes[-1][1]
        for _, node in reversed(self.nodes[:-1]):
            acc = merkle.node_hash(node, acc)
        return acc

    @classmethod
    def from_nodes(cls, size: int, get_node: Callable[[int, int], bytes]) -> "Frontier":
        """The frontier of a stored tree of ``size`` leaves (``get_node(level, index)``)."""
        nodes, start = [], 0
        for level in range(size.bit_length() - 1, -1, -1):
            if size & (1 << level):
                nodes.append((level, get_node(level, start >> level)))
                start += 1 << level
        return cls(size, tuple(nodes))


@dataclass(frozen=True, slots=True)
class Tip:
    """The chain after a block (or the empty chain: ``header is None``)."""

    header: BlockHeader | None
    frontier: Frontier
    effects: BlockEffects | None = None
    recent: tuple[tuple[int, frozenset], ...] = ()  # (height, keys) of blocks maybe not stored yet

    @property
    def height(self) -> int:
        return 0 if self.header is None else self.header.height

    @property
    def hash(self) -> bytes:
        return ZERO_HASH if self.header is None else self.header.hash()


class _View:
    """The store's keys plus those of tentative ancestors newer than the store's head."""

    __slots__ = ("store", "extra")

    def __init__(self, store: ChainView, recent: tuple[tuple[int, frozenset], ...]):
        self.store = store
        self.extra = [keys for _, keys in recent]

    def has_code(self, key: bytes) -> bool:
        return self.store.has_code(key) or any(key in keys for keys in self.extra)

    def codes_present(self, keys: Sequence[bytes]) -> list[bytes]:
        bulk = getattr(self.store, "codes_present", None)
        found = bulk(keys) if bulk is not None else [k for k in keys if self.store.has_code(k)]
        if self.extra:
            wanted, held = set(keys), set(found)
            for extra in self.extra:
                held |= wanted & extra
            return list(held)
        return found


class LedgerApp:
    """The deterministic application consensus orders blocks for.

    ``store`` answers ``has_code`` and ``head()`` (a ``ledger.store.Store``);
    ``validator_set_hash`` is the set in office.
    """

    def __init__(self, rules: Rules, store, validator_set_hash: bytes):
        self.rules = rules
        self.store = store
        self.validator_set_hash = validator_set_hash

    def tip_of_store(self) -> Tip:
        """The tip of the last stored block (start-up and after state transfer)."""
        head = self.store.head()
        frontier = Frontier.from_nodes(head.history_size, self.store.history_node)
        return Tip(head.header, frontier)

    def _recent(self, parent: Tip) -> tuple[tuple[int, frozenset], ...]:
        stored = self.store.head().height
        return tuple(item for item in parent.recent if item[0] > stored)

    def _header(self, parent: Tip, records: Sequence[EntryRecord], timestamp: int, view: int,
                proposer: str) -> tuple[BlockHeader, Frontier]:
        leaves = [r.entry.leaf_hash() for r in records]
        frontier = parent.frontier.append(leaves)
        header = BlockHeader(
            chain_id=self.rules.chain_id, height=parent.height + 1, prev_hash=parent.hash,
            entries_root=merkle.root(leaves), entry_count=len(leaves), history_size=frontier.size,
            history_root=frontier.root(), timestamp=timestamp, view=view, proposer=proposer,
            validator_set_hash=self.validator_set_hash,
        )
        return header, frontier

    def _tip(self, parent: Tip, header: BlockHeader, frontier: Frontier, effects: BlockEffects) -> Tip:
        keys = frozenset(effects.codes) | frozenset(effects.entry_keys)
        return Tip(header, frontier, effects, self._recent(parent) + ((header.height, keys),))

    def build(self, parent: Tip, records: Sequence[EntryRecord], timestamp: int, view: int,
              proposer: str) -> tuple[Block, Tip]:
        block, tip, _ = self.build_reporting(parent, records, timestamp, view, proposer)
        return block, tip

    def build_reporting(self, parent: Tip, records: Sequence[EntryRecord], timestamp: int, view: int,
                        proposer: str) -> tuple[Block, Tip, list[Rejection]]:
        """Like :meth:`build`, also returning the records left out and why."""
        view_ = _View(self.store, self._recent(parent))
        accepted, rejected, effects = filter_block(self.rules, view_, timestamp, records)
        header, frontier = self._header(parent, accepted, timestamp, view, proposer)
        return Block(header, tuple(accepted)), self._tip(parent, header, frontier, effects), rejected

    def validate(self, parent: Tip, block: Block) -> Tip:
        """Check ``block`` on ``parent``; raise ``InputError`` (reason says why) or return its tip."""
        h = block.header
        if h.entry_count != len(block.records):
            raise InputError("header announces %d entries, block has %d" % (h.entry_count, len(block.records)),
                             reason="bad_header")
        effects = apply_block(self.rules, _View(self.store, self._recent(parent)), h.timestamp, block.records)
        expected, frontier = self._header(parent, block.records, h.timestamp, h.view, h.proposer)
        if expected != h:
            raise InputError("block header does not match its parent and contents: %s"
                             % ", ".join(_differences(expected, h)), reason="bad_header")
        return self._tip(parent, h, frontier, effects)


def _differences(expected: BlockHeader, got: BlockHeader) -> list[str]:
    return [name for name, _ in BlockHeader.SPEC if getattr(expected, name) != getattr(got, name)]



