// Ed25519 signature verification (RFC 8032 section 5.1.7), with libsodium's
// rules (docs/receipt.md section 5.5): S must be canonical (< L) and neither the
// public key nor R may be a point of small order.  Honest signatures verify the
// same everywhere; these rules only matter for crafted ones.
//
// verifyEd25519 uses WebCrypto ("Ed25519" in crypto.subtle) whenever the browser
// offers it.  WebCrypto exists only in secure contexts (https://, or http://
// on 127.0.0.1/localhost), so a node reached over plain http on a LAN address
// would leave the page unable to check signatures; for that case, and for
// browsers without Ed25519 in WebCrypto, this module carries a small BigInt
// implementation.  Like BoringSSL it rejects S >= L and non-canonical points and
// compares the encoding of [S]B - [h]A with R.  tests/unit/test_web_js.py checks
// both paths against PyNaCl, valid and tampered.

import { bytesEqual } from "./sha256.js";

const P = (1n << 255n) - 19n;
const L = (1n << 252n) + 27742317777372353535851937790883648493n;

function mod(a, m = P) { const r = a % m; return r >= 0n ? r : r + m; }
function pow(base, exp) {
  let result = 1n;
  base = mod(base);
  while (exp > 0n) {
    if (exp & 1n) result = mod(result * base);
    base = mod(base * base);
    exp >>= 1n;
  }
  return result;
}
function inv(a) { return pow(a, P - 2n); }

const D = mod(-121665n * inv(121666n));
const D2 = mod(2n * D);
const SQRT_M1 = pow(2n, (P - 1n) / 4n);

function leInt(bytes) {
  let v = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) v = (v << 8n) | BigInt(bytes[i]);
  return v;
}

// Points in extended coordinates (X, Y, Z, T) with x = X/Z, y = Y/Z, xy = T/Z.
function add(p, q) { // add-2008-hwcd-3, complete for a = -1 and non-square d
  const a = mod((p[1] - p[0]) * (q[1] - q[0]));
  const b = mod((p[1] + p[0]) * (q[1] + q[0]));
  const c = mod(p[3] * D2 * q[3]);
  const d = mod(p[2] * 2n * q[2]);
  const e = b - a, f = d - c, g = d + c, h = b + a;
  return [mod(e * f), mod(g * h), mod(f * g), mod(e * h)];
}

const IDENTITY = [0n, 1n, 1n, 0n];

function multiply(point, scalar) {
  let result = IDENTITY;
  let addend = point;
  while (scalar > 0n) {
    if (scalar & 1n) result = add(result, addend);
    addend = add(addend, addend);
    scalar >>= 1n;
  }
  return result;
}

function decodePoint(bytes) {
  if (bytes.length !== 32) return null;
  const sign = bytes[31] >> 7;
  const copy = Uint8Array.from(bytes);
  copy[31] &= 0x7f;
  const y = leInt(copy);
  if (y >= P) return null;
  const y2 = mod(y * y);
  const u = mod(y2 - 1n);
  const v = mod(D * y2 + 1n);
  const v3 = mod(v * v * v);
  let x = mod(u * v3 * pow(u * v3 * v3 * v, (P - 5n) / 8n));
  const vx2 = mod(v * x * x);
  if (vx2 === u) { /* x is a root */ } else if (vx2 === mod(-u)) x = mod(x * SQRT_M1);
  else return null;
  if (x === 0n && sign === 1) return null;
  if (Number(x & 1n) !== sign) x = mod(-x);
  return [x, y, 1n, mod(x * y)];
}

function encodePoint(p) {
  const zi = inv(p[2]);
  const x = mod(p[0] * zi), y = mod(p[1] * zi);
  const out = new Uint8Array(32);
  let v = y;
  for (let i = 0; i < 32; i++) { out[i] = Number(v & 0xffn); v >>= 8n; }
  out[31] |= Number(x & 1n) << 7;
  return out;
}

const BASE = (() => {
  const by = mod(4n * inv(5n));
  const enc = new Uint8Array(32);
  let v = by;
  for (let i = 0; i < 32; i++) { enc[i] = Number(v & 0xffn); v >>= 8n; }
  return decodePoint(enc); // sign bit 0: the even x
})();

