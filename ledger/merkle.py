"""RFC 9162 (section 2.1) Merkle tree hashing, proof generation and verification.

Theory of operation
-------------------
The ledger's history tree is the Merkle Tree Hash (MTH) of RFC 9162 2.1.1 over the
ordered list of entry leaf hashes:

* ``leaf_hash(d)   = SHA-256(0x00 || d)``
* ``node_hash(l, r) = SHA-256(0x01 || l || r)``
* ``MTH([])        = SHA-256("")`` (``EMPTY_ROOT``), ``MTH([h]) = h`` and, for n > 1,
  ``MTH(D[n]) = node_hash(MTH(D[0:k]), MTH(D[k:n]))`` with k the largest power of
  two smaller than n.

The distinct prefixes keep leaves and interior nodes in separate hash domains, so a
proof can never present an interior node as a leaf (second-preimage attack).

``root`` computes the MTH bottom-up: pair neighbours level by level and carry an odd
last node up unchanged.  That shape is exactly the RFC's recursive split, and it is
what makes it fast (one SHA-256 per interior node, no recursion, no slicing).

Proof *generation* over an in-memory list of leaf hashes (``inclusion_proof``,
``consistency_proof``) is the RFC's PATH and SUBPROOF recursion unrolled into loops.
Proof generation over a store that keeps only perfect subtrees lives in
``ledger.merkle_nodes`` and is re-exported here.

Proof *verification* follows the reference verifier of transparency-dev/merkle
(``proof/verify.go``): an inclusion proof for leaf ``index`` in a tree of ``size``
splits into an *inner* part (levels where the path to ``index`` and the path to the
last leaf ``size - 1`` differ, whose side is given by the bits of ``index``) and a
*border* part (left siblings only, one per set bit of ``index`` above the inner
part).  The proof length is therefore fully determined by (index, size) and must
match exactly; a consistency proof is a suffix of the inclusion proof of leaf
``size1 - 1`` in the tree of ``size2``, possibly preceded by the root of the largest
perfect subtree that ends at ``size1``.

Strictness: every verifier argument is checked before any hashing: sizes and
indexes must be plain ``int`` (not ``bool``) in ``[0, 2**64)``, every hash must be
``bytes`` of exactly 32 bytes, proofs must be a ``list`` or ``tuple``.  Any failure
raises ``ProofError`` (``RootMismatchError`` when the proof is well formed but leads
to another root) with a message and ``field`` naming what is wrong.  Verifiers
return ``None``; they never return a boolean that a caller could forget to test.
Builders reject bad parameters with ``InputError`` (a ``ValueError``).

One deliberate difference from the Go reference: a consistency "proof" between two
empty trees (size1 == size2 == 0) is refused like any other proof from an empty tree.

This module is pure: no I/O, no global state, no mutation of its arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

from ledger.errors import InputError, ProofError

__all__ = [
    "HASH_SIZE",
    "MAX_TREE_SIZE",
    "EMPTY_ROOT",
    "ProofError",
    "RootMismatchError",
    "leaf_hash",
    "node_hash",
    "root",
    "inclusion_proof",
    "consistency_proof",
    "root_from_inclusion_proof",
    "root_from_consistency_proof",
    "verify_inclusion",
    "verify_consistency",
    # Stored-tree API, defined in ledger.merkle_nodes (see __getattr__ below).
    "NodeId",
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

HASH_SIZE = 32
#: Tree sizes and indexes are uint64 on the wire, as in RFC 9162 and the Go reference.
MAX_TREE_SIZE = 2**64 - 1

_sha256 = hashlib.sha256
_LEAF_PREFIX = b"\x00"
_NODE_PREFIX = b"\x01"

EMPTY_ROOT: bytes = _sha256(b"").digest()


class RootMismatchError(ProofError):
    """A well-formed proof leads to a root other than the one claimed.

    ``expected`` is the root the caller supplied, ``calculated`` the one the proof
    yields; ``field`` names the supplied root (``root``, ``root1`` or ``root2``).
    """

    def __init__(self, field: str, expected: bytes, calculated: bytes):
        super().__init__(
            f"{field} mismatch: proof yields {calculated.hex()}, expected {expected.hex()}",
            field=field,
        )
        self.expected = expected
        self.calculated = calculated


# --------------------------------------------------------------------------- checks


def _check_count(value: object, name: str, error: type[InputError]) -> int:
    """Return ``value`` if it is a plain int in [0, MAX_TREE_SIZE], else raise ``error``."""
    # type() rather than isinstance(): bool and int subclasses (enums) are refused.
    if type(value) is not int:
        raise error(f"{name} must be an int, got {type(value).__name__}", field=name)
    if value < 0:
        raise error(f"{name} must not be negative, got {value}", field=name)
    if value > MAX_TREE_SIZE:
        raise error(f"{name} must be below 2**64, got {value}", field=name)
    return value


def _check_hash(value: object, name: str, error: type[InputError]) -> bytes:
    """Return ``value`` if it is ``bytes`` of exactly HASH_SIZE bytes, else raise ``error``."""
    if type(value) is not bytes:
        raise error(f"{name} must be bytes, got {type(value).__name__}", field=name)
    if len(value) != HASH_SIZE:
        raise error(f"{name} must be {HASH_SIZE} bytes, got {len(value)}", field=name)
    return value


def _check_proof(proof: object, name: str = "proof") -> list[bytes]:
    """Return ``proof`` as a list if it is a list/tuple of 32-byte hashes, else ProofError."""
    if not isinstance(proof, (list, tuple)):
        raise ProofError(f"{name} must be a list of hashes, got {type(proof).__name__}", field=name)
    for i, element in enumerate(proof):
        _check_hash(element, f"{name}[{i}]", ProofError)
    return list(proof)


def _check_hash_list(hashes: object, name: str) -> Sequence[bytes]:
    """Return ``hashes`` if it is a sequence of 32-byte ``bytes``, else InputError."""
    if not isinstance(hashes, Sequence) or isinstance(hashes, (str, bytes, bytearray)):
        raise InputError(f"{name} must be a sequence of hashes, got {type(hashes).__name__}", field=name)
    # Two C-speed passes keep validation cheap next to hashing on large trees.
    if set(map(type, hashes)) <= {bytes} and set(map(len, hashes)) <= {HASH_SIZE}:
        return hashes
    for i, element in enumerate(hashes):
        _check_hash(element, f"{name}[{i}]", InputError)
    raise AssertionError("unreachable: a bad element was detected above")  # pragma: no cover


# -------------------------------------------------------------------------- hashing


def leaf_hash(data: bytes) -> bytes:
    """Return ``SHA-256(0x00 || data)``, the RFC 9162 hash of leaf ``data`` (bytes only)."""
    if type(data) is not bytes:
        raise InputError(f"leaf data must be bytes, got {type(data).__name__}", field="data")
    return _sha256(_LEAF_PREFIX + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """Return ``SHA-256(0x01 || left || right)``; both children must be 32-byte hashes."""
    _check_hash(left, "left", InputError)
    _check_hash(right, "right", InputError)
    return _sha256(_NODE_PREFIX + left + right).digest()


def _mth(hashes: Sequence[bytes]) -> bytes:
    """MTH of already-validated leaf hashes (bottom-up; odd last node carried up)."""
    if not hashes:
        return EMPTY_ROOT
    level = list(hashes)
    sha, prefix = _sha256, _NODE_PREFIX
    while len(level) > 1:
        parents = [sha(prefix + a + b).digest() for a, b in zip(level[0::2], level[1::2])]
        if len(level) & 1:
            parents.append(level[-1])
        level = parents
    return level[0]


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 Merkle Tree Hash of ``leaf_hashes`` (EMPTY_ROOT when empty).

    ``leaf_hashes`` are already leaf-hashed entries (see ``leaf_hash``), each 32 bytes.
    """
    return _mth(_check_hash_list(leaf_hashes, "leaf_hashes"))


