// The consortium file (genesis.json) in the browser: what the receipt verifier
// needs from it, and its fingerprint (ledger/genesis.py, "Fingerprint").
//
// Everything the page shows or checks from genesis -- member names, display
// names, institutions, roles, public keys, categories -- enters the fingerprint,
// so a genesis whose fingerprint equals the consortium's published value is
// authentic in every detail the page uses.  Parsing is therefore only as strict
// as computing that fingerprint correctly requires; ledger/genesis.py remains
// the full validator.

import { encode } from "./msgpack.js";
import { sha256, toHex, fromHex } from "./sha256.js";

export class GenesisError extends Error {
  constructor(field, message) { super(`${field}: ${message}`); this.field = field; }
}

// Defaults filled in before hashing (ledger.genesis.CONSENSUS_PARAMS / LIMIT_PARAMS).
export const CONSENSUS_DEFAULTS = {
  batch_max_entries: 2000, batch_max_bytes: 131072, batch_delay_ms: 10, checkpoint_interval: 16,
  watermark_window: 32, view_change_timeout_ms: 2000, max_clock_skew_ms: 30000,
};
export const LIMIT_DEFAULTS = {
  max_items_per_deposit: 1000, max_meta_keys: 16, client_time_window_ms: 86400000, max_case_len: 128,
  max_codes_per_event: 1000,
};

const NAME_RE = /^[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?$/;
const TIME_RE = /^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z$/;

function object(value, where) {
  if (value === null || typeof value !== "object" || Array.isArray(value)) throw new GenesisError(where, "expected an object");
  return value;
}

function list(value, where) {
  if (!Array.isArray(value)) throw new GenesisError(where, "expected an array");
  return value;
}

function text(value, where) {
  if (typeof value !== "string" || !value) throw new GenesisError(where, "expected a non-empty string");
  return value;
}

function name(value, where) {
  if (typeof value !== "string" || !NAME_RE.test(value)) throw new GenesisError(where, "expected a name [a-z0-9-]");
  return value;
}

/** RFC 3339 UTC (YYYY-MM-DDTHH:MM:SS[.fff]Z) -> ms since the epoch (ledger.jsondoc.parse_time). */
export function parseTime(value, where = "created_at") {
  const m = typeof value === "string" ? TIME_RE.exec(value) : null;
  if (!m) throw new GenesisError(where, "expected an RFC 3339 UTC time like 2025-01-31T08:00:00Z");
  const [y, mo, d, h, mi, s] = m.slice(1, 7).map(Number);
  const ms = Date.UTC(y, mo - 1, d, h, mi, s);
  const back = new Date(ms);
  if (y < 1970 || back.getUTCFullYear() !== y || back.getUTCMonth() !== mo - 1 || back.getUTCDate() !== d ||
      h > 23 || mi > 59 || s > 59) {
    throw new GenesisError(where, "not a valid date and time after 1970");
  }
  return ms + Number((m[7] || "0").padEnd(3, "0"));
}

/** ms since the epoch -> RFC 3339 UTC, milliseconds only when not zero (ledger.jsondoc.format_time). */
export function formatTime(ms) {
  const iso = new Date(ms).toISOString(); // YYYY-MM-DDTHH:MM:SS.fffZ
  return ms % 1000 === 0 ? iso.slice(0, 19) + "Z" : iso;
}

function params(value, where, defaults) {
  object(value, where);
  const out = { ...defaults };
  for (const [key, v] of Object.entries(value)) {
    if (!(key in defaults)) throw new GenesisError(`${where}.${key}`, "unknown parameter");
    if (!Number.isSafeInteger(v)) throw new GenesisError(`${where}.${key}`, "expected an integer");
    out[key] = v;
  }
  return out;
}

function utf8Compare(a, b) {
  const enc = new TextEncoder();
  const x = enc.encode(a), y = enc.encode(b);
  for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
  return x.length - y.length;
}

/**
 * Parse a genesis document (the decoded JSON) into what the verifier uses, with
 * `fingerprint` (hex) computed exactly as ledger.genesis.Genesis.fingerprint().
 */
export function parseGenesis(doc) {
  object(doc, "$");
  if (doc.format !== "evledger-genesis/1") throw new GenesisError("format", "not an evledger-genesis/1 document");
  const chainId = name(doc.chain_id, "chain_id");
  const displayName = text(doc.display_name, "display_name");
  const createdAt = parseTime(doc.created_at);
  const seen = new Set();
  const members = list(doc.members, "members").map((m, i) => {
    const where = `members[${i}]`;
    object(m, where);
    const member = {
      name: name(m.name, where + ".name"),
      displayName: text(m.display_name, where + ".display_name"),
      institution: name(m.institution, where + ".institution"),
      roles: [...new Set(list(m.roles, where + ".roles").map((r, j) => name(r, `${where}.roles[${j}]`)))].sort(utf8Compare),
      publicKey: null,
      node: null,
    };
    if (member.roles.length !== m.roles.length) throw new GenesisError(where + ".roles", "duplicate role");
    if (typeof m.public_key !== "string" || !/^[0-9a-f]{64}$/.test(m.public_key)) {
      throw new GenesisError(where + ".public_key", "expected 64 lowercase hex characters");
    }
    member.publicKey = fromHex(m.public_key);
    if (m.node !== null) {
      object(m.node, where + ".node");
      member.node = { peer: text(m.node.peer, where + ".node.peer"), api: text(m.node.api, where + ".node.api") };
    }
    if (seen.has(member.name)) throw new GenesisError(where + ".name", "duplicate member name");
    seen.add(member.name);
    return member;
  });
  const consensus = params(doc.consensus, "consensus", CONSENSUS_DEFAULTS);
  const limits = params(doc.limits, "limits", LIMIT_DEFAULTS);
  const categories = list(doc.categories, "categories").map((c, i) => {
    object(c, `categories[${i}]`);
    return { id: name(c.id, `categories[${i}].id`), displayName: text(c.display_name, `categories[${i}].display_name`),
      displayNameEn: text(c.display_name_en, `categories[${i}].display_name_en`) };
  });
  const wire = [
    "evledger-genesis", 1, chainId, displayName, createdAt,
    members.map((m) => [m.name, m.displayName, m.institution, m.roles, m.publicKey,
      m.node === null ? null : [m.node.peer, m.node.api]]),
    consensus,
    categories.map((c) => [c.id, c.displayName, c.displayNameEn]),
    limits,
  ];
  const genesis = {
    chainId, displayName, createdAt, members, consensus, categories, limits,
    fingerprint: toHex(sha256(encode(wire))),
    member(n) { return members.find((m) => m.name === n) ?? null; },
    validators() { // name order, as ledger.block.ValidatorSet keeps them
      return members.filter((m) => m.roles.includes("validator")).sort((a, b) => utf8Compare(a.name, b.name));
    },
  };
  return genesis;
}

export function maxFaulty(n) { return Math.floor((n - 1) / 3); }
export function quorum(n) { return Math.floor((n + maxFaulty(n)) / 2) + 1; }

/** Key fingerprint: first 16 bytes of SHA-256("evledger/key-fingerprint/1\0" || key), hex in groups of four. */
export function keyFingerprint(publicKey) {
  const hex = toHex(sha256(new TextEncoder().encode("evledger/key-fingerprint/1\u0000"), publicKey)).slice(0, 32);
  return hex.match(/.{4}/g).join(":");
}
