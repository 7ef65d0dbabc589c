#!/usr/bin/env python3
"""Generate the Merkle proof test vectors in ``tests/vectors/merkle/``.

The vectors are an external oracle for ``ledger.merkle``: this script does not
import it.  Trees, proofs and verdicts come from a small independent implementation
written from the RFC 9162 text (2.1.1 MTH, 2.1.3.1 PATH, 2.1.3.2 inclusion
verification, 2.1.4.1 PROOF/SUBPROOF, 2.1.4.2 consistency verification), plus the
strictness rules of the ledger's contract (exact 32-byte hashes, plain non-bool
int sizes, no proofs from or to an empty tree).

Leaf data: the eight standard RFC 6962 test leaves (as used by the Go and C++
certificate-transparency reference tests), followed by ``b"evledger-leaf-%d" % i``.

Each file holds one case::

    {"kind": "inclusion", "name": ..., "mutation": ..., "valid": bool,
     "leaf_index", "tree_size", "leaf_hash", "proof": [hex...], "root"}
    {"kind": "consistency", ..., "size1", "size2", "root1", "root2", "proof"}
    {"kind": "roots", "leaf_data": [hex...], "roots": [hex for sizes 0..n]}

Hashes are lowercase hex; sizes are JSON numbers except in the cases that test type
strictness (``true``, ``1.0``, ``"1"``).  Happy-path cases also carry ``leaf_data``
for the whole tree so a test can regenerate the proof.

Usage: ``python tools/gen_merkle_vectors.py [--out DIR] [--check]``.  Output is
deterministic; ``--check`` exits 1 if DIR differs from what would be written.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parent.parent / "tests" / "vectors" / "merkle"

RFC6962_LEAVES = [
    bytes.fromhex(h)
    for h in ("", "00", "10", "2021", "3031", "40414243", "5051525354555657",
              "606162636465666768696a6b6c6d6e6f")
]

INCLUSION_CASES = [(0, 1), (5, 8), (7, 13), (12, 13)]
CONSISTENCY_CASES = [(1, 8), (6, 8), (4, 13), (7, 13)]


def leaf_data(i: int) -> bytes:
    return RFC6962_LEAVES[i] if i < len(RFC6962_LEAVES) else b"evledger-leaf-%d" % i


# --- RFC 9162 section 2.1, transcribed ------------------------------------------


def sha256(b: bytes) -> bytes:
    return hashlib.sha256(b).digest()


def k_of(n: int) -> int:
    """The largest power of two smaller than n (n > 1)."""
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    n = len(d)
    if n == 0:
        return sha256(b"")
    if n == 1:
        return sha256(b"\x00" + d[0])
    k = k_of(n)
    return sha256(b"\x01" + mth(d[:k]) + mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    n = len(d)
    if n == 1:
        return []
    k = k_of(n)
    if m < k:
        return path(m, d[:k]) + [mth(d[k:])]
    return path(m - k, d[k:]) + [mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = k_of(n)
    if m <= k:
        return subproof(m, d[:k], b) + [mth(d[k:])]
    return subproof(m - k, d[k:], False) + [mth(d[:k])]


def rfc_verify_inclusion(leaf_index, tree_size, h, inclusion_path, root_hash) -> bool:
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


# --- contract strictness around the RFC algorithms ----------------------------


def _is_count(x) -> bool:
    return type(x) is int and 0 <= x < 2**64


def _is_hash(x) -> bool:
    return type(x) is bytes and len(x) == 32


def inclusion_verdict(index, size, leaf_hash, proof, root) -> bool:
    if not (_is_count(index) and _is_count(size) and size > 0):
        return False
    if not (_is_hash(leaf_hash) and _is_hash(root) and all(map(_is_hash, proof))):
        return False
    return rfc_verify_inclusion(index, size, leaf_hash, proof, root)


def consistency_verdict(size1, size2, root1, root2, proof) -> bool:
    if not (_is_count(size1) and _is_count(size2) and 0 < size1 <= size2):
        return False
    if not (_is_hash(root1) and _is_hash(root2) and all(map(_is_hash, proof))):
        return False
    if size1 == size2:
        return not proof and root1 == root2
    return rfc_verify_consistency(size1, size2, root1, root2, proof)


# --- cases ----------------------------------------------------------------------

SOME_HASH = bytes.fromhex("abacaba000000000000000000000000000000000000000000060061e00123456")


def flip(h: bytes, bit: int) -> bytes:
    return h[: bit // 8] + bytes([h[bit // 8] ^ (1 << (bit % 8))]) + h[bit // 8 + 1 :]


def inclusion_cases(index: int, size: int):
    d = [leaf_data(i) for i in range(size)]
    lh, root, proof = sha256(b"\x00" + d[index]), mth(d), path(index, d)
    cases = [("happy-path", index, size, lh, proof, root)]
    cases += [
        ("index-minus-1", index - 1, size, lh, proof, root),
        ("index-plus-1", index + 1, size, lh, proof, root),
        ("index-xor-2", index ^ 2, size, lh, proof, root),
        ("size-times-2", index, size * 2, lh, proof, root),
        ("size-div-2", index, size // 2, lh, proof, root),
        ("size-zero", index, 0, lh, proof, root),
        ("index-is-bool", bool(index), size, lh, proof, root) if index in (0, 1) else None,
        ("size-is-float", index, float(size), lh, proof, root),
        ("modified-leaf-bit@0", index, size, flip(lh, 0), proof, root),
        ("modified-root-bit@255", index, size, lh, proof, flip(root, 255)),
        ("short-leaf-hash", index, size, lh[:31], proof, root),
        ("long-root", index, size, lh, proof, root + b"\x00"),
        ("trailing-garbage", index, size, lh, proof + [SOME_HASH], root),
        ("preceding-root", index, size, lh, [root] + proof, root),
        ("short-proof-element", index, size, lh, [p[:31] for p in proof[:1]] + proof[1:], root)
        if proof else None,
        ("removed-last", index, size, lh, proof[:-1], root) if proof else None,
    ]
    for i in range(len(proof)):
        wrong = proof[:i] + [flip(proof[i], 4)] + proof[i + 1 :]
        cases.append((f"modified-proof@{i}-bit@4", index, size, lh, wrong, root))
    for name, *args in filter(None, cases):
        yield name, args, d


def consistency_cases(size1: int, size2: int):
    d = [leaf_data(i) for i in range(size2)]
    r1, r2 = mth(d[:size1]), mth(d)
    proof = subproof(size1, d, True)
    cases = [
        ("happy-path", size1, size2, r1, r2, proof),
        ("size1-minus-1", size1 - 1, size2, r1, r2, proof),
        ("size1-plus-1", size1 + 1, size2, r1, r2, proof),
        ("size1-xor-2", size1 ^ 2, size2, r1, r2, proof),
        ("size2-times-2", size1, size2 * 2, r1, r2, proof),
        ("size2-div-2", size1, size2 // 2, r1, r2, proof),
        ("size1-zero", 0, size2, r1, r2, proof),
        ("swapped-roots", size1, size2, r2, r1, proof),
        ("modified-root1-bit@0", size1, size2, flip(r1, 0), r2, proof),
        ("modified-root2-bit@0", size1, size2, r1, flip(r2, 0), proof),
        ("empty-proof", size1, size2, r1, r2, []),
        ("trailing-root2", size1, size2, r1, r2, proof + [r2]),
        ("preceding-proof@0", size1, size2, r1, r2, proof[:1] + proof),
        ("truncated-proof", size1, size2, r1, r2, proof[:-1]),
    ]
    for i in range(len(proof)):
        wrong = proof[:i] + [flip(proof[i], 4)] + proof[i + 1 :]
        cases.append((f"modified-proof@{i}-bit@4", size1, size2, r1, r2, wrong))
    for name, *args in cases:
        yield name, args, d


def edge_consistency_cases():
    d = [leaf_data(i) for i in range(8)]
    r3, r8 = mth(d[:3]), mth(d)
    empty = sha256(b"")
    yield "3-to-3-happy-path", (3, 3, r3, r3, []), d[:3]
    yield "3-to-3-nonempty-proof", (3, 3, r3, r3, [r3]), None
    yield "3-to-3-different-roots", (3, 3, r3, r8, []), None
    yield "0-to-0-empty-trees", (0, 0, empty, empty, []), None
    yield "0-to-8-from-empty-tree", (0, 8, empty, r8, []), None
    yield "8-to-3-size2-smaller", (8, 3, r8, r3, []), None
    yield "1-to-8-size1-is-bool", (True, 8, mth(d[:1]), r8, subproof(1, d, True)), None
    yield "3-to-8-size2-is-string", (3, "8", r3, r8, subproof(3, d, True)), None


def hexs(hs):
    return [h.hex() for h in hs]


def build() -> dict[str, dict]:
    files: dict[str, dict] = {}
    for index, size in INCLUSION_CASES:
        for name, (i, n, lh, proof, root), d in inclusion_cases(index, size):
            case = {
                "kind": "inclusion", "mutation": name, "leaf_index": i, "tree_size": n,
                "leaf_hash": lh.hex(), "proof": hexs(proof), "root": root.hex(),
                "valid": inclusion_verdict(i, n, lh, proof, root),
            }
            if name == "happy-path":
                case["leaf_data"] = hexs(d)
            files[f"inclusion-{index}-of-{size}-{name}"] = case
    for size1, size2 in CONSISTENCY_CASES:
        for name, args, d in consistency_cases(size1, size2):
            files[f"consistency-{size1}-to-{size2}-{name}"] = _consistency(name, args, d)
    for name, args, d in edge_consistency_cases():
        files[f"consistency-{name}"] = _consistency(name, args, d)
    roots = [mth(RFC6962_LEAVES[:n]) for n in range(len(RFC6962_LEAVES) + 1)]
    files["roots-rfc6962-leaves"] = {
        "kind": "roots", "mutation": "none", "valid": True,
        "leaf_data": hexs(RFC6962_LEAVES), "roots": hexs(roots),
    }
    for name, case in files.items():
        case["name"] = name
    return files


def _consistency(name, args, d) -> dict:
    s1, s2, r1, r2, proof = args
    case = {
        "kind": "consistency", "mutation": name, "size1": s1, "size2": s2,
        "root1": r1.hex(), "root2": r2.hex(), "proof": hexs(proof),
        "valid": consistency_verdict(s1, s2, r1, r2, proof),
    }
    if name.endswith("happy-path"):
        case["leaf_data"] = hexs(d)
    return case


def render(case: dict) -> str:
    return json.dumps(case, indent=1, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    wanted = {f"{name}.json": render(case) for name, case in build().items()}
    existing = {p.name for p in args.out.glob("*.json")} if args.out.is_dir() else set()
    if args.check:
        stale = sorted(existing ^ set(wanted))
        changed = sorted(n for n in wanted if n in existing and (args.out / n).read_text() != wanted[n])
        for n in stale + changed:
            print(f"differs: {n}", file=sys.stderr)
        return 1 if stale or changed else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n in existing - set(wanted):
        (args.out / n).unlink()
    for n, text in wanted.items():
        (args.out / n).write_text(text)
    print(f"wrote {len(wanted)} vectors to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
