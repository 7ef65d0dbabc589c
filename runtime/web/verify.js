// Receipt verification in the browser: docs/receipt.md, step by step.
//
// The same checks, in the same order and with the same ids, as
// ledger/receipt_verify.py: every JSON value is turned back into the typed wire
// object it stands for, re-encoded as canonical msgpack (msgpack.js) and hashed or
// signature-checked; nothing in the receipt is believed.  The verdict has the
// shape of Python's Verdict.to_dict(), so tests/e2e compares the two directly.
//
// A hostile receipt never throws: it yields verdict "invalid" naming the first
// failed check.

import { encode } from "./msgpack.js";
import { sha256, toHex, fromHex, bytesEqual } from "./sha256.js";
import { leafHash, verifyInclusion, ProofError } from "./merkle.js";
import { parseCode, deriveCode, CodeError } from "./codes.js";
import { verifyEd25519 } from "./ed25519.js";
import { formatTime, quorum } from "./genesis.js";

export const FORMAT = "evledger-receipt/1";

export const CHECKS = [
  "format", "chain_id", "genesis_fingerprint", "depositor_role", "entry_signature", "item_inclusion",
  "code_derivation", "entry_inclusion", "history_inclusion", "validator_set", "header_hash",
  "certificate_quorum", "display", "digest",
];

const MAX_SAFE = Number.MAX_SAFE_INTEGER;
const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const META_KEY_RE = /^[a-z0-9_][a-z0-9_.-]{0,63}$/;
const CONTROL_RE = /[\u0000-\u001f\u007f]/;
const CODE_RE = /^EV(-[0-9A-HJKMNP-TV-Z]{5}){5}$/;
const BIG_INT_RE = /^-?[1-9][0-9]{0,18}$/;
const INT63 = (1n << 63n) - 1n;

// Field specs (ledger.wire SPEC tables): name -> kind, in wire order.
export const SPECS = {
  item: ["deposit-item", [["digest", "hash"], ["sm3", "opt_hash"], ["category", "text"], ["case", "opt_case"],
    ["public_meta", "meta"], ["private_commitment", "opt_hash"]]],
  entry: ["deposit", [["depositor", "name"], ["client_time", "time_ms"], ["item_count", "count"],
    ["items_root", "hash"]]],
  header: ["block-header", [["chain_id", "chain_id"], ["height", "uint"], ["prev_hash", "hash"],
    ["entries_root", "hash"], ["entry_count", "uint"], ["history_size", "uint"], ["history_root", "hash"],
    ["timestamp", "time_ms"], ["view", "uint"], ["proposer", "name"], ["validator_set_hash", "hash"]]],
};
const TOP_KEYS = ["format", "chain_id", "genesis_fingerprint", "code", "item", "item_proof", "entry", "entry_proof",
  "history_proof", "header", "certificate", "validator_sets", "display"];
const DISPLAY_KEYS = ["height", "deposited_at", "deposited_at_ms", "depositor_display_name", "depositor_institution",
  "category_display_name", "category_display_name_en"];

class FormatError extends Error {
  constructor(field, message) { super(`${field}: ${message}`); this.field = field; }
}
class Failed extends Error {}

function jtype(v) {
  if (v === null) return "null";
  if (Array.isArray(v)) return "array";
  if (typeof v === "number") return Number.isInteger(v) ? "integer" : "number";
  return typeof v;
}

function codePoints(s) { return [...s].length; }

function object(value, where, keys) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) {
    throw new FormatError(where, `expected an object, got ${jtype(value)}`);
  }
  const at = (k) => (where === "$" ? k : `${where}.${k}`);
  for (const k of Object.keys(value)) if (!keys.includes(k)) throw new FormatError(at(k), `unknown key (valid: ${keys.join(", ")})`);
  for (const k of keys) if (!(k in value)) throw new FormatError(at(k), "missing required key");
  return value;
}

function hexBytes(value, where, size) {
  if (typeof value !== "string" || value.length !== 2 * size || !/^[0-9a-f]*$/.test(value)) {
    throw new FormatError(where, `expected ${2 * size} lowercase hex characters (${size} bytes)`);
  }
  return fromHex(value);
}

function safeInt(value, where, lo = 0, hi = MAX_SAFE) {
  if (typeof value !== "number" || !Number.isInteger(value)) throw new FormatError(where, `expected an integer, got ${jtype(value)}`);
  if (value < lo || value > hi) throw new FormatError(where, `${value} is outside [${lo}, ${hi}]`);
  return value;
}

