"""Property and exhaustive tests of ledger.merkle against a naive RFC 9162 reference.

The reference below is transcribed from RFC 9162 section 2.1 (MTH 2.1.1, PATH
2.1.3.1, PROOF/SUBPROOF 2.1.4.1 and the two verification algorithms 2.1.3.2 /
2.1.4.2) with no attempt at speed beyond memoising MTH of subranges.  The code under
test must agree with it on every tree size up to N_MAX and every index, and its
verifiers must accept exactly what the RFC verifiers accept, plus the contract's
strictness rules.
"""

from __future__ import annotations

import hashlib
import random
from functools import lru_cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger import merkle
from ledger.errors import ProofError

N_MAX = 300  # every tree size 1..N_MAX, every index
N_PAIRS = 100  # every consistency pair (size1, size2) with size2 <= N_PAIRS
N_MUTATE = 40  # every mutation of every proof for sizes up to N_MUTATE
N_BIG = 2048  # hypothesis samples sizes up to here

DATA = [b"evledger test leaf %d" % i for i in range(N_BIG)]
HASHES = [hashlib.sha256(b"\x00" + d).digest() for d in DATA]

SETTINGS = settings(deadline=None, max_examples=150)


# ------------------------------------------------- naive reference (RFC 9162 text)


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def largest_pow2_below(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


@lru_cache(maxsize=None)
def ref_mth(lo: int, hi: int) -> bytes:
    """MTH(D[lo:hi]) over DATA, recursively as in RFC 9162 2.1.1."""
    n = hi - lo
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + DATA[lo])
    k = largest_pow2_below(n)
    return sha256(b"\x01" + ref_mth(lo, lo + k) + ref_mth(lo + k, hi))


def ref_path(m: int, lo: int, hi: int) -> list[bytes]:
    """PATH(m, D[lo:hi]) of RFC 9162 2.1.3.1."""
    n = hi - lo
    if n == 1:
        return []
    k = largest_pow2_below(n)
    if m < k:
        return ref_path(m, lo, lo + k) + [ref_mth(lo + k, hi)]
    return ref_path(m - k, lo + k, hi) + [ref_mth(lo, lo + k)]


def ref_subproof(m: int, lo: int, hi: int, b: bool) -> list[bytes]:
    """SUBPROOF(m, D[lo:hi], b) of RFC 9162 2.1.4.1."""
    n = hi - lo
    if m == n:
        return [] if b else [ref_mth(lo, hi)]
    k = largest_pow2_below(n)
    if m <= k:
        return ref_subproof(m, lo, lo + k, b) + [ref_mth(lo + k, hi)]
    return ref_subproof(m - k, lo + k, hi, False) + [ref_mth(lo, lo + k)]


def ref_consistency(m: int, n: int) -> list[bytes]:
    """PROOF(m, D[n]) = SUBPROOF(m, D[n], true)."""
    return ref_subproof(m, 0, n, True)


def rfc_verify_inclusion(leaf_index, tree_size, h, inclusion_path, root_hash) -> bool:
    """RFC 9162 2.1.3.2, step by step."""
    if leaf_index >= tree_size:
        return False
    fn, sn, r = leaf_index, tree_size - 1, h
    for p in inclusion_path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = sha256(b"\x01" + p + r)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = sha256(b"\x01" + r + p)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and r == root_hash


