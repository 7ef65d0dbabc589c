"""Proof planning over a store of perfect-subtree hashes (RFC 9162 history tree).

Theory of operation
-------------------
A store keeps, for the tree over every leaf ever appended, the hash of every
*perfect* subtree: node ``(level, index)`` covers leaves
``[index * 2**level, (index + 1) * 2**level)`` and level 0 holds the leaf hashes.
Such a node never changes once complete, so it can be written once and kept forever;
the hash of any tree size ``n <= stored size`` is then derivable from O(log n) nodes.

Every hash a proof needs is the MTH of an RFC 9162 subtree ``[begin, end)`` whose
``begin`` is a multiple of the power of two that bounds its width.  Such a range is
either a perfect node or lies on the right border of the tree; in the latter case its
MTH is the right fold ``node_hash(a, node_hash(b, ... z))`` of the perfect nodes given
by the binary digits of ``end - begin`` (largest first), because the RFC always
splits off the largest power of two on the left.  At most one proof element needs
such a fold, so a proof touches O(log n) nodes.

Work is split as in transparency-dev/merkle: ``plan_*`` functions map sizes to node
ids (one tuple of ids per proof element), so a store can fetch them in one batch;
``hashes_from_plan`` turns a plan plus a node getter into hashes.  The
``*_from_nodes`` functions combine both for callers that read node by node.
``new_nodes_for_append`` lists the nodes an append completes, reading only the
O(log n) older left siblings it must combine with.

Nothing here touches storage: the caller passes ``get_node(level, index) -> bytes``.
A getter returning anything but 32 bytes is treated as corrupt storage
(``CorruptionError``); a missing node is whatever the getter raises.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ledger.errors import CorruptionError, InputError
from ledger.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    _check_count,
    _check_hash_list,
    _sha256,
    _split,
)

__all__ = [
    "NodeId",
    "GetNode",
    "Plan",
    "MemoryNodes",
    "new_nodes_for_append",
    "plan_root",
    "plan_inclusion",
    "plan_consistency",
    "plan_node_ids",
    "hashes_from_plan",
    "root_from_nodes",
    "inclusion_proof_from_nodes",
    "consistency_proof_from_nodes",
]

NodeId = tuple[int, int]
"""``(level, index)`` of a perfect subtree covering ``[index << level, (index + 1) << level)``."""

GetNode = Callable[[int, int], bytes]

Plan = tuple[tuple[NodeId, ...], ...]
"""One entry per proof hash: the perfect nodes whose right fold is that hash."""

_NODE_PREFIX = b"\x01"


def _range_nodes(begin: int, end: int) -> tuple[NodeId, ...]:
    """Perfect nodes covering ``[begin, end)``, largest (leftmost) first.

    Requires ``begin`` to be a multiple of the largest power of two <= end - begin,
    which holds for every RFC 9162 subtree.
    """
    ids = []
    width = end - begin
    for level in range(width.bit_length() - 1, -1, -1):
        if (width >> level) & 1:
            ids.append((level, begin >> level))
            begin += 1 << level
    return tuple(ids)


def _fetch(get_node: GetNode, node: NodeId) -> bytes:
    """Read one node and refuse anything that cannot be a stored hash."""
    value = get_node(*node)
    if type(value) is not bytes or len(value) != HASH_SIZE:
        raise CorruptionError(f"stored Merkle node {node} is not a {HASH_SIZE}-byte hash")
    return value


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Right fold ``node_hash(h0, node_hash(h1, ...))``; the MTH of a border range."""
    result = hashes[-1]
    for left in reversed(hashes[:-1]):
        result = _sha256(_NODE_PREFIX + left + result).digest()
    return result


# ---------------------------------------------------------------------------- plans


def plan_root(size: int) -> tuple[NodeId, ...]:
    """Nodes whose right fold is the root of the tree of ``size`` (empty for size 0)."""
    _check_count(size, "size", InputError)
    return _range_nodes(0, size)


def plan_inclusion(index: int, size: int) -> Plan:
    """Plan of the inclusion proof for leaf ``index`` in the tree of ``size``.

    Requires ``0 <= index < size``.  Entry i is the sibling at the i-th level of the
    path (leaf first); levels where the path node has no sibling are skipped.
    """
    _check_count(index, "index", InputError)
    _check_count(size, "size", InputError)
    if index >= size:
        raise InputError(f"index {index} is not below tree size {size}", field="index")
    plan = []
    for level in range((size - 1).bit_length()):
        begin = ((index >> level) ^ 1) << level
        if begin >= size:
            continue  # the path node is the last one of its level: carried up unpaired
        plan.append(_range_nodes(begin, min(begin + (1 << level), size)))
    return tuple(plan)