function str(value, where, maxLen, pattern = null) {
  if (typeof value !== "string") throw new FormatError(where, `expected a string, got ${jtype(value)}`);
  if (codePoints(value) > maxLen) throw new FormatError(where, `${codePoints(value)} characters exceed the limit of ${maxLen}`);
  if (pattern && !pattern.test(value)) throw new FormatError(where, "not of the required form");
  if (/[\ud800-\udfff]/u.test(value)) throw new FormatError(where, "lone surrogate");
  return value;
}

function text(value, where, maxLen) {
  str(value, where, maxLen);
  if (CONTROL_RE.test(value)) throw new FormatError(where, "control characters are not allowed");
  if (!value) throw new FormatError(where, "must not be empty");
  return value;
}

function meta(value, where) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new FormatError(where, "expected an object");
  const keys = Object.keys(value);
  if (keys.length > 32) throw new FormatError(where, `${keys.length} keys exceed the limit of 32`);
  const out = new Map();
  for (const key of keys) {
    const at = `${where}.${key}`;
    str(key, `${where} key`, 64, META_KEY_RE);
    const item = value[key];
    if (typeof item === "string") {
      str(item, at, 1024);
      if (CONTROL_RE.test(item)) throw new FormatError(at, "control characters are not allowed");
      out.set(key, item);
    } else if (typeof item === "number") {
      out.set(key, safeInt(item, at, -MAX_SAFE, MAX_SAFE));
    } else if (item && typeof item === "object" && !Array.isArray(item) && Object.keys(item).length === 1 &&
               typeof item.int === "string" && BIG_INT_RE.test(item.int)) {
      const big = BigInt(item.int);
      if ((big >= -BigInt(MAX_SAFE) && big <= BigInt(MAX_SAFE)) || big < -(1n << 63n) || big > INT63) {
        throw new FormatError(at, "{\"int\": ...} is only for 64-bit integers beyond +-(2**53 - 1)");
      }
      out.set(key, big);
    } else {
      throw new FormatError(at, `expected a string, an integer or {"int": "<decimal>"}, got ${jtype(item)}`);
    }
  }
  return out;
}

function valueFromJson(kind, value, where) {
  switch (kind) {
    case "hash": return hexBytes(value, where, 32);
    case "signature": return hexBytes(value, where, 64);
    case "opt_hash": return value === null ? null : hexBytes(value, where, 32);
    case "uint": case "time_ms": return safeInt(value, where);
    case "count": return safeInt(value, where, 1, 1000000);
    case "meta": return meta(value, where);
    case "name": case "chain_id": return str(value, where, 64, NAME_RE);
    case "text": return text(value, where, 256);
    case "opt_case": return value === null ? null : text(value, where, 128);
    default: throw new Error("unknown kind " + kind);
  }
}

function typed(spec, doc, where, extra = []) {
  const [tag, fields] = SPECS[spec];
  object(doc, where, fields.map(([n]) => n).concat(extra));
  const values = {};
  for (const [n, kind] of fields) values[n] = valueFromJson(kind, doc[n], `${where}.${n}`);
  values.wire = () => [tag, 1, ...fields.map(([n]) => values[n])];
  return values;
}

function proof(doc, where) {
  object(doc, where, ["index", "size", "path"]);
  if (!Array.isArray(doc.path) || doc.path.length > 64) throw new FormatError(`${where}.path`, "expected an array of at most 64 hashes");
  return { index: safeInt(doc.index, `${where}.index`), size: safeInt(doc.size, `${where}.size`),
    path: doc.path.map((h, i) => hexBytes(h, `${where}.path[${i}]`, 32)) };
}

function namedPairs(value, where, second, size, minLen) {
  if (!Array.isArray(value) || value.length < minLen || value.length > 256) {
    throw new FormatError(where, `expected ${minLen} to 256 elements`);
  }
  const out = [];
  value.forEach((item, i) => {
    const at = `${where}[${i}]`;
    object(item, at, ["name", second]);
    const name = valueFromJson("name", item.name, `${at}.name`);
    if (out.length && !(name > out[out.length - 1][0])) throw new FormatError(`${at}.name`, "must be sorted by name, each name once");
    out.push([name, hexBytes(item[second], `${at}.${second}`, size)]);
  });
  return out;
}

