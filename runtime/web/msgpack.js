// Canonical msgpack (docs/data_model.md section 1), encoder and strict decoder.
//
// Only the types evledger hashes or signs: null, booleans, integers in
// [-2**63, 2**64) (Number when safe, BigInt otherwise), strings (str family),
// Uint8Array (bin family), arrays and maps with string keys.  Every value takes its
// shortest form and map keys are sorted by their UTF-8 bytes, exactly as
// ledger/codec.py does, so the page re-computes the same hashes as the nodes.

const utf8 = new TextEncoder();
const utf8Strict = new TextDecoder("utf-8", { fatal: true });

class Writer {
  constructor() { this.parts = []; this.length = 0; }
  bytes(b) { this.parts.push(b); this.length += b.length; }
  u8(...vals) { this.bytes(Uint8Array.from(vals)); }
  uint(tag, value, width) { // value: BigInt
    const b = new Uint8Array(1 + width);
    b[0] = tag;
    for (let i = width; i >= 1; i--) { b[i] = Number(value & 0xffn); value >>= 8n; }
    this.bytes(b);
  }
  result() {
    const out = new Uint8Array(this.length);
    let off = 0;
    for (const p of this.parts) { out.set(p, off); off += p.length; }
    return out;
  }
}

function compareBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

function writeInt(w, value) {
  const v = BigInt(value);
  if (v >= 0n) {
    if (v < 128n) w.u8(Number(v));
    else if (v < 0x100n) w.uint(0xcc, v, 1);
    else if (v < 0x10000n) w.uint(0xcd, v, 2);
    else if (v < 0x100000000n) w.uint(0xce, v, 4);
    else if (v < 1n << 64n) w.uint(0xcf, v, 8);
    else throw new RangeError("integer above 2**64 - 1");
  } else {
    if (v >= -32n) w.u8(Number(v + 256n));
    else if (v >= -0x80n) w.uint(0xd0, v + 0x100n, 1);
    else if (v >= -0x8000n) w.uint(0xd1, v + 0x10000n, 2);
    else if (v >= -0x80000000n) w.uint(0xd2, v + 0x100000000n, 4);
    else if (v >= -(1n << 63n)) w.uint(0xd3, v + (1n << 64n), 8);
    else throw new RangeError("integer below -2**63");
  }
}

function writeLength(w, n, fix, fixMax, tag8, tag16, tag32) {
  const len = BigInt(n);
  if (fix !== null && n < fixMax) w.u8(fix | n);
  else if (tag8 !== null && n < 0x100) w.uint(tag8, len, 1);
  else if (n < 0x10000) w.uint(tag16, len, 2);
  else if (n < 0x100000000) w.uint(tag32, len, 4);
  else throw new RangeError("object too long for msgpack");
}

function write(w, value, depth) {
  if (depth > 32) throw new RangeError("nested deeper than 32 levels");
  if (value === null) w.u8(0xc0);
  else if (value === false) w.u8(0xc2);
  else if (value === true) w.u8(0xc3);
  else if (typeof value === "bigint") writeInt(w, value);
  else if (typeof value === "number") {
    if (!Number.isSafeInteger(value)) throw new TypeError("floats have no canonical encoding: " + value);
    writeInt(w, value);
  } else if (typeof value === "string") {
    const b = utf8.encode(value);
    writeLength(w, b.length, 0xa0, 32, 0xd9, 0xda, 0xdb);
    w.bytes(b);
  } else if (value instanceof Uint8Array) {
    writeLength(w, value.length, null, 0, 0xc4, 0xc5, 0xc6);
    w.bytes(value);
  } else if (Array.isArray(value)) {
    writeLength(w, value.length, 0x90, 16, null, 0xdc, 0xdd);
    for (const v of value) write(w, v, depth + 1);
  } else if (value instanceof Map || (typeof value === "object" && value.constructor === Object)) {
    const entries = value instanceof Map ? [...value] : Object.entries(value);
    for (const [k] of entries) if (typeof k !== "string") throw new TypeError("map keys must be strings");
    const keyed = entries.map(([k, v]) => [utf8.encode(k), k, v]).sort((a, b) => compareBytes(a[0], b[0]));
    for (let i = 1; i < keyed.length; i++) {
      if (compareBytes(keyed[i - 1][0], keyed[i][0]) === 0) throw new TypeError("duplicate map key");
    }
    writeLength(w, keyed.length, 0x80, 16, null, 0xde, 0xdf);
    for (const [, k, v] of keyed) { write(w, k, depth + 1); write(w, v, depth + 1); }
  } else {
    throw new TypeError("no canonical encoding for " + Object.prototype.toString.call(value));
  }
}

