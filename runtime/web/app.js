// The litigant's page: wiring between the form, the hasher, the node and the
// verifier.  Theory of operation:
//
// * the code is checked on every keystroke (codes.js, a mirror of
//   ledger/codes.py), so a typo is named as a typo before anything is fetched;
// * a chosen or dropped file is hashed here, in chunks (sha256.js); its bytes
//   never leave the browser -- the only requests are GETs for the receipt, the
//   consortium's genesis.json and the node status;
// * the receipt is verified here (verify.js) against the genesis; the verdict
//   names its reason and, for an invalid receipt, the failed check;
// * every verified item is kept for the printable report (one page each).
//
// The result section carries data-verdict, data-failed-check and data-checks
// (JSON) so that tests and assistive tools can read the outcome.

import { t, applyStatic, initialLang, setLang, lang } from "./i18n.js";
import { partialCheck, parseCode, CodeError, describeChar } from "./codes.js";
import { hashFile, toHex } from "./sha256.js";
import { parseGenesis } from "./genesis.js";
import { verifyReceipt } from "./verify.js";
import { implementation } from "./ed25519.js";
import { h, formatBytes, recordRows, checkLabel, statusWord, renderReport } from "./report.js";

const $ = (id) => document.getElementById(id);

const state = {
  file: null, // {name, size, digest (hex), bytes (Uint8Array)} once hashed
  hashing: null, // AbortController of the running hash
  genesis: null, // parsed genesis (cached)
  genesisSource: null, // null: from the node; else the name of the person's own file
  status: null, // GET /v1/status (cached)
  receiptText: null, // the receipt exactly as fetched, for "download receipt"
  current: null, // the item on screen
  items: new Map(), // code + digest -> item, for the report
  run: 0, // generation counter: a newer verification supersedes an older one
};

// ------------------------------------------------------------------ code field

function codeMessage(text) {
  const status = partialCheck(text);
  if (status === "ok") return { cls: "ok", msg: t("code_ok", { code: parseCode(text).printed }), status };
  if (status === "incomplete") {
    const n = countSymbols(text);
    return { cls: "", msg: n ? t("code_incomplete", { n }) : "", status };
  }
  if (status === "bad_checksum") return { cls: "bad", msg: t("code_bad_checksum"), status };
  if (status === "too_long") return { cls: "bad", msg: t("code_too_long"), status };
  try { parseCode(text); } catch (err) {
    if (err instanceof CodeError && err.detail === "bad_character") {
      return { cls: "bad", status, msg: t("code_bad_character", { position: err.position,
        char: describeChar(err.character), hint: "Uu\uff35\uff55".includes(err.character) ? t("code_hint_u") : "" }) };
    }
  }
  return { cls: "bad", msg: t("code_bad_checksum"), status };
}

function countSymbols(text) {
  let n = 0;
  for (const ch of text) if (/[0-9A-Za-z\uff10-\uff19\uff21-\uff3a\uff41-\uff5a]/.test(ch)) n++;
  return n;
}

/** The definitive message for a code that does not parse (on submit). */
function parseFailure(err) {
  switch (err.detail) {
    case "empty": return t("code_empty_submit");
    case "too_long": return t("code_too_long");
    case "bad_checksum": return t("code_bad_checksum");
    case "bad_character": return t("code_bad_character", { position: err.position, char: describeChar(err.character),
      hint: "Uu\uff35\uff55".includes(err.character) ? t("code_hint_u") : "" });
    case "wrong_length": {
      const effective = err.hasPrefix ? err.count - 2 : err.count;
      return t(effective < 25 ? "code_wrong_length_short" : "code_wrong_length_long", { n: err.count });
    }
    default: return err.message;
  }
}

function onCodeInput() {
  if (renderCodeStatus() === "ok" && state.file) verify();
}

/** Show the as-you-type verdict on the code; returns partialCheck's answer. */
function renderCodeStatus() {
  const input = $("code");
  const { cls, msg, status } = codeMessage(input.value);
  const out = $("code-status");
  out.textContent = msg;
  out.className = "status " + cls;
  out.dataset.state = status;
  input.setAttribute("aria-invalid", cls === "bad" ? "true" : "false");
  input.classList.toggle("ok", status === "ok");
  return status;
}

// ------------------------------------------------------------------ file field

async function takeFile(file) {
  if (!file) return;
  if (state.hashing) state.hashing.abort();
  const controller = new AbortController();
  state.hashing = controller;
  state.file = null;
  const progress = $("progress");
  const out = $("file-status");
  progress.hidden = false;
  progress.value = 0;
  try {
    const digest = await hashFile(file, (done, total) => {
      progress.value = total ? done / total : 1;
      out.textContent = t("file_hashing", { done: formatBytes(done), total: formatBytes(total) });
    }, controller.signal);
    if (state.hashing !== controller) return;
    state.hashing = null;
    state.file = { name: file.name, size: file.size, digest: toHex(digest), bytes: digest };
    out.textContent = t("file_hashed", { name: file.name, size: formatBytes(file.size), digest: state.file.digest });
    out.dataset.digest = state.file.digest;
    progress.hidden = true;
    if (partialCheck($("code").value) === "ok") verify();
  } catch (err) {
    if (err.name === "AbortError") return;
    progress.hidden = true;
    out.textContent = t("file_error", { message: err.message });
  } finally {
    if (state.hashing === controller) state.hashing = null;
  }
}

