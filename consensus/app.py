"""The application interface the replica orders blocks for (injected by the node).

The replica knows nothing about entries, Merkle trees or permissions.  It asks a
deterministic, side-effect-free ``Application``:

``build(parent, records, timestamp, view, proposer) -> (Block, Tip)``
    Cut the next block on top of ``parent`` (a ``Tip``) from ``records`` (in
    arrival order).  The application may leave out records it would reject
    (duplicates, no permission); the replica reports those as ``RequestDropped``.
    ``records`` may be empty (null blocks after a view change).

``validate(parent, block) -> Tip``
    Check ``block`` against ``parent``: height, ``prev_hash``, chain id, validator
    set, entries root, history size/root continuity, every entry's validity (and
    that no entry repeats one already in ``parent``'s history).  Return the new tip
    or raise :class:`consensus.errors.AppRejected`.

A ``Tip`` is an immutable value with at least ``.header`` (``BlockHeader`` or
``None`` before the first block) and ``.height``; it summarises the application
state after a block (e.g. the history tree's frontier).  Because it is an immutable
value, the primary can build block h+1 on the *tentative* tip of block h while h is
still being agreed (pipelining): the history tree is a pure function of the ordered
blocks, so if h is replaced after a view change, everything built on it is rebuilt
from the replacement's tip.  The node supplies the tip of its last stored block at
start-up.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

from ledger.block import Block, BlockHeader
from ledger.model import EntryRecord


class Tip(Protocol):
    header: BlockHeader | None
    height: int


class Application(Protocol):
    def build(self, parent: Any, records: Sequence[EntryRecord], timestamp: int, view: int,
              proposer: str) -> tuple[Block, Any]: ...

    def validate(self, parent: Any, block: Block) -> Any: ...