def plan_consistency(size1: int, size2: int) -> Plan:
    """Plan of the RFC 9162 consistency proof from ``size1`` to ``size2``.

    Requires ``0 < size1 <= size2``; equal sizes give an empty plan.
    """
    _check_count(size1, "size1", InputError)
    _check_count(size2, "size2", InputError)
    if size1 == 0:
        raise InputError("consistency proof from empty tree is meaningless", field="size1")
    if size1 > size2:
        raise InputError(f"size1 {size1} exceeds size2 {size2}", field="size1")
    if size1 == size2:
        return ()
    # SUBPROOF(m, D[offset:offset+n], b), unrolled; see ledger.merkle.consistency_proof.
    outer = []
    offset, n, m, whole_old_tree = 0, size2, size1, True
    while m != n:
        k = _split(n)
        if m <= k:
            outer.append(_range_nodes(offset + k, offset + n))
            n = k
        else:
            outer.append(_range_nodes(offset, offset + k))
            offset, n, m, whole_old_tree = offset + k, n - k, m - k, False
    plan = [] if whole_old_tree else [_range_nodes(offset, offset + n)]
    plan.extend(reversed(outer))
    return tuple(plan)


def plan_node_ids(plan: Plan) -> list[NodeId]:
    """Distinct node ids of ``plan`` in first-use order, for one batched read."""
    return list(dict.fromkeys(node for group in plan for node in group))


def hashes_from_plan(plan: Plan, get_node: GetNode) -> list[bytes]:
    """Turn ``plan`` into proof hashes, reading each distinct node once via ``get_node``."""
    cache: dict[NodeId, bytes] = {}
    hashes = []
    for group in plan:
        values = []
        for node in group:
            if node not in cache:
                cache[node] = _fetch(get_node, node)
            values.append(cache[node])
        hashes.append(_fold(values))
    return hashes


# --------------------------------------------------------------------- convenience


def root_from_nodes(size: int, get_node: GetNode) -> bytes:
    """Root of the tree of ``size`` (EMPTY_ROOT for 0) from at most log2(size)+1 nodes."""
    nodes = plan_root(size)
    if not nodes:
        return EMPTY_ROOT
    return hashes_from_plan((nodes,), get_node)[0]


def inclusion_proof_from_nodes(index: int, size: int, get_node: GetNode) -> list[bytes]:
    """Inclusion proof (RFC 9162 PATH) for leaf ``index`` in the tree of ``size``."""
    return hashes_from_plan(plan_inclusion(index, size), get_node)


def consistency_proof_from_nodes(size1: int, size2: int, get_node: GetNode) -> list[bytes]:
    """Consistency proof (RFC 9162 PROOF) from ``size1`` to ``size2`` (0 < size1 <= size2)."""
    return hashes_from_plan(plan_consistency(size1, size2), get_node)


# -------------------------------------------------------------------------- appends


def new_nodes_for_append(
    old_size: int, new_leaf_hashes: Sequence[bytes], get_node: GetNode
) -> dict[NodeId, bytes]:
    """Every perfect node completed by appending ``new_leaf_hashes`` to a tree of ``old_size``.

    Includes the new level-0 leaf nodes.  Reads via ``get_node`` only the old left
    sibling of the first new node of each level (at most one read per level).  The
    result, ordered by level then index, is exactly what the store must write.
    """
    _check_count(old_size, "old_size", InputError)
    leaves = _check_hash_list(new_leaf_hashes, "new_leaf_hashes")
    new_size = _check_count(old_size + len(leaves), "new size", InputError)
    created: dict[NodeId, bytes] = {(0, old_size + i): h for i, h in enumerate(leaves)}
    # Invariant: `below` holds the new nodes of level-1, which start at index `below_lo`.
    below, below_lo = list(leaves), old_size
    sha, prefix = _sha256, _NODE_PREFIX
    for level in range(1, new_size.bit_length()):
        lo, hi = old_size >> level, new_size >> level
        if lo >= hi:
            break  # no node completes at this level, hence none above either
        current = []
        for index in range(lo, hi):
            left_index = 2 * index
            if left_index >= below_lo:
                left = below[left_index - below_lo]
            else:  # left child completed before this append
                left = _fetch(get_node, (level - 1, left_index))
            current.append(sha(prefix + left + below[left_index + 1 - below_lo]).digest())
        created.update(((level, lo + i), h) for i, h in enumerate(current))
        below, below_lo = current, lo
    return created


class MemoryNodes:
    """Dict-backed node store for tests and tools (not thread-safe).

    ``get`` raises KeyError for a node that is not stored and counts reads in
    ``reads`` so tests can check the O(log n) read bounds.
    """

    def __init__(self, leaf_hashes: Sequence[bytes] = ()):
        self.nodes: dict[NodeId, bytes] = {}
        self.size = 0
        self.reads = 0
        if leaf_hashes:
            self.append(leaf_hashes)

    def get(self, level: int, index: int) -> bytes:
        """Return stored node ``(level, index)``; KeyError if it is not stored."""
        self.reads += 1
        return self.nodes[(level, index)]

    def append(self, leaf_hashes: Sequence[bytes]) -> dict[NodeId, bytes]:
        """Append leaf hashes, store the nodes they complete and return those nodes."""
        created = new_nodes_for_append(self.size, leaf_hashes, self.get)
        self.nodes.update(created)
        self.size += len(leaf_hashes)
        return created