def rfc_verify_consistency(first, second, first_hash, second_hash, consistency_path) -> bool:
    """RFC 9162 2.1.4.2, step by step (for 0 < first < second)."""
    if not consistency_path:
        return False
    if first & (first - 1) == 0:
        consistency_path = [first_hash] + list(consistency_path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    fr = sr = consistency_path[0]
    for c in consistency_path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = sha256(b"\x01" + c + fr)
            sr = sha256(b"\x01" + c + sr)
            if not fn & 1:
                while not (fn & 1 or fn == 0):
                    fn, sn = fn >> 1, sn >> 1
        else:
            sr = sha256(b"\x01" + sr + c)
        fn, sn = fn >> 1, sn >> 1
    return fr == first_hash and sr == second_hash and sn == 0


def contract_inclusion_ok(leaf, index, size, proof, root) -> bool:
    """The RFC verdict plus the contract's rule that the tree is not empty."""
    return 0 <= index and 0 < size < 2**64 and rfc_verify_inclusion(index, size, leaf, proof, root)


def contract_consistency_ok(size1, size2, proof, root1, root2) -> bool:
    """The RFC verdict plus the contract's rules for empty trees and equal sizes."""
    if not 0 < size1 <= size2 < 2**64:
        return False
    if size1 == size2:
        return not proof and root1 == root2
    return rfc_verify_consistency(size1, size2, root1, root2, proof)


def inclusion_ok(leaf, index, size, proof, root) -> bool:
    """Verdict of the code under test: None means accepted, ProofError rejected."""
    try:
        assert merkle.verify_inclusion(leaf, index, size, proof, root) is None
    except ProofError:
        return False
    return True


def consistency_ok(size1, size2, proof, root1, root2) -> bool:
    try:
        assert merkle.verify_consistency(size1, size2, proof, root1, root2) is None
    except ProofError:
        return False
    return True


def flip(h: bytes, bit: int) -> bytes:
    return h[: bit // 8] + bytes([h[bit // 8] ^ (1 << (bit % 8))]) + h[bit // 8 + 1 :]


@pytest.fixture(scope="module")
def store() -> merkle.MemoryNodes:
    return merkle.MemoryNodes(HASHES)


def reading(store: merkle.MemoryNodes):
    """Run a node function and return (result, number of node reads)."""

    def run(fn, *args):
        before = store.reads
        result = fn(*args, store.get)
        return result, store.reads - before

    return run


def read_bound(size: int) -> int:
    # A proof reads one node per level plus the perfect pieces of one border range.
    return 2 * max(size, 1).bit_length()


# ------------------------------------------------------------------------- hashing


def test_primitives_match_rfc_definitions():
    assert merkle.EMPTY_ROOT == sha256(b"")
    assert merkle.leaf_hash(b"") == sha256(b"\x00")
    assert merkle.leaf_hash(DATA[5]) == HASHES[5]
    assert merkle.node_hash(HASHES[0], HASHES[1]) == sha256(b"\x01" + HASHES[0] + HASHES[1])
    assert merkle.root([]) == merkle.EMPTY_ROOT
    assert merkle.root([HASHES[0]]) == HASHES[0]


def test_root_every_size():
    for n in range(N_MAX + 1):
        assert merkle.root(HASHES[:n]) == ref_mth(0, n), n
        assert merkle.root(tuple(HASHES[:n])) == ref_mth(0, n), n


@SETTINGS
@given(st.integers(0, N_BIG))
def test_root_random_sizes(n):
    assert merkle.root(HASHES[:n]) == ref_mth(0, n)


def test_root_100k_agrees_with_stored_nodes():
    hashes = [sha256(b"\x00" + i.to_bytes(4, "big")) for i in range(100_000)]
    nodes = merkle.MemoryNodes(hashes)
    assert merkle.root(hashes) == merkle.root_from_nodes(100_000, nodes.get)
    assert merkle.root(hashes[:99_999]) == merkle.root_from_nodes(99_999, nodes.get)


# ----------------------------------------------------------------------- inclusion


def test_inclusion_every_size_every_index(store):
    run = reading(store)
    for n in range(1, N_MAX + 1):
        root = ref_mth(0, n)
        for i in range(n):
            want = ref_path(i, 0, n)
            got, reads = run(merkle.inclusion_proof_from_nodes, i, n)
            assert got == want, (i, n)
            assert reads <= read_bound(n), (i, n, reads)
            assert merkle.verify_inclusion(HASHES[i], i, n, want, root) is None
            assert merkle.root_from_inclusion_proof(HASHES[i], i, n, want) == root
            assert rfc_verify_inclusion(i, n, HASHES[i], want, root)


def test_in_memory_inclusion_every_size():
    rng = random.Random(9162)
    for n in range(1, N_MAX + 1):
        # Every index while cheap; the in-memory builder is O(n) per proof.
        indexes = range(n) if n <= 128 else {0, n - 1, n // 2, *rng.sample(range(n), 5)}
        for i in indexes:
            assert merkle.inclusion_proof(i, HASHES[:n]) == ref_path(i, 0, n), (i, n)


@SETTINGS
@given(st.data())
def test_inclusion_random(data):
    n = data.draw(st.integers(1, N_BIG), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = merkle.inclusion_proof(i, HASHES[:n])
    assert proof == ref_path(i, 0, n)
    merkle.verify_inclusion(HASHES[i], i, n, proof, ref_mth(0, n))


def sides(m: int, n: int) -> list[str]:
    """Which side each PATH element sits on (leaf first), from the RFC recursion."""
    if n == 1:
        return []
    k = largest_pow2_below(n)
    return sides(m, k) + ["R"] if m < k else sides(m - k, n - k) + ["L"]


def inclusion_mutations(i: int, n: int, proof: list[bytes], root: bytes):
    """(description, args) of proofs that must be rejected, for index i of size n."""
    leaf = HASHES[i]
    for k, element in enumerate(proof):
        for bit in {0, 4, 255, (7 * k + i) % 256}:
            yield f"proof[{k}] bit {bit}", (leaf, i, n, proof[:k] + [flip(element, bit)] + proof[k + 1 :], root)
        yield f"removed proof[{k}]", (leaf, i, n, proof[:k] + proof[k + 1 :], root)
    for k in range(len(proof) + 1):
        for extra in (root, leaf, bytes(32)):
            yield f"inserted at {k}", (leaf, i, n, proof[:k] + [extra] + proof[k:], root)
    for bit in (0, 7, 128, 255):
        yield f"leaf bit {bit}", (flip(leaf, bit), i, n, proof, root)
        yield f"root bit {bit}", (leaf, i, n, proof, flip(root, bit))
    for j in range(-1, n + 2):
        if j != i:
            yield f"index {j}", (leaf, j, n, proof, root)
    yield "empty tree", (leaf, i, 0, proof, root)
    if i != 0:
        yield "other leaf", (HASHES[0], i, n, proof, root)


def test_inclusion_every_mutation_is_rejected():
    for n in range(1, N_MUTATE + 1):
        root = ref_mth(0, n)
        for i in range(n):
            proof = ref_path(i, 0, n)
            for what, args in inclusion_mutations(i, n, proof, root):
                with pytest.raises(ProofError):
                    merkle.verify_inclusion(*args)
                if args[1] >= 0 and args[2] > 0:
                    assert not rfc_verify_inclusion(args[1], args[2], args[0], args[3], args[4]), what


def test_inclusion_wrong_size_accepted_only_when_path_shape_is_identical():
    # A proof for (i, n) also verifies for (i, n') when both paths have the same
    # left/right shape: the hashing is then literally the same.  Nothing else passes.
    for n in range(1, N_MUTATE + 1):
        root = ref_mth(0, n)
        for i in range(n):
            proof = ref_path(i, 0, n)
            for n2 in range(1, 2 * n + 3):
                if n2 == n:
                    continue
                got = inclusion_ok(HASHES[i], i, n2, proof, root)
                assert got == contract_inclusion_ok(HASHES[i], i, n2, proof, root)
                assert got == (i < n2 and sides(i, n2) == sides(i, n)), (i, n, n2)


@SETTINGS
@given(st.data())
def test_inclusion_random_bit_flip_is_rejected(data):
    n = data.draw(st.integers(2, N_BIG), label="size")
    i = data.draw(st.integers(0, n - 1), label="index")
    proof = ref_path(i, 0, n)
    root = ref_mth(0, n)
    target = data.draw(st.sampled_from(["proof", "leaf", "root"]), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    leaf = HASHES[i]
    if target == "proof":
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        proof = proof[:k] + [flip(proof[k], bit)] + proof[k + 1 :]
    elif target == "leaf":
        leaf = flip(leaf, bit)
    else:
        root = flip(root, bit)
    with pytest.raises(ProofError):
        merkle.verify_inclusion(leaf, i, n, proof, root)


# --------------------------------------------------------------------- consistency


def test_consistency_all_pairs(store):
    run = reading(store)
    for n2 in range(1, N_PAIRS + 1):
        root2 = ref_mth(0, n2)
        for n1 in range(1, n2 + 1):
            want = ref_consistency(n1, n2)
            root1 = ref_mth(0, n1)
            assert merkle.consistency_proof(n1, HASHES[:n2]) == want, (n1, n2)
            got, reads = run(merkle.consistency_proof_from_nodes, n1, n2)
            assert got == want, (n1, n2)
            assert reads <= read_bound(n2), (n1, n2, reads)
            assert merkle.verify_consistency(n1, n2, want, root1, root2) is None
            assert merkle.root_from_consistency_proof(n1, n2, want, root1) == root2
            assert contract_consistency_ok(n1, n2, want, root1, root2)


@SETTINGS
@given(data=st.data())
def test_consistency_random_pairs(store, data):
    n2 = data.draw(st.integers(1, N_BIG), label="size2")
    n1 = data.draw(st.integers(1, n2), label="size1")
    want = ref_consistency(n1, n2)
    assert merkle.consistency_proof(n1, HASHES[:n2]) == want
    assert merkle.consistency_proof_from_nodes(n1, n2, store.get) == want
    merkle.verify_consistency(n1, n2, want, ref_mth(0, n1), ref_mth(0, n2))


def consistency_mutations(n1: int, n2: int, proof: list[bytes], r1: bytes, r2: bytes):
    """(description, args) of consistency proofs that must be rejected."""
    for k, element in enumerate(proof):
        for bit in {0, 4, 255, (5 * k + n1) % 256}:
            yield f"proof[{k}] bit {bit}", (n1, n2, proof[:k] + [flip(element, bit)] + proof[k + 1 :], r1, r2)
        yield f"removed proof[{k}]", (n1, n2, proof[:k] + proof[k + 1 :], r1, r2)
    for k in range(len(proof) + 1):
        for extra in (r1, r2, bytes(32)):
            yield f"inserted at {k}", (n1, n2, proof[:k] + [extra] + proof[k:], r1, r2)
    for bit in (0, 255):
        yield f"root1 bit {bit}", (n1, n2, proof, flip(r1, bit), r2)
        yield f"root2 bit {bit}", (n1, n2, proof, r1, flip(r2, bit))
    if r1 != r2:
        yield "swapped roots", (n1, n2, proof, r2, r1)
    yield "size1 zero", (0, n2, proof, r1, r2)
    yield "size2 zero", (n1, 0, proof, r1, r2)
    if n1 != n2:
        yield "sizes reversed", (n2, n1, proof, r1, r2)


def test_consistency_every_mutation_is_rejected():
    for n2 in range(1, N_MUTATE + 1):
        for n1 in range(1, n2 + 1):
            proof = ref_consistency(n1, n2)
            r1, r2 = ref_mth(0, n1), ref_mth(0, n2)
            for what, args in consistency_mutations(n1, n2, proof, r1, r2):
                with pytest.raises(ProofError):
                    merkle.verify_consistency(*args)
                assert not contract_consistency_ok(*args), what


def test_consistency_wrong_sizes_agree_with_rfc_verifier():
    # Changing a size may by coincidence keep the hashing identical (as for
    # inclusion); whatever the verdict, it must be the RFC algorithm's.
    for n2 in range(1, N_MUTATE + 1):
        for n1 in range(1, n2 + 1):
            proof = ref_consistency(n1, n2)
            r1, r2 = ref_mth(0, n1), ref_mth(0, n2)
            for m1 in range(0, n2 + 2):
                for m2 in (n2 - 1, n2 + 1, n2 * 2, n2 // 2, m1):
                    args = (m1, m2, proof, r1, r2)
                    assert consistency_ok(*args) == contract_consistency_ok(*args), args


@SETTINGS
@given(st.data())
def test_consistency_random_bit_flip_is_rejected(data):
    n2 = data.draw(st.integers(2, N_BIG), label="size2")
    n1 = data.draw(st.integers(1, n2 - 1), label="size1")
    proof = ref_consistency(n1, n2)
    r1, r2 = ref_mth(0, n1), ref_mth(0, n2)
    target = data.draw(st.sampled_from(["proof", "root1", "root2"]), label="target")
    bit = data.draw(st.integers(0, 255), label="bit")
    if target == "proof":
        k = data.draw(st.integers(0, len(proof) - 1), label="element")
        proof = proof[:k] + [flip(proof[k], bit)] + proof[k + 1 :]
    elif target == "root1":
        r1 = flip(r1, bit)
    else:
        r2 = flip(r2, bit)
    with pytest.raises(ProofError):
        merkle.verify_consistency(n1, n2, proof, r1, r2)


def test_consistency_root1_mismatch_is_reported_as_root1():
    proof = ref_consistency(6, 13)
    bad_root1 = flip(ref_mth(0, 6), 0)
    with pytest.raises(merkle.RootMismatchError) as caught:
        merkle.verify_consistency(6, 13, proof, bad_root1, ref_mth(0, 13))
    assert caught.value.field == "root1"
    assert caught.value.expected == bad_root1
    assert caught.value.calculated == ref_mth(0, 6)


# -------------------------------------------------------------------- stored nodes


def perfect_nodes(size: int) -> dict[tuple[int, int], bytes]:
    """Every perfect subtree of the tree of ``size``, from the reference."""
    nodes = {}
    for level in range(size.bit_length()):
        for index in range(size >> level):
            nodes[(level, index)] = ref_mth(index << level, (index + 1) << level)
    return nodes


def test_root_from_nodes_every_size(store):
    run = reading(store)
    for n in range(N_MAX + 1):
        got, reads = run(merkle.root_from_nodes, n)
        assert got == ref_mth(0, n), n
        assert reads == n.bit_count()


def test_memory_store_holds_exactly_the_perfect_subtrees(store):
    assert store.nodes == perfect_nodes(N_BIG)


def test_new_nodes_for_append_exhaustive():
    full = perfect_nodes(128)
    for old in range(65):
        reads = []

        def get_old(level, index, old=old, reads=reads):
            # Only nodes already complete before the append may be read.
            assert (index + 1) << level <= old, (level, index, old)
            reads.append((level, index))
            return full[(level, index)]

        already = perfect_nodes(old)
        for k in range(65):
            reads.clear()
            created = merkle.new_nodes_for_append(old, HASHES[old : old + k], get_old)
            want = {key: h for key, h in perfect_nodes(old + k).items() if key not in already}
            assert created == want, (old, k)
            assert len(reads) <= (old + k).bit_length()


@SETTINGS
@given(st.lists(st.integers(0, 70), max_size=20))
def test_appends_in_random_chunks(chunks):
    nodes = merkle.MemoryNodes()
    for chunk in chunks:
        old = nodes.size
        before = nodes.reads
        created = nodes.append(HASHES[old : old + chunk])
        assert nodes.reads - before <= (old + chunk).bit_length()
        assert set(created).isdisjoint(perfect_nodes(old))
        assert nodes.nodes == perfect_nodes(nodes.size)
        assert merkle.root_from_nodes(nodes.size, nodes.get) == ref_mth(0, nodes.size)
    if nodes.size:
        i = len(chunks) % nodes.size
        proof = merkle.inclusion_proof_from_nodes(i, nodes.size, nodes.get)
        assert proof == ref_path(i, 0, nodes.size)
        if nodes.size > 1:
            proof = merkle.consistency_proof_from_nodes(1 + i // 2, nodes.size, nodes.get)
            assert proof == ref_consistency(1 + i // 2, nodes.size)


def test_plans_are_pure_and_batchable(store):
    plan = merkle.plan_inclusion(81, 95)
    ids = merkle.plan_node_ids(plan)
    assert len(ids) == len(set(ids))
    fetched = {node: store.nodes[node] for node in ids}
    assert merkle.hashes_from_plan(plan, lambda level, index: fetched[(level, index)]) == ref_path(81, 0, 95)
    # Transparency-dev's example: proof 5 -> 7 is e, f, j, k (node ids below).
    assert merkle.plan_consistency(5, 7) == (((0, 4),), ((0, 5),), ((0, 6),), ((2, 0),))
    # Inclusion of leaf 0 in 7 leaves: b, h, then l = hash(i, j) from two perfect nodes.
    assert merkle.plan_inclusion(0, 7) == (((0, 1),), ((1, 1),), ((1, 2), (0, 6)))
    assert merkle.plan_root(7) == ((2, 0), (1, 2), (0, 6))
    assert merkle.plan_root(0) == ()