def _split(n: int) -> int:
    """Largest power of two strictly smaller than ``n`` (requires n > 1)."""
    return 1 << ((n - 1).bit_length() - 1)


# ------------------------------------------------------------- in-memory generation


def inclusion_proof(index: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return PATH(index, D[n]) of RFC 9162 2.1.3.1 for the tree over ``leaf_hashes``.

    Requires ``0 <= index < len(leaf_hashes)``; hashes are ordered leaf to root.
    """
    hashes = _check_hash_list(leaf_hashes, "leaf_hashes")
    _check_count(index, "index", InputError)
    if index >= len(hashes):
        raise InputError(f"index {index} is not below tree size {len(hashes)}", field="index")
    # Unrolled recursion: each step records the sibling subtree at the current split,
    # outermost first, so the list is reversed at the end (RFC order is leaf first).
    siblings: list[bytes] = []
    offset, n, m = 0, len(hashes), index
    while n > 1:
        k = _split(n)
        if m < k:
            siblings.append(_mth(hashes[offset + k : offset + n]))
            n = k
        else:
            siblings.append(_mth(hashes[offset : offset + k]))
            offset, n, m = offset + k, n - k, m - k
    siblings.reverse()
    return siblings


def consistency_proof(size1: int, leaf_hashes: Sequence[bytes]) -> list[bytes]:
    """Return PROOF(size1, D[n]) of RFC 9162 2.1.4.1 for the tree over ``leaf_hashes``.

    Requires ``0 < size1 <= len(leaf_hashes)``; ``size1 == len`` gives ``[]``.
    """
    hashes = _check_hash_list(leaf_hashes, "leaf_hashes")
    _check_count(size1, "size1", InputError)
    if size1 == 0:
        raise InputError("consistency proof from empty tree is meaningless", field="size1")
    if size1 > len(hashes):
        raise InputError(f"size1 {size1} exceeds tree size {len(hashes)}", field="size1")
    # SUBPROOF(m, D[offset:offset+n], b), unrolled as in inclusion_proof.
    outer: list[bytes] = []
    offset, n, m, whole_old_tree = 0, len(hashes), size1, True
    while m != n:
        k = _split(n)
        if m <= k:
            outer.append(_mth(hashes[offset + k : offset + n]))
            n = k
        else:
            outer.append(_mth(hashes[offset : offset + k]))
            offset, n, m, whole_old_tree = offset + k, n - k, m - k, False
    # When the old tree is a complete subtree of the new one, the verifier already
    # holds its hash (root1), so the RFC omits it.
    proof = [] if whole_old_tree else [_mth(hashes[offset : offset + n])]
    proof.extend(reversed(outer))
    return proof


# ----------------------------------------------------------------------- verification


def _inclusion_shape(index: int, size: int) -> tuple[int, int]:
    """(inner, border) proof lengths for leaf ``index`` in a tree of ``size`` > index."""
    inner = (index ^ (size - 1)).bit_length()
    border = (index >> inner).bit_count()
    return inner, border


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash ``seed`` up through ``proof``; bit i of ``index`` says which side it is on."""
    sha, prefix = _sha256, _NODE_PREFIX
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = sha(prefix + sibling + seed).digest()
        else:
            seed = sha(prefix + seed + sibling).digest()
    return seed


def _chain_inner_left_only(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like _chain_inner but skipping right siblings: the subtree as of the older tree."""
    sha, prefix = _sha256, _NODE_PREFIX
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = sha(prefix + sibling + seed).digest()
    return seed


def _chain_border(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed`` up the right border, where every sibling is a left sibling."""
    sha, prefix = _sha256, _NODE_PREFIX
    for sibling in proof:
        seed = sha(prefix + sibling + seed).digest()
    return seed


def root_from_inclusion_proof(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes]) -> bytes:
    """Return the root that ``proof`` yields for ``leaf_hash`` at ``index`` in a tree of ``size``.

    Raises ProofError unless ``0 <= index < size``, all hashes are 32 bytes and the
    proof has exactly the length that (index, size) determines.
    """
    _check_count(index, "index", ProofError)
    _check_count(size, "size", ProofError)
    _check_hash(leaf_hash, "leaf_hash", ProofError)
    path = _check_proof(proof)
    if size == 0:
        raise ProofError("inclusion proof in an empty tree is impossible", field="size")
    if index >= size:
        raise ProofError(f"index {index} is not below tree size {size}", field="index")
    inner, border = _inclusion_shape(index, size)
    if len(path) != inner + border:
        raise ProofError(
            f"wrong proof length {len(path)} for index {index} in tree of size {size}, "
            f"want {inner + border}",
            field="proof",
        )
    return _chain_border(_chain_inner(leaf_hash, path[:inner], index), path[inner:])


def verify_inclusion(leaf_hash: bytes, index: int, size: int, proof: Sequence[bytes], root: bytes) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree of ``size`` with ``root``.

    Returns None on success; raises ProofError (RootMismatchError for a wrong root).
    """
    _check_hash(root, "root", ProofError)
    calculated = root_from_inclusion_proof(leaf_hash, index, size, proof)
    if calculated != root:
        raise RootMismatchError("root", root, calculated)


def root_from_consistency_proof(size1: int, size2: int, proof: Sequence[bytes], root1: bytes) -> bytes:
    """Check ``proof`` against ``root1`` of the tree of ``size1`` and return the root of size2.

    Requires ``0 < size1 <= size2``; ``size1 == size2`` requires an empty proof (and
    returns ``root1``).  Raises ProofError, RootMismatchError(field="root1") when the
    proof does not reproduce ``root1``.
    """
    _check_count(size1, "size1", ProofError)
    _check_count(size2, "size2", ProofError)
    _check_hash(root1, "root1", ProofError)
    path = _check_proof(proof)
    if size1 == 0:
        raise ProofError("consistency proof from empty tree is meaningless", field="size1")
    if size2 < size1:
        raise ProofError(f"size2 {size2} is smaller than size1 {size1}", field="size2")
    if size1 == size2:
        if path:
            raise ProofError(f"size1 == size2 == {size1} but proof is not empty", field="proof")
        return root1
    if not path:
        raise ProofError("empty proof for size1 < size2", field="proof")
    inner, border = _inclusion_shape(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1  # trailing zero bits of size1
    inner -= shift  # levels below `shift` lie inside the perfect subtree ending at size1
    # The proof opens with the hash of that perfect subtree, unless it is the whole
    # old tree, whose hash the verifier already has in root1.
    start = 0 if size1 == 1 << shift else 1
    want = start + inner + border
    if len(path) != want:
        raise ProofError(
            f"wrong proof length {len(path)} for sizes {size1} -> {size2}, want {want}", field="proof"
        )
    seed = root1 if start == 0 else path[0]
    mask = (size1 - 1) >> shift
    inner_path, border_path = path[start : start + inner], path[start + inner :]
    calculated1 = _chain_border(_chain_inner_left_only(seed, inner_path, mask), border_path)
    if calculated1 != root1:
        raise RootMismatchError("root1", root1, calculated1)
    return _chain_border(_chain_inner(seed, inner_path, mask), border_path)


def verify_consistency(size1: int, size2: int, proof: Sequence[bytes], root1: bytes, root2: bytes) -> None:
    """Check that the tree of ``size2``/``root2`` extends the tree of ``size1``/``root1``.

    Returns None on success; raises ProofError (RootMismatchError for a wrong root).
    """
    _check_hash(root2, "root2", ProofError)
    calculated2 = root_from_consistency_proof(size1, size2, proof, root1)
    if calculated2 != root2:
        raise RootMismatchError("root2", root2, calculated2)


# ------------------------------------------------------------------ stored-tree API

_NODE_API = frozenset(__all__[__all__.index("NodeId"):])  # the stored-tree names, from ledger.merkle_nodes


def __getattr__(name: str) -> object:
    # Lazy re-export (PEP 562): ledger.merkle_nodes imports this module, so importing
    # it eagerly here would make the import order matter.
    if name in _NODE_API:
        from ledger import merkle_nodes

        return getattr(merkle_nodes, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
