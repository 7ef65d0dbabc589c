// Deposit codes in the browser: an exact mirror of ledger/codes.py (its module
// docstring is the specification).  The page checks a code as it is typed, so
// that a typo is reported as a typo and never reaches the node as "not found".
//
// Positions and lengths count code points, as Python does (never UTF-16 units).
// tests/unit/test_web_js.py compares every function here with the Python module.

import { sha256 } from "./sha256.js";

export const ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
export const DATA_SYMBOLS = 23;
export const CHECK_SYMBOLS = 2;
export const CODE_SYMBOLS = DATA_SYMBOLS + CHECK_SYMBOLS; // 25
export const CHECK_MODULUS = 1021;
export const MAX_INPUT_CHARS = 64;
const PREFIX = "EV";
const DERIVATION_DOMAIN = "evledger/deposit-code/1\u0000";

const SYMBOL_VALUE = new Map([...ALPHABET].map((ch, i) => [ch, i]));

// Every accepted input character -> its canonical symbol (explicit tables, no
// toUpperCase/normalize: look-alikes such as dotless i or the Kelvin sign are bad
// characters, exactly as in Python).
const FOLD = (() => {
  const table = new Map();
  for (const ch of ALPHABET) {
    table.set(ch, ch);
    table.set(ch.toLowerCase(), ch); // ASCII only: digits map to themselves
  }
  for (const [aid, sym] of [["I", "1"], ["L", "1"], ["O", "0"]]) {
    table.set(aid, sym);
    table.set(aid.toLowerCase(), sym);
  }
  for (const [ch, sym] of [...table]) {
    table.set(String.fromCodePoint(ch.codePointAt(0) + 0xfee0), sym); // full-width forms
  }
  return table;
})();

const SEPARATORS = (() => {
  const set = new Set(" \t\r\n\u00a0\u202f\u205f\u3000\u200b\u2060\ufeff-\u2212\uff0d");
  for (let c = 0x2000; c < 0x200b; c++) set.add(String.fromCodePoint(c));
  for (let c = 0x2010; c < 0x2016; c++) set.add(String.fromCodePoint(c));
  return set;
})();

/** A failure of parseCode: detail is one of empty, too_long, bad_character, wrong_length, bad_checksum. */
export class CodeError extends Error {
  constructor(detail, message, extra = {}) {
    super(message);
    this.reason = "malformed_code";
    this.detail = detail;
    this.position = extra.position ?? null; // bad_character: 1-based code point position
    this.character = extra.character ?? null; // bad_character: the character
    this.count = extra.count ?? null; // wrong_length: symbols found
    this.hasPrefix = extra.hasPrefix ?? false; // wrong_length: the symbols start with EV
  }
}

function checkValue(value) {
  // c = (-value * 32**2) mod 1021, value < 2**115 held in a BigInt.
  const m = BigInt(CHECK_MODULUS);
  return Number((((-value * 1024n) % m) + m) % m);
}

function encodeSymbols(number, count) {
  let out = "";
  for (let i = count - 1; i >= 0; i--) out += ALPHABET[Number((number >> BigInt(5 * i)) & 31n)];
  return out;
}

function decodeSymbols(symbols) {
  let number = 0n;
  for (const ch of symbols) number = (number << 5n) | BigInt(SYMBOL_VALUE.get(ch));
  return number;
}

/** Name a character safely: invisible, space-like and control characters by their U+ number only. */
export function describeChar(ch) {
  const cp = ch.codePointAt(0);
  const name = "U+" + cp.toString(16).toUpperCase().padStart(4, "0");
  return /^[\p{L}\p{N}\p{P}\p{S}]$/u.test(ch) ? `"${ch}" (${name})` : name;
}

function checkInput(text) {
  if (typeof text !== "string") throw new TypeError("deposit code must be a string");
  const count = [...text].length;
  if (count > MAX_INPUT_CHARS) {
    throw new CodeError("too_long", `input is ${count} characters long; a deposit code is at most ` +
      `${MAX_INPUT_CHARS} characters even with spaces and hyphens`, { count });
  }
  return text;
}

function scan(text) {
  let symbols = "";
  let position = 0;
  for (const ch of text) {
    position += 1;
    if (SEPARATORS.has(ch)) continue;
    const sym = FOLD.get(ch);
    if (sym === undefined) {
      const hint = "Uu\uff35\uff55".includes(ch) ? " (the letter U is never used)" : "";
      throw new CodeError("bad_character", `character ${describeChar(ch)} at position ${position} cannot ` +
        `appear in a deposit code${hint}; codes use digits and letters (not U), spaces and hyphens`,
        { position, character: ch });
    }
    symbols += sym;
  }
  return symbols;
}

