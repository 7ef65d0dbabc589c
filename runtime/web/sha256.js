// Incremental SHA-256 (FIPS 180-4) in plain JavaScript.
//
// WebCrypto's digest() takes the whole message at once, so a multi-gigabyte file
// would have to sit in memory; this hasher takes the file in chunks (hashFile) and
// reports progress.  Checked against the FIPS test vectors and against WebCrypto
// and Python's hashlib for many lengths (tests/unit/test_web_js.py).

const K = new Int32Array([
  0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
  0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
  0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
  0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
  0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
  0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
  0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
  0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]);
const H0 = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19];

export class Sha256 {
  constructor() {
    this.h = new Int32Array(H0);
    this.w = new Int32Array(64); // int32 (not uint32) keeps V8 on small integers
    this.buf = new Uint8Array(64); // a partial block
    this.bufLen = 0;
    this.total = 0; // bytes hashed so far (exact up to 2**53)
    this.done = false;
  }

  /** Hash `data` (a Uint8Array) into the state; returns this. */
  update(data) {
    if (this.done) throw new Error("Sha256: update after digest");
    if (!(data instanceof Uint8Array)) throw new TypeError("Sha256.update needs a Uint8Array");
    let pos = 0;
    const len = data.length;
    this.total += len;
    if (this.bufLen > 0) {
      const take = Math.min(64 - this.bufLen, len);
      this.buf.set(data.subarray(0, take), this.bufLen);
      this.bufLen += take;
      pos = take;
      if (this.bufLen < 64) return this;
      this.compress(this.buf, 0);
      this.bufLen = 0;
    }
    for (; pos + 64 <= len; pos += 64) this.compress(data, pos);
    if (pos < len) {
      this.buf.set(data.subarray(pos), 0);
      this.bufLen = len - pos;
    }
    return this;
  }

  /** Finish and return the 32-byte digest. */
  digest() {
    if (this.done) throw new Error("Sha256: digest called twice");
    const bits = this.total * 8;
    const pad = new Uint8Array((this.bufLen < 56 ? 64 : 128) - this.bufLen);
    pad[0] = 0x80;
    const view = new DataView(pad.buffer);
    view.setUint32(pad.length - 8, Math.floor(bits / 0x100000000), false);
    view.setUint32(pad.length - 4, bits >>> 0, false);
    const total = this.total;
    this.update(pad);
    this.total = total;
    this.done = true;
    const out = new Uint8Array(32);
    const ov = new DataView(out.buffer);
    for (let i = 0; i < 8; i++) ov.setUint32(4 * i, this.h[i], false);
    return out;
  }

  compress(block, off) {
    // Everything in local int32 variables: V8 keeps them unboxed.
    const w = this.w, h = this.h;
    for (let i = 0; i < 16; i++) {
      const j = off + 4 * i;
      w[i] = (block[j] << 24) | (block[j + 1] << 16) | (block[j + 2] << 8) | block[j + 3];
    }
    for (let i = 16; i < 64; i++) {
      const a = w[i - 15], b = w[i - 2];
      const s0 = ((a >>> 7) | (a << 25)) ^ ((a >>> 18) | (a << 14)) ^ (a >>> 3);
      const s1 = ((b >>> 17) | (b << 15)) ^ ((b >>> 19) | (b << 13)) ^ (b >>> 10);
      w[i] = (w[i - 16] + s0 + w[i - 7] + s1) | 0;
    }
    let a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7];
    for (let i = 0; i < 64; i++) {
      const S1 = ((e >>> 6) | (e << 26)) ^ ((e >>> 11) | (e << 21)) ^ ((e >>> 25) | (e << 7));
      const t1 = (hh + S1 + ((e & f) ^ (~e & g)) + K[i] + w[i]) | 0;
      const S0 = ((a >>> 2) | (a << 30)) ^ ((a >>> 13) | (a << 19)) ^ ((a >>> 22) | (a << 10));
      const t2 = (S0 + ((a & b) ^ (a & c) ^ (b & c))) | 0;
      hh = g; g = f; f = e; e = (d + t1) | 0; d = c; c = b; b = a; a = (t1 + t2) | 0;
    }
    h[0] = (h[0] + a) | 0; h[1] = (h[1] + b) | 0; h[2] = (h[2] + c) | 0; h[3] = (h[3] + d) | 0;
    h[4] = (h[4] + e) | 0; h[5] = (h[5] + f) | 0; h[6] = (h[6] + g) | 0; h[7] = (h[7] + hh) | 0;
  }
}

/** SHA-256 of one or more byte arrays, concatenated. */
export function sha256(...parts) {
  const hasher = new Sha256();
  for (const part of parts) hasher.update(part);
  return hasher.digest();
}

export const CHUNK_BYTES = 4 * 1024 * 1024;

/**
 * Hash a File/Blob in chunks, never holding more than one chunk in memory.
 * onProgress(done, total) is called after each chunk; `signal` (an AbortSignal)
 * stops the work with an AbortError.  Resolves to the 32-byte digest.
 */
export async function hashFile(blob, onProgress = () => {}, signal = null, chunkBytes = CHUNK_BYTES) {
  const hasher = new Sha256();
  const total = blob.size;
  onProgress(0, total);
  for (let offset = 0; offset < total; offset += chunkBytes) {
    if (signal && signal.aborted) throw new DOMException("hashing cancelled", "AbortError");
    const chunk = new Uint8Array(await blob.slice(offset, Math.min(total, offset + chunkBytes)).arrayBuffer());
    hasher.update(chunk);
    onProgress(Math.min(total, offset + chunkBytes), total);
  }
  return hasher.digest();
}

export function toHex(bytes) {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** Strict lowercase/uppercase hex -> bytes; throws on odd length or a non-hex character. */
export function fromHex(text) {
  if (typeof text !== "string" || text.length % 2 !== 0 || !/^[0-9a-fA-F]*$/.test(text)) {
    throw new TypeError("not a hex string");
  }
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.substr(2 * i, 2), 16);
  return out;
}

export function bytesEqual(a, b) {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i] ^ b[i];
  return diff === 0;
}