function epoch(doc, where) {
  object(doc, where, ["from_height", "proof", "validators", "hash"]);
  const p = doc.proof;
  if (p === null || typeof p !== "object" || Array.isArray(p) || typeof p.kind !== "string") {
    throw new FormatError(`${where}.proof`, "expected an object with a string \"kind\"");
  }
  if (p.kind === "genesis") object(p, `${where}.proof`, ["kind"]);
  return { fromHeight: safeInt(doc.from_height, `${where}.from_height`), kind: p.kind,
    members: namedPairs(doc.validators, `${where}.validators`, "public_key", 32, 1),
    hash: hexBytes(doc.hash, `${where}.hash`, 32) };
}

/**
 * Strict JSON (RFC 8259) for receipts, as ledger.receipt_verify.load_receipt_json
 * reads them: at most 1 MiB, no duplicate keys, no fractions or exponents (every
 * number in a receipt is an integer; JSON.parse would read 1.0 as 1).  Objects
 * have no prototype, so a "__proto__" key is just a key.
 */
export function parseJson(text) {
  if (typeof text !== "string") throw new FormatError("$", "expected JSON text");
  if (new TextEncoder().encode(text).length > 1024 * 1024) throw new FormatError("$", "receipt exceeds 1 MiB");
  let pos = 0;
  const fail = (what) => { throw new FormatError("$", `invalid JSON at offset ${pos}: ${what}`); };
  const ws = () => { while (pos < text.length && " \t\n\r".includes(text[pos])) pos++; };
  const expect = (word) => { if (text.startsWith(word, pos)) { pos += word.length; return true; } return false; };
  const string = () => {
    if (text[pos] !== '"') fail("expected a string");
    const start = pos++;
    while (pos < text.length && text[pos] !== '"') {
      const ch = text.charCodeAt(pos);
      if (ch < 0x20) fail("control character in a string");
      if (text[pos] === "\\") {
        pos++;
        if (text[pos] === "u") { if (!/^[0-9a-fA-F]{4}$/.test(text.substr(pos + 1, 4))) fail("bad \\u escape"); pos += 5; }
        else if ('"\\/bfnrt'.includes(text[pos])) pos++;
        else fail("bad escape");
      } else pos++;
    }
    if (pos >= text.length) fail("unterminated string");
    pos++;
    return JSON.parse(text.slice(start, pos));
  };
  const value = (depth) => {
    if (depth > 64) fail("nested too deeply");
    ws();
    const ch = text[pos];
    if (ch === "{") {
      pos++;
      const out = Object.create(null);
      ws();
      if (text[pos] === "}") { pos++; return out; }
      for (;;) {
        ws();
        const key = string();
        if (Object.prototype.hasOwnProperty.call(out, key)) throw new FormatError("$", `duplicate key '${key.slice(0, 40)}' in a JSON object`);
        ws();
        if (text[pos++] !== ":") fail("expected ':'");
        out[key] = value(depth + 1);
        ws();
        if (text[pos] === ",") { pos++; continue; }
        if (text[pos] === "}") { pos++; return out; }
        fail("expected ',' or '}'");
      }
    }
    if (ch === "[") {
      pos++;
      const out = [];
      ws();
      if (text[pos] === "]") { pos++; return out; }
      for (;;) {
        out.push(value(depth + 1));
        ws();
        if (text[pos] === ",") { pos++; continue; }
        if (text[pos] === "]") { pos++; return out; }
        fail("expected ',' or ']'");
      }
    }
    if (ch === '"') return string();
    if (expect("true")) return true;
    if (expect("false")) return false;
    if (expect("null")) return null;
    const m = /^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?/.exec(text.slice(pos, pos + 400));
    if (!m || !m[0] || m[0] === "-") fail("unexpected character");
    if (m[2] || m[3]) throw new FormatError("$", `number ${m[0]} is not an integer (receipts hold integers only)`);
    pos += m[0].length;
    return Number(m[0]);
  };
  const result = value(0);
  ws();
  if (pos !== text.length) fail("trailing characters");
  return result;
}