function stripPrefix(symbols) {
  return symbols.length === CODE_SYMBOLS + PREFIX.length && symbols.startsWith(PREFIX)
    ? symbols.slice(PREFIX.length) : symbols;
}

function checksumOk(symbols) {
  const value = decodeSymbols(symbols.slice(0, DATA_SYMBOLS));
  return Number(decodeSymbols(symbols.slice(DATA_SYMBOLS))) === checkValue(value);
}

function lengthMessage(symbols) {
  const count = symbols.length;
  let effective = count;
  let found = `found ${count} symbols (letters and digits)`;
  if (count > PREFIX.length && symbols.startsWith(PREFIX)) {
    effective = count - PREFIX.length;
    found = `found ${count} symbols (${effective} after the EV prefix)`;
  }
  const msg = `${found} but a deposit code has ${CODE_SYMBOLS}, not counting the EV- prefix`;
  if (effective < CODE_SYMBOLS) return msg + ": a character is probably missing";
  if (effective === CODE_SYMBOLS + PREFIX.length) return msg + ": there are two extra characters, or the prefix is mistyped";
  return msg + ": there is probably an extra character";
}

/** A well-formed code: value (BigInt), compact (25 symbols) and printed (EV-XXXXX-...). */
export class DepositCode {
  constructor(value) {
    if (typeof value !== "bigint" || value < 0n || value >= 1n << 115n) throw new RangeError("bad code value");
    this.value = value;
    this.compact = encodeSymbols(value, DATA_SYMBOLS) + encodeSymbols(BigInt(checkValue(value)), CHECK_SYMBOLS);
    const groups = [];
    for (let i = 0; i < CODE_SYMBOLS; i += 5) groups.push(this.compact.slice(i, i + 5));
    this.printed = PREFIX + "-" + groups.join("-");
  }
  toString() { return this.printed; }
}

/** Parse a code as typed by a person (ledger.codes.parse_code); throws CodeError if malformed. */
export function parseCode(text) {
  let symbols = scan(checkInput(text));
  if (!symbols) throw new CodeError("empty", "no deposit code was entered");
  symbols = stripPrefix(symbols);
  if (symbols.length !== CODE_SYMBOLS) {
    throw new CodeError("wrong_length", lengthMessage(symbols),
      { count: symbols.length, hasPrefix: symbols.length > PREFIX.length && symbols.startsWith(PREFIX) });
  }
  if (!checksumOk(symbols)) throw new CodeError("bad_checksum", "checksum does not match: probably a typing error");
  return new DepositCode(decodeSymbols(symbols.slice(0, DATA_SYMBOLS)));
}

/** Classify a code being typed (ledger.codes.partial_check): incomplete, bad_character, too_long, bad_checksum, ok. */
export function partialCheck(text) {
  let symbols;
  try {
    symbols = scan(checkInput(text));
  } catch (err) {
    if (!(err instanceof CodeError)) throw err;
    return err.detail === "too_long" ? "too_long" : "bad_character";
  }
  const body = stripPrefix(symbols);
  if (body.length === CODE_SYMBOLS && checksumOk(body)) return "ok";
  const n = symbols.length;
  const candidates = symbols.startsWith(PREFIX) ? [n - PREFIX.length, n] : [n];
  if (candidates.some((c) => c < CODE_SYMBOLS)) return "incomplete";
  if (candidates.includes(CODE_SYMBOLS)) return "bad_checksum";
  return "too_long";
}

/** Derive the code of item `index` from the chain id and the 64-byte entry signature (ledger.codes.derive_code). */
export function deriveCode(chainId, signature, index) {
  if (!(signature instanceof Uint8Array) || signature.length !== 64) throw new RangeError("signature must be 64 bytes");
  if (!Number.isInteger(index) || index < 0 || index >= 2 ** 32) throw new RangeError("index out of range");
  const enc = new TextEncoder();
  const domain = enc.encode(DERIVATION_DOMAIN);
  const chain = enc.encode(chainId);
  const input = new Uint8Array(domain.length + chain.length + 1 + 64 + 4);
  input.set(domain, 0);
  input.set(chain, domain.length);
  input[domain.length + chain.length] = 0;
  input.set(signature, domain.length + chain.length + 1);
  new DataView(input.buffer).setUint32(input.length - 4, index, false);
  const digest = sha256(input);
  let value = 0n;
  for (let i = 0; i < 15; i++) value = (value << 8n) | BigInt(digest[i]);
  return new DepositCode(value >> 5n);
}