// --- SHA-512 (FIPS 180-4) on BigInt words: only ever hashes short messages here.
const K512 = [
  "428a2f98d728ae22", "7137449123ef65cd", "b5c0fbcfec4d3b2f", "e9b5dba58189dbbc", "3956c25bf348b538",
  "59f111f1b605d019", "923f82a4af194f9b", "ab1c5ed5da6d8118", "d807aa98a3030242", "12835b0145706fbe",
  "243185be4ee4b28c", "550c7dc3d5ffb4e2", "72be5d74f27b896f", "80deb1fe3b1696b1", "9bdc06a725c71235",
  "c19bf174cf692694", "e49b69c19ef14ad2", "efbe4786384f25e3", "0fc19dc68b8cd5b5", "240ca1cc77ac9c65",
  "2de92c6f592b0275", "4a7484aa6ea6e483", "5cb0a9dcbd41fbd4", "76f988da831153b5", "983e5152ee66dfab",
  "a831c66d2db43210", "b00327c898fb213f", "bf597fc7beef0ee4", "c6e00bf33da88fc2", "d5a79147930aa725",
  "06ca6351e003826f", "142929670a0e6e70", "27b70a8546d22ffc", "2e1b21385c26c926", "4d2c6dfc5ac42aed",
  "53380d139d95b3df", "650a73548baf63de", "766a0abb3c77b2a8", "81c2c92e47edaee6", "92722c851482353b",
  "a2bfe8a14cf10364", "a81a664bbc423001", "c24b8b70d0f89791", "c76c51a30654be30", "d192e819d6ef5218",
  "d69906245565a910", "f40e35855771202a", "106aa07032bbd1b8", "19a4c116b8d2d0c8", "1e376c085141ab53",
  "2748774cdf8eeb99", "34b0bcb5e19b48a8", "391c0cb3c5c95a63", "4ed8aa4ae3418acb", "5b9cca4f7763e373",
  "682e6ff3d6b2b8a3", "748f82ee5defb2fc", "78a5636f43172f60", "84c87814a1f0ab72", "8cc702081a6439ec",
  "90befffa23631e28", "a4506cebde82bde9", "bef9a3f7b2c67915", "c67178f2e372532b", "ca273eceea26619c",
  "d186b8c721c0c207", "eada7dd6cde0eb1e", "f57d4f7fee6ed178", "06f067aa72176fba", "0a637dc5a2c898a6",
  "113f9804bef90dae", "1b710b35131c471b", "28db77f523047d84", "32caab7b40c72493", "3c9ebe0a15c9bebc",
  "431d67c49c100d4c", "4cc5d4becb3e42b6", "597f299cfc657e2a", "5fcb6fab3ad6faec", "6c44198c4a475817",
].map((h) => BigInt("0x" + h));
const H512 = ["6a09e667f3bcc908", "bb67ae8584caa73b", "3c6ef372fe94f82b", "a54ff53a5f1d36f1",
  "510e527fade682d1", "9b05688c2b3e6c1f", "1f83d9abfb41bd6b", "5be0cd19137e2179"].map((h) => BigInt("0x" + h));
const M64 = (1n << 64n) - 1n;
const rotr = (x, n) => ((x >> n) | (x << (64n - n))) & M64;

export function sha512(message) {
  const len = message.length;
  const padded = new Uint8Array(Math.ceil((len + 17) / 128) * 128);
  padded.set(message);
  padded[len] = 0x80;
  const bits = BigInt(len) * 8n;
  for (let i = 0; i < 16; i++) padded[padded.length - 1 - i] = Number((bits >> BigInt(8 * i)) & 0xffn);
  const h = [...H512];
  const w = new Array(80);
  for (let off = 0; off < padded.length; off += 128) {
    for (let i = 0; i < 16; i++) {
      let v = 0n;
      for (let j = 0; j < 8; j++) v = (v << 8n) | BigInt(padded[off + 8 * i + j]);
      w[i] = v;
    }
    for (let i = 16; i < 80; i++) {
      const s0 = rotr(w[i - 15], 1n) ^ rotr(w[i - 15], 8n) ^ (w[i - 15] >> 7n);
      const s1 = rotr(w[i - 2], 19n) ^ rotr(w[i - 2], 61n) ^ (w[i - 2] >> 6n);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) & M64;
    }
    let [a, b, c, d, e, f, g, hh] = h;
    for (let i = 0; i < 80; i++) {
      const S1 = rotr(e, 14n) ^ rotr(e, 18n) ^ rotr(e, 41n);
      const ch = (e & f) ^ (~e & M64 & g);
      const t1 = (hh + S1 + ch + K512[i] + w[i]) & M64;
      const S0 = rotr(a, 28n) ^ rotr(a, 34n) ^ rotr(a, 39n);
      const maj = (a & b) ^ (a & c) ^ (b & c);
      const t2 = (S0 + maj) & M64;
      hh = g; g = f; f = e; e = (d + t1) & M64; d = c; c = b; b = a; a = (t1 + t2) & M64;
    }
    h[0] = (h[0] + a) & M64; h[1] = (h[1] + b) & M64; h[2] = (h[2] + c) & M64; h[3] = (h[3] + d) & M64;
    h[4] = (h[4] + e) & M64; h[5] = (h[5] + f) & M64; h[6] = (h[6] + g) & M64; h[7] = (h[7] + hh) & M64;
  }
  const out = new Uint8Array(64);
  h.forEach((word, i) => { for (let j = 0; j < 8; j++) out[8 * i + j] = Number((word >> BigInt(56 - 8 * j)) & 0xffn); });
  return out;
}