/** Check the shape and every field's type (receipt_verify.parse_receipt); throws FormatError. */
export function parseReceipt(doc) {
  object(doc, "$", TOP_KEYS);
  if (doc.format !== FORMAT) throw new FormatError("format", `unsupported receipt format (this verifier reads ${FORMAT})`);
  const chainId = valueFromJson("chain_id", doc.chain_id, "chain_id");
  const fingerprint = hexBytes(doc.genesis_fingerprint, "genesis_fingerprint", 32);
  if (typeof doc.code !== "string" || !CODE_RE.test(doc.code)) {
    throw new FormatError("code", "expected a printed deposit code EV-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX (upper case)");
  }
  const item = typed("item", doc.item, "item");
  const body = typed("entry", doc.entry, "entry", ["signature"]);
  const signature = valueFromJson("signature", doc.entry.signature, "entry.signature");
  const header = typed("header", doc.header, "header");
  object(doc.certificate, "certificate", ["header_hash", "signatures"]);
  if (!Array.isArray(doc.validator_sets) || doc.validator_sets.length < 1 || doc.validator_sets.length > 64) {
    throw new FormatError("validator_sets", "expected 1 to 64 elements");
  }
  object(doc.display, "display", DISPLAY_KEYS);
  for (const key of DISPLAY_KEYS) {
    const v = doc.display[key];
    if (key === "height" || key === "deposited_at_ms") safeInt(v, `display.${key}`);
    else if (typeof v !== "string" || codePoints(v) < 1 || codePoints(v) > 256) {
      throw new FormatError(`display.${key}`, "expected a string of 1 to 256 characters");
    }
  }
  return {
    chainId, genesisFingerprint: fingerprint, code: doc.code, item, itemProof: proof(doc.item_proof, "item_proof"),
    body, signature, entryProof: proof(doc.entry_proof, "entry_proof"),
    historyProof: proof(doc.history_proof, "history_proof"), header,
    certificateHash: hexBytes(doc.certificate.header_hash, "certificate.header_hash", 32),
    signatures: namedPairs(doc.certificate.signatures, "certificate.signatures", "signature", 64, 0),
    validatorSets: doc.validator_sets.map((e, i) => epoch(e, `validator_sets[${i}]`)),
    display: { ...doc.display },
  };
}

export function summaryOf(p) {
  return {
    code: p.code, digest: toHex(p.item.digest), deposited_at: p.display.deposited_at,
    deposited_at_ms: p.display.deposited_at_ms, depositor: p.body.depositor,
    depositor_display_name: p.display.depositor_display_name, depositor_institution: p.display.depositor_institution,
    category: p.item.category, category_display_name: p.display.category_display_name,
    category_display_name_en: p.display.category_display_name_en, case: p.item.case, height: p.header.height,
    chain_id: p.chainId,
  };
}

/** The exact bytes an Ed25519 signature covers (ledger.crypto.signing_bytes). */
export function signingBytes(context, chainId, payload) {
  return encode(["evledger-sig/1", context, chainId, payload]);
}

function entryWire(p) { return ["entry", 1, p.body.wire(), p.signature]; }

function inclusion(leaf, pr, size, root, what, sizeName) {
  if (pr.size !== size) throw new Failed(`${what} size ${pr.size} differs from ${sizeName} ${size}`);
  try {
    verifyInclusion(leaf, pr.index, pr.size, pr.path, root);
  } catch (err) {
    if (err instanceof ProofError) throw new Failed(`${what}: ${err.message}`);
    throw err;
  }
}