/** Canonical msgpack bytes of `value`. */
export function encode(value) {
  const w = new Writer();
  write(w, value, 0);
  return w.result();
}

export class DecodeError extends Error {}

/**
 * Strict decoder for the same types: integers come back as Number when safe and
 * BigInt otherwise, bin as Uint8Array, maps as Map.  The result is re-encoded and
 * must equal the input byte for byte (this refuses every non-canonical form).
 */
export function decode(bytes) {
  if (!(bytes instanceof Uint8Array)) throw new TypeError("decode needs a Uint8Array");
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let pos = 0;
  const need = (n) => {
    if (pos + n > bytes.length) throw new DecodeError("truncated msgpack at byte " + pos);
  };
  const uint = (width) => {
    need(width);
    let v = 0n;
    for (let i = 0; i < width; i++) v = (v << 8n) | BigInt(bytes[pos + i]);
    pos += width;
    return v;
  };
  const int = (v) => (v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v);
  const str = (n) => {
    need(n);
    const s = utf8Strict.decode(bytes.subarray(pos, pos + n));
    pos += n;
    return s;
  };
  const bin = (n) => { need(n); const b = bytes.slice(pos, pos + n); pos += n; return b; };
  const read = (depth) => {
    if (depth > 32) throw new DecodeError("nested deeper than 32 levels");
    need(1);
    const t = bytes[pos++];
    if (t <= 0x7f) return t;
    if (t >= 0xe0) return t - 256;
    if ((t & 0xe0) === 0xa0) return str(t & 0x1f);
    if ((t & 0xf0) === 0x90) return array(t & 0x0f, depth);
    if ((t & 0xf0) === 0x80) return map(t & 0x0f, depth);
    switch (t) {
      case 0xc0: return null;
      case 0xc2: return false;
      case 0xc3: return true;
      case 0xc4: return bin(Number(uint(1)));
      case 0xc5: return bin(Number(uint(2)));
      case 0xc6: return bin(Number(uint(4)));
      case 0xcc: return int(uint(1));
      case 0xcd: return int(uint(2));
      case 0xce: return int(uint(4));
      case 0xcf: return int(uint(8));
      case 0xd0: { const v = uint(1); return int(v >= 0x80n ? v - 0x100n : v); }
      case 0xd1: { const v = uint(2); return int(v >= 0x8000n ? v - 0x10000n : v); }
      case 0xd2: { const v = uint(4); return int(v >= 0x80000000n ? v - 0x100000000n : v); }
      case 0xd3: { const v = uint(8); return int(v >= 1n << 63n ? v - (1n << 64n) : v); }
      case 0xd9: return str(Number(uint(1)));
      case 0xda: return str(Number(uint(2)));
      case 0xdb: return str(Number(uint(4)));
      case 0xdc: return array(Number(uint(2)), depth);
      case 0xdd: return array(Number(uint(4)), depth);
      case 0xde: return map(Number(uint(2)), depth);
      case 0xdf: return map(Number(uint(4)), depth);
      default: throw new DecodeError("msgpack type 0x" + t.toString(16) + " is not allowed");
    }
  };
  const array = (n, depth) => {
    if (n > bytes.length - pos) throw new DecodeError("array longer than the input");
    const out = [];
    for (let i = 0; i < n; i++) out.push(read(depth + 1));
    return out;
  };
  const map = (n, depth) => {
    if (n > bytes.length - pos) throw new DecodeError("map longer than the input");
    const out = new Map();
    for (let i = 0; i < n; i++) {
      const k = read(depth + 1);
      if (typeof k !== "string") throw new DecodeError("map keys must be strings");
      out.set(k, read(depth + 1));
    }
    return out;
  };
  const value = read(0);
  if (pos !== bytes.length) throw new DecodeError("trailing bytes after the msgpack value");
  const again = encode(value);
  if (again.length !== bytes.length || again.some((b, i) => b !== bytes[i])) {
    throw new DecodeError("not canonical msgpack");
  }
  return value;
}