function bindDrop() {
  const drop = $("drop");
  const over = (on) => (e) => { e.preventDefault(); drop.classList.toggle("over", on); };
  drop.addEventListener("dragenter", over(true));
  drop.addEventListener("dragover", over(true));
  drop.addEventListener("dragleave", over(false));
  drop.addEventListener("drop", (e) => {
    over(false)(e);
    const file = e.dataTransfer?.files?.[0];
    if (file) takeFile(file);
  });
  // A file dropped elsewhere must not navigate away from the page.
  window.addEventListener("dragover", (e) => e.preventDefault());
  window.addEventListener("drop", (e) => e.preventDefault());
}

// ------------------------------------------------------------------ the node

async function getJson(path) {
  const response = await fetch(path, { method: "GET", cache: "no-store", credentials: "omit",
    referrerPolicy: "no-referrer", headers: { Accept: "application/json" } });
  const text = await response.text();
  let doc = null;
  try { doc = JSON.parse(text); } catch { /* not JSON: handled below */ }
  return { status: response.status, doc, text };
}

async function loadStatus() {
  if (state.status) return state.status;
  try {
    const r = await getJson("/v1/status");
    if (r.status === 200 && r.doc) state.status = r.doc;
  } catch { /* the footer stays empty */ }
  return state.status;
}

class Unavailable extends Error {}

async function loadGenesis() {
  if (state.genesis) return state.genesis;
  const r = await getJson("/v1/genesis.json");
  if (r.status !== 200 || !r.doc) {
    throw new Unavailable(`GET /v1/genesis.json: HTTP ${r.status}${r.doc?.error ? " " + r.doc.error.code : ""}`);
  }
  state.genesis = parseGenesis(r.doc);
  return state.genesis;
}

async function takeGenesis(file) {
  if (!file) return;
  const out = $("genesis-status");
  try {
    if (file.size > 1024 * 1024) throw new Error("larger than 1 MiB");
    const genesis = parseGenesis(JSON.parse(await file.text()));
    state.genesis = genesis;
    state.genesisSource = file.name;
    out.className = "status mono-wrap ok";
    out.textContent = t("genesis_loaded", { name: file.name, chain: genesis.chainId, fingerprint: genesis.fingerprint });
    $("chain-name").textContent = genesis.displayName;
    if (state.current && partialCheck($("code").value) === "ok") verify();
  } catch (err) {
    out.className = "status mono-wrap bad";
    out.textContent = t("genesis_error", { message: err.message });
  }
}

// ------------------------------------------------------------------ verification

function fail(verdict, reason, extra = {}) {
  return { verdict, reasonText: reason, result: { verdict, failed_check: null, checks: [], ...extra } };
}

async function verify(event) {
  if (event) event.preventDefault();
  const run = ++state.run;
  const text = $("code").value;
  let code;
  try {
    code = parseCode(text);
  } catch (err) {
    if (!(err instanceof CodeError)) throw err;
    const msg = parseFailure(err);
    $("code-status").textContent = msg;
    $("code-status").className = "status bad";
    show(fail("malformed_code", msg), null);
    $("code").focus();
    return;
  }
  if (state.hashing) return; // verification starts when hashing ends
  const file = state.file;
  $("progress-text").textContent = t("fetching");
  let outcome;
  try {
    const [r] = await Promise.all([getJson(`/v1/receipts/${code.compact}`), loadStatus()]);
    if (run !== state.run) return;
    outcome = await judge(r, code, file);
  } catch (err) {
    outcome = fail("unavailable", t("reason_unavailable", { message: err.message }));
  }
  if (run !== state.run) return;
  $("progress-text").textContent = "";
  show(outcome, file);
}

async function judge(r, code, file) {
  const error = r.doc && r.doc.error ? r.doc.error : null;
  if (r.status !== 200) {
    const message = error ? error.message : `HTTP ${r.status}`;
    if (error?.code === "not_found") return fail("not_found", t("reason_not_found"));
    if (error?.code === "malformed_code") return fail("malformed_code", t("reason_malformed_code", { message }));
    if (error?.code === "not_permitted" || r.status === 403) return fail("not_permitted", t("reason_not_permitted", { message }));
    return fail("unavailable", t("reason_unavailable", { message: `${message} (HTTP ${r.status})` }));
  }
  // A 200 answer is verified whatever it holds: text that is not a receipt is an invalid receipt (format).
  const genesis = await loadGenesis();
  $("progress-text").textContent = t("verifying");
  const result = await verifyReceipt(r.text, genesis, file ? file.bytes : null);
  state.receiptText = r.text;
  const verdict = { match: "match", mismatch: "mismatch", valid: "found", invalid: "invalid_receipt" }[result.verdict];
  let reasonText;
  if (verdict === "invalid_receipt") {
    const failed = result.checks.find((c) => c.status === "failed");
    reasonText = t("reason_invalid_receipt", { check: checkLabel(result.failed_check), detail: failed ? failed.message : "" });
  } else {
    reasonText = t("reason_" + verdict);
  }
  const item = { verdict, reasonText, result, summary: result.verdict === "invalid" ? null : result.summary,
    file: file ? { name: file.name, size: file.size, digest: file.digest } : null, code: code.printed };
  if (result.verdict !== "invalid" && result.summary && result.summary.code !== code.printed) {
    // A valid receipt for another code than the one asked for: never show it as the answer.
    return fail("invalid_receipt", t("reason_invalid_receipt", { check: checkLabel("code_derivation"),
      detail: `asked for ${code.printed}, got ${result.summary.code}` }));
  }
  return item;
}