// The checks, in order; each returns a message or throws Failed.  `c` carries
// the parsed receipt (p), the genesis (g, from genesis.js) and what earlier
// checks established.
const STEPS = [
  ["chain_id", async (c) => {
    const want = c.g.chainId;
    if (c.p.chainId !== want) throw new Failed(`receipt is for chain '${c.p.chainId}', this genesis is chain '${want}' (another consortium)`);
    if (c.p.header.chain_id !== want) throw new Failed(`header.chain_id is '${c.p.header.chain_id}', this genesis is chain '${want}'`);
    return `chain '${want}'`;
  }],
  ["genesis_fingerprint", async (c) => {
    if (toHex(c.p.genesisFingerprint) !== c.g.fingerprint) {
      throw new Failed(`receipt names genesis ${toHex(c.p.genesisFingerprint)}, the given genesis is ${c.g.fingerprint}`);
    }
    return `genesis ${c.g.fingerprint}`;
  }],
  ["depositor_role", async (c) => {
    const member = c.g.member(c.p.body.depositor);
    if (!member) throw new Failed(`depositor '${c.p.body.depositor}' is not a member of this consortium`);
    if (!member.roles.includes("depositor")) throw new Failed(`member '${member.name}' does not hold the depositor role (roles: ${member.roles.join(", ")})`);
    c.depositor = member;
    return `'${member.name}' (${member.displayName}) holds the depositor role`;
  }],
  ["entry_signature", async (c) => {
    const message = signingBytes("entry/deposit", c.g.chainId, encode(c.p.body.wire()));
    if (!(await verifyEd25519(c.depositor.publicKey, message, c.p.signature))) {
      throw new Failed(`the deposit signature does not verify under '${c.depositor.name}''s key`);
    }
    return `Ed25519 signature of '${c.depositor.name}' over the deposit batch verifies`;
  }],
  ["item_inclusion", async (c) => {
    const b = c.p.body;
    inclusion(leafHash(encode(c.p.item.wire())), c.p.itemProof, b.item_count, b.items_root, "item_proof", "entry.item_count");
    return `item ${c.p.itemProof.index} of ${c.p.itemProof.size} is in the signed batch (items_root ${toHex(b.items_root)})`;
  }],
  ["code_derivation", async (c) => {
    let stated;
    try { stated = parseCode(c.p.code); } catch (err) {
      if (err instanceof CodeError) throw new Failed(`code ${c.p.code}: ${err.message}`);
      throw err;
    }
    const derived = deriveCode(c.g.chainId, c.p.signature, c.p.itemProof.index);
    if (stated.value !== derived.value) throw new Failed(`code ${c.p.code} is not the code of item ${c.p.itemProof.index} of this deposit (${derived})`);
    return `${derived} is derived from the deposit signature and item index ${c.p.itemProof.index}`;
  }],
  ["entry_inclusion", async (c) => {
    const h = c.p.header;
    c.entryLeaf = leafHash(encode(entryWire(c.p)));
    inclusion(c.entryLeaf, c.p.entryProof, h.entry_count, h.entries_root, "entry_proof", "header.entry_count");
    return `entry ${c.p.entryProof.index} of ${h.entry_count} is in block ${h.height} (entries_root ${toHex(h.entries_root)})`;
  }],
  ["history_inclusion", async (c) => {
    const h = c.p.header, pr = c.p.historyProof;
    const want = h.history_size - h.entry_count + c.p.entryProof.index;
    if (pr.index !== want) {
      throw new Failed(`history_proof.index ${pr.index}, but entry ${c.p.entryProof.index} of a block ending at history size ${h.history_size} with ${h.entry_count} entries is at ${want}`);
    }
    inclusion(c.entryLeaf, pr, h.history_size, h.history_root, "history_proof", "header.history_size");
    return `entry is leaf ${pr.index} of the history tree of size ${h.history_size} (history_root ${toHex(h.history_root)})`;
  }],
  ["validator_set", async (c) => {
    const epochs = c.p.validatorSets, first = epochs[0];
    if (first.kind !== "genesis" || first.fromHeight !== 1) {
      throw new Failed("validator_sets[0] must be the genesis set (proof kind \"genesis\", from_height 1)");
    }
    if (epochs.length > 1) throw new Failed(`validator_sets[1]: membership changes (proof kind '${epochs[1].kind}') are not supported by ${FORMAT}`);
    const validators = c.g.validators();
    const same = first.members.length === validators.length &&
      first.members.every(([n, k], i) => n === validators[i].name && bytesEqual(k, validators[i].publicKey));
    if (!same) throw new Failed("validator_sets[0].validators differ from the validators of this genesis");
    const setHash = sha256(encode(["validator-set", 1, validators.map((v) => [v.name, v.publicKey])]));
    if (!bytesEqual(first.hash, setHash)) throw new Failed(`validator_sets[0].hash is not the hash of its validators (${toHex(setHash)})`);
    if (!bytesEqual(c.p.header.validator_set_hash, setHash)) {
      throw new Failed(`header.validator_set_hash ${toHex(c.p.header.validator_set_hash)} is not the hash of the validators in office at height ${c.p.header.height} (${toHex(setHash)})`);
    }
    c.validators = validators;
    return `${validators.length} validators in office at height ${c.p.header.height} (genesis set, hash ${toHex(setHash)}), quorum ${quorum(validators.length)}`;
  }],
  ["header_hash", async (c) => {
    const computed = sha256(encode(c.p.header.wire()));
    if (!bytesEqual(computed, c.p.certificateHash)) {
      throw new Failed(`the header hashes to ${toHex(computed)}, the certificate is for ${toHex(c.p.certificateHash)}`);
    }
    c.headerHash = computed;
    return `header of block ${c.p.header.height} hashes to ${toHex(computed)}`;
  }],
  ["certificate_quorum", async (c) => {
    const valid = [], ignored = [];
    const message = signingBytes("block/commit", c.g.chainId, c.p.certificateHash);
    for (const [name, sig] of c.p.signatures) {
      const v = c.validators.find((m) => m.name === name);
      if (!v) { ignored.push(`${name} (not a validator in office)`); continue; }
      if (!(await verifyEd25519(v.publicKey, message, sig))) { ignored.push(`${name} (signature does not verify)`); continue; }
      valid.push(name);
    }
    const n = c.validators.length, need = quorum(n);
    const note = ignored.length ? `; ignored: ${ignored.join(", ")}` : "";
    c.signers = valid;
    if (valid.length < need) throw new Failed(`only ${valid.length} valid commit signatures of ${n} validators, ${need} needed${note}`);
    return `${valid.length} of ${n} validators signed the block (quorum ${need}): ${valid.join(", ")}${note}`;
  }],
  ["display", async (c) => {
    const d = c.p.display, p = c.p;
    const category = c.g.categories.find((cat) => cat.id === p.item.category);
    if (!category) throw new Failed(`item.category '${p.item.category}' is not a category of this genesis`);
    const expected = {
      height: p.header.height, deposited_at: formatTime(p.header.timestamp), deposited_at_ms: p.header.timestamp,
      depositor_display_name: c.depositor.displayName, depositor_institution: c.depositor.institution,
      category_display_name: category.displayName, category_display_name_en: category.displayNameEn,
    };
    for (const [key, want] of Object.entries(expected)) {
      if (d[key] !== want) throw new Failed(`display.${key} is '${d[key]}', the signed data and genesis say '${want}'`);
    }
    c.category = category;
    return `deposited ${expected.deposited_at} by ${c.depositor.displayName} (${c.depositor.institution}), category ${category.displayNameEn}, block ${p.header.height}`;
  }],
];