/** True iff `bytes` decode to a point P with [8]P = identity (libsodium refuses these as keys and R). */
export function hasSmallOrder(bytes) {
  const point = decodePoint(bytes);
  if (point === null) return false; // not a point at all: fails verification anyway
  const p8 = multiply(point, 8n);
  return mod(p8[0]) === 0n && mod(p8[1] - p8[2]) === 0n;
}

/** Pure-JS verification: true iff `signature` is a valid Ed25519 signature of `message` by `publicKey`. */
export function verifyPure(publicKey, message, signature) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  const A = decodePoint(publicKey);
  if (A === null) return false;
  const R = signature.subarray(0, 32);
  const S = leInt(signature.subarray(32));
  if (S >= L) return false;
  const input = new Uint8Array(64 + message.length);
  input.set(R, 0); input.set(publicKey, 32); input.set(message, 64);
  const h = mod(leInt(sha512(input)), L);
  const negA = [mod(-A[0]), A[1], A[2], mod(-A[3])];
  const check = add(multiply(BASE, S), multiply(negA, h));
  return bytesEqual(encodePoint(check), R);
}

let webCryptoWorks = null; // null: not probed yet

async function webCryptoAvailable() {
  if (webCryptoWorks === null) {
    webCryptoWorks = false;
    try {
      if (globalThis.crypto && crypto.subtle) {
        // RFC 8032 test 1: the empty message.
        const pk = hex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a");
        const sig = hex("e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b");
        const key = await crypto.subtle.importKey("raw", pk, { name: "Ed25519" }, false, ["verify"]);
        webCryptoWorks = await crypto.subtle.verify({ name: "Ed25519" }, key, sig, new Uint8Array(0));
      }
    } catch { webCryptoWorks = false; }
  }
  return webCryptoWorks;
}

function hex(text) { return Uint8Array.from(text.match(/../g), (b) => parseInt(b, 16)); }

/** Which implementation verifyEd25519 uses: "webcrypto" or "javascript". */
export async function implementation() { return (await webCryptoAvailable()) ? "webcrypto" : "javascript"; }

/** Make verifyEd25519 use the pure-JS path, as on a page without WebCrypto (tests); false undoes it. */
export function useJavaScriptOnly(on = true) { webCryptoWorks = on ? false : null; }

/** true iff valid; never throws for a bad key or signature (they are simply invalid). */
export async function verifyEd25519(publicKey, message, signature, { force = null } = {}) {
  if (publicKey.length !== 32 || signature.length !== 64) return false;
  if (hasSmallOrder(publicKey) || hasSmallOrder(signature.subarray(0, 32))) return false;
  if (leInt(signature.subarray(32)) >= L) return false;
  const useWebCrypto = force === null ? await webCryptoAvailable() : force === "webcrypto";
  if (!useWebCrypto) return verifyPure(publicKey, message, signature);
  try {
    const key = await crypto.subtle.importKey("raw", publicKey, { name: "Ed25519" }, false, ["verify"]);
    return await crypto.subtle.verify({ name: "Ed25519" }, key, signature, message);
  } catch {
    return false; // e.g. a public key that is not a curve point
  }
}