// ------------------------------------------------------------------ rendering

function show(item, file) {
  const section = $("result");
  state.current = item;
  item.verdictText = t("verdict_" + item.verdict);
  section.className = "card result " + item.verdict;
  section.dataset.verdict = item.verdict;
  section.dataset.failedCheck = item.result.failed_check ?? "";
  section.dataset.checks = JSON.stringify(item.result.checks.map((c) => ({ id: c.id, status: c.status })));
  $("verdict").textContent = item.verdictText;
  $("verdict-reason").textContent = item.reasonText;
  $("record").replaceChildren(...(item.summary ? recordRows(item).flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]) : []));
  $("check-list").replaceChildren(...item.result.checks.map((c) =>
    h("li", { class: c.status, title: c.message }, `${checkLabel(c.id)}: ${statusWord(c.status)}`)));
  const hasReceipt = Boolean(item.summary);
  $("actions").hidden = !hasReceipt;
  $("record-title").hidden = !item.summary;
  $("checks-title").hidden = !item.result.checks.length;
  section.hidden = false;
  if (hasReceipt) {
    item.receiptText = state.receiptText;
    state.items.set(item.code + "/" + (file ? file.digest : ""), item);
  }
  section.focus({ preventScroll: false });
}

function rerender() {
  // Language switch: rebuild every dynamic text from the kept state.
  applyStatic();
  renderCodeStatus();
  if (state.file) {
    $("file-status").textContent = t("file_hashed", { name: state.file.name, size: formatBytes(state.file.size), digest: state.file.digest });
  }
  for (const item of state.items.values()) relabel(item);
  if (state.current) {
    relabel(state.current);
    const keepFocus = document.activeElement;
    show(state.current, state.current.file ? state.file : null);
    keepFocus?.focus();
  }
  chainName();
}

/** Re-word an item in the current language (reasons that quote the node or a check keep their words). */
function relabel(item) {
  item.verdictText = t("verdict_" + item.verdict);
  if (item.verdict === "invalid_receipt" || !item.result.checks.length) return;
  item.reasonText = t("reason_" + item.verdict);
}

async function chainName() {
  const status = await loadStatus();
  if (status) {
    $("node-info").textContent = `${status.node} · ${status.chain_id} · ${lang() === "zh" ? "高度" : "height"} ${status.height}` +
      (status.version ? ` · v${status.version}` : "");
  }
  if (state.genesisSource) {
    const g = state.genesis;
    $("genesis-status").textContent = t("genesis_loaded", { name: state.genesisSource, chain: g.chainId, fingerprint: g.fingerprint });
  }
  try {
    const g = await loadGenesis();
    $("chain-name").textContent = g.displayName;
  } catch { /* shown on verification */ }
}

function download() {
  const item = state.current;
  if (!item?.receiptText) return;
  const blob = new Blob([item.receiptText], { type: "application/json" });
  const url = URL.createObjectURL(blob);
  const a = h("a", { href: url, download: `evledger-receipt-${item.summary.code}.json` });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}

async function printReport() {
  const items = [...state.items.values()].reverse();
  if (!items.length) return;
  items.forEach(relabel);
  renderReport($("report"), items, { genesis: state.genesis, genesisSource: state.genesisSource, status: state.status,
    edImpl: await implementation() });
  window.print();
}

function init() {
  setLang(initialLang());
  applyStatic();
  $("code").addEventListener("input", onCodeInput);
  $("file").addEventListener("change", (e) => takeFile(e.target.files[0]));
  $("genesis-file").addEventListener("change", (e) => takeGenesis(e.target.files[0]));
  $("verify-form").addEventListener("submit", verify);
  $("download-receipt").addEventListener("click", download);
  $("print-report").addEventListener("click", printReport);
  $("lang-switch").addEventListener("click", () => { setLang(lang() === "zh" ? "en" : "zh"); rerender(); });
  bindDrop();
  const fromUrl = new URLSearchParams(location.search).get("code");
  if (fromUrl) { $("code").value = fromUrl; onCodeInput(); }
  chainName();
  document.documentElement.dataset.ready = "true";
}

init();
