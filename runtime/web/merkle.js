// RFC 9162 section 2.1 Merkle tree verification, mirroring ledger/merkle.py.
//
// leaf hash SHA-256(0x00 || d), node hash SHA-256(0x01 || l || r).  Verifiers
// return nothing or throw ProofError (RootMismatchError when a well-formed proof
// leads to another root); they never return a boolean a caller could forget.
// Sizes and indexes are BigInt internally: trees are uint64 on the wire.

import { sha256, toHex, bytesEqual } from "./sha256.js";

const LEAF = Uint8Array.of(0);
const NODE = Uint8Array.of(1);

export class ProofError extends Error {
  constructor(message, field) { super(message); this.field = field; }
}

export class RootMismatchError extends ProofError {
  constructor(field, expected, calculated) {
    super(`${field} mismatch: proof yields ${toHex(calculated)}, expected ${toHex(expected)}`, field);
    this.expected = expected;
    this.calculated = calculated;
  }
}

export function leafHash(data) { return sha256(LEAF, data); }
export function nodeHash(left, right) { return sha256(NODE, left, right); }

/** Root over already leaf-hashed entries (the empty tree's root is SHA-256("")). */
export function rootOf(leafHashes) {
  if (leafHashes.length === 0) return sha256(new Uint8Array(0));
  let level = [...leafHashes];
  while (level.length > 1) {
    const next = [];
    for (let i = 0; i + 1 < level.length; i += 2) next.push(nodeHash(level[i], level[i + 1]));
    if (level.length % 2) next.push(level[level.length - 1]);
    level = next;
  }
  return level[0];
}

const MAX = (1n << 64n) - 1n;

function count(value, name) {
  let v;
  try { v = BigInt(value); } catch { throw new ProofError(`${name} must be an integer`, name); }
  if (typeof value === "number" && !Number.isSafeInteger(value)) throw new ProofError(`${name} must be an integer`, name);
  if (v < 0n || v > MAX) throw new ProofError(`${name} out of range`, name);
  return v;
}

function hash32(value, name) {
  if (!(value instanceof Uint8Array) || value.length !== 32) throw new ProofError(`${name} must be 32 bytes`, name);
  return value;
}

function proofList(proof, name = "proof") {
  if (!Array.isArray(proof)) throw new ProofError(`${name} must be a list of hashes`, name);
  proof.forEach((h, i) => hash32(h, `${name}[${i}]`));
  return proof;
}

function bitLength(v) { return v === 0n ? 0 : v.toString(2).length; }
function popCount(v) { return [...v.toString(2)].filter((c) => c === "1").length; }

function inclusionShape(index, size) {
  const inner = bitLength(index ^ (size - 1n));
  const border = popCount(index >> BigInt(inner));
  return [inner, border];
}

function chainInner(seed, proof, index) {
  proof.forEach((sibling, i) => {
    seed = (index >> BigInt(i)) & 1n ? nodeHash(sibling, seed) : nodeHash(seed, sibling);
  });
  return seed;
}

function chainInnerLeftOnly(seed, proof, index) {
  proof.forEach((sibling, i) => {
    if ((index >> BigInt(i)) & 1n) seed = nodeHash(sibling, seed);
  });
  return seed;
}

function chainBorder(seed, proof) {
  for (const sibling of proof) seed = nodeHash(sibling, seed);
  return seed;
}

/** The root that `proof` yields for `leaf` at `index` in a tree of `size` (RFC 9162 2.1.3.2). */
export function rootFromInclusionProof(leaf, index, size, proof) {
  const i = count(index, "index");
  const n = count(size, "size");
  hash32(leaf, "leaf_hash");
  const path = proofList(proof);
  if (n === 0n) throw new ProofError("inclusion proof in an empty tree is impossible", "size");
  if (i >= n) throw new ProofError(`index ${i} is not below tree size ${n}`, "index");
  const [inner, border] = inclusionShape(i, n);
  if (path.length !== inner + border) {
    throw new ProofError(`wrong proof length ${path.length} for index ${i} in tree of size ${n}, want ${inner + border}`, "proof");
  }
  return chainBorder(chainInner(leaf, path.slice(0, inner), i), path.slice(inner));
}

export function verifyInclusion(leaf, index, size, proof, root) {
  hash32(root, "root");
  const calculated = rootFromInclusionProof(leaf, index, size, proof);
  if (!bytesEqual(calculated, root)) throw new RootMismatchError("root", root, calculated);
}

/** Check `proof` against root1 and return the root of the tree of size2 (RFC 9162 2.1.4.2). */
export function rootFromConsistencyProof(size1, size2, proof, root1) {
  const m = count(size1, "size1");
  const n = count(size2, "size2");
  hash32(root1, "root1");
  const path = proofList(proof);
  if (m === 0n) throw new ProofError("consistency proof from empty tree is meaningless", "size1");
  if (n < m) throw new ProofError(`size2 ${n} is smaller than size1 ${m}`, "size2");
  if (m === n) {
    if (path.length) throw new ProofError(`size1 == size2 == ${m} but proof is not empty`, "proof");
    return root1;
  }
  if (!path.length) throw new ProofError("empty proof for size1 < size2", "proof");
  let [inner, border] = inclusionShape(m - 1n, n);
  const shift = bitLength(m & -m) - 1;
  inner -= shift;
  const start = m === 1n << BigInt(shift) ? 0 : 1;
  const want = start + inner + border;
  if (path.length !== want) throw new ProofError(`wrong proof length ${path.length} for sizes ${m} -> ${n}, want ${want}`, "proof");
  const seed = start === 0 ? root1 : path[0];
  const mask = (m - 1n) >> BigInt(shift);
  const innerPath = path.slice(start, start + inner);
  const borderPath = path.slice(start + inner);
  const calculated1 = chainBorder(chainInnerLeftOnly(seed, innerPath, mask), borderPath);
  if (!bytesEqual(calculated1, root1)) throw new RootMismatchError("root1", root1, calculated1);
  return chainBorder(chainInner(seed, innerPath, mask), borderPath);
}

export function verifyConsistency(size1, size2, proof, root1, root2) {
  hash32(root2, "root2");
  const calculated2 = rootFromConsistencyProof(size1, size2, proof, root1);
  if (!bytesEqual(calculated2, root2)) throw new RootMismatchError("root2", root2, calculated2);
}