function finish(done, verdict, failed, message, summary, extra) {
  const ran = new Set(done.map((c) => c.id));
  const rest = CHECKS.filter((id) => !ran.has(id)).map((id) => ({
    id, status: "skipped", message: failed ? `not run: ${failed} failed` : "no file given" }));
  return { verdict, failed_check: failed, message, checks: done.concat(rest), summary, ...extra };
}

/**
 * Verify a receipt (JSON text, read with parseJson, or a decoded document) against a genesis (genesis.parseGenesis) and,
 * when given, the 32-byte SHA-256 of a file.  Resolves to
 * {verdict: "match"|"mismatch"|"valid"|"invalid", failed_check, message, checks, summary,
 *  evidence} where `evidence` holds what the report shows (signers, validators, ...).
 */
export async function verifyReceipt(receipt, genesis, fileDigest = null) {
  const done = [];
  let p;
  try {
    p = parseReceipt(typeof receipt === "string" ? parseJson(receipt) : receipt);
  } catch (err) {
    const message = err instanceof FormatError ? err.message : `unexpected ${err.name}: ${err.message}`;
    done.push({ id: "format", status: "failed", message });
    return finish(done, "invalid", "format", `malformed receipt: ${message}`, null, {});
  }
  done.push({ id: "format", status: "passed", message: `${FORMAT}, every field well-formed` });
  const summary = summaryOf(p);
  const c = { p, g: genesis };
  const evidence = () => ({ signers: c.signers ?? [], validators: c.validators ?? null, depositor: c.depositor ?? null,
    category: c.category ?? null, header: p.header, headerHash: c.headerHash ? toHex(c.headerHash) : null });
  for (const [id, step] of STEPS) {
    let message;
    try {
      message = await step(c);
    } catch (err) {
      const text = err instanceof Failed ? err.message : `unexpected ${err.name}: ${err.message}`;
      done.push({ id, status: "failed", message: text });
      return finish(done, "invalid", id, `receipt is not valid: ${text}`, summary, { evidence: evidence() });
    }
    done.push({ id, status: "passed", message });
  }
  if (fileDigest === null) {
    return finish(done, "valid", null, `receipt is valid: deposit ${p.code} of ${summary.deposited_at} is proven`, summary, { evidence: evidence() });
  }
  if (bytesEqual(fileDigest, p.item.digest)) {
    done.push({ id: "digest", status: "passed", message: "the file's SHA-256 equals the deposited digest" });
    return finish(done, "match", null, `the file is exactly the one deposited as ${p.code}`, summary, { evidence: evidence() });
  }
  done.push({ id: "digest", status: "failed",
    message: `the file's SHA-256 ${toHex(fileDigest)} differs from the deposited digest ${toHex(p.item.digest)}` });
  return finish(done, "mismatch", "digest", `the receipt is valid but the file is NOT the one deposited as ${p.code}`, summary, { evidence: evidence() });
}
