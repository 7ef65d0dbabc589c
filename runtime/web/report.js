// The printable verification report: one page per evidence item, with a section
// per factor a court reviews for blockchain evidence (who operates the platform
// and in which roles, its neutrality, the information system, the deposit
// technique and process).  Built with DOM calls only (no HTML strings), so text
// from a receipt or genesis can never become markup.

import { t, lang } from "./i18n.js";
import { keyFingerprint, maxFaulty, quorum } from "./genesis.js";

/** h("p", {class: "x"}, "text", child...) -> element; strings become text nodes. */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === null || v === undefined || v === false) continue;
    if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

export function formatBytes(n) {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0, v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i++; }
  return i === 0 ? `${n} B` : `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

/** "2026-11-28 16:40:12.345 UTC (local: ...)" in the current language. */
export function formatDeposit(ms) {
  const d = new Date(ms);
  const utc = d.toISOString().replace("T", " ").replace("Z", " UTC");
  const local = new Intl.DateTimeFormat(lang() === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "long", timeStyle: "long" }).format(d);
  return lang() === "zh" ? `${utc}（本机时间 ${local}）` : `${utc} (local: ${local})`;
}

export function categoryName(summary) {
  return lang() === "zh" ? summary.category_display_name : summary.category_display_name_en;
}

/** The record as [label, value] pairs, shared by the page and the report. */
export function recordRows(item) {
  const s = item.summary;
  const rows = [
    [t("f_code"), s.code],
    [t("f_deposited_at"), formatDeposit(s.deposited_at_ms)],
    [t("f_depositor"), `${s.depositor_display_name} (${s.depositor_institution})`],
    [t("f_category"), categoryName(s)],
    [t("f_height"), String(s.height)],
  ];
  if (s.case) rows.push([t("f_case"), s.case]);
  rows.push([t("f_digest"), s.digest]);
  if (item.file) {
    rows.push([t("f_file_name"), `${item.file.name} (${formatBytes(item.file.size)})`]);
    rows.push([t("f_file_digest"), item.file.digest]);
  }
  const ev = item.result.evidence;
  if (ev && ev.headerHash) rows.push([t("f_block_hash"), ev.headerHash]);
  if (ev && ev.validators && ev.signers.length) {
    const n = ev.validators.length;
    rows.push([t("f_certified_by"), t("certified_by", { k: ev.signers.length, q: quorum(n), n })]);
  }
  return rows;
}

function dl(rows) {
  return h("dl", {}, rows.map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

function stepName(id) { return t("step_" + id); }

/** A human label for a check id: "depositor's Ed25519 signature (entry_signature)". */
export function checkLabel(id) { return `${stepName(id)} (${id})`; }

export function statusWord(status) { return t("check_" + status); }

function operatorsTable(genesis, signers) {
  const nodes = genesis.members.filter((m) => m.roles.includes("validator") || m.roles.includes("observer"));
  return h("table", {},
    h("thead", {}, h("tr", {}, [t("r_name"), t("r_institution"), t("r_role"), t("r_fingerprint"), t("r_signed")].map((x) => h("th", {}, x)))),
    h("tbody", {}, nodes.map((m) => h("tr", {},
      h("td", {}, `${m.displayName} (${m.name})`),
      h("td", {}, m.institution),
      h("td", { class: "nowrap" }, m.roles.includes("validator") ? t("role_validator") : t("role_observer")),
      h("td", { class: "mono" }, keyFingerprint(m.publicKey)),
      h("td", { class: "nowrap" }, m.roles.includes("validator") ? (signers.includes(m.name) ? t("yes") : t("no")) : "—"),
    ))));
}

function neutrality(genesis, item) {
  const validators = genesis.validators();
  const n = validators.length;
  const signers = item.result.evidence?.signers ?? [];
  const byName = new Map(genesis.members.map((m) => [m.name, m]));
  const signerInst = new Set(signers.map((s) => byName.get(s)?.institution));
  const out = [h("p", {}, t("report_neutrality_text", {
    n, institutions: new Set(validators.map((v) => v.institution)).size, f: maxFaulty(n), q: quorum(n),
    k: signers.length, k_inst: signerInst.size,
    signers: signers.map((s) => byName.get(s)?.displayName ?? s).join(lang() === "zh" ? "、" : ", ") || "—",
  }))];
  const depositor = byName.get(item.summary.depositor);
  if (depositor) {
    const same = validators.filter((v) => v.institution === depositor.institution);
    out.push(h("p", {}, same.length
      ? t("report_depositor_is_validator", { depositor: depositor.displayName, nodes: same.map((v) => v.displayName).join(", ") })
      : t("report_depositor_not_validator", { depositor: depositor.displayName })));
  }
  return out;
}

function reportItem(item, ctx) {
  const { genesis, status } = ctx;
  const r = item.result;
  const checks = h("table", {},
    h("thead", {}, h("tr", {}, h("th", {}, "#"), h("th", {}, t("r_check")), h("th", {}, t("r_result")),
      h("th", {}, t("r_detail")))),
    h("tbody", {}, r.checks.map((c, i) => h("tr", {},
      h("td", {}, String(i + 1)), h("td", {}, checkLabel(c.id)), h("td", { class: "nowrap" }, statusWord(c.status)),
      h("td", { class: "small" }, c.message)))));
  const sections = [
    h("h1", {}, t("report_title")),
    h("p", { class: "small" }, t("report_generated", { time: new Date().toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB"), url: location.origin })),
    h("section", {}, h("h2", {}, t("report_verdict")),
      h("div", { class: "verdict-box" }, h("p", {}, h("strong", {}, item.verdictText)), h("p", {}, item.reasonText))),
  ];
  if (item.summary) sections.push(h("section", {}, h("h2", {}, t("report_record")), dl(recordRows(item))));
  if (genesis) {
    sections.push(
      h("section", {}, h("h2", {}, t("report_operators")), h("p", {}, t("report_operators_intro")),
        operatorsTable(genesis, r.evidence?.signers ?? [])),
      h("section", {}, h("h2", {}, t("report_neutrality")), neutrality(genesis, item)),
      h("section", {}, h("h2", {}, t("report_system")), dl([
        [t("f_consortium"), genesis.displayName],
        [t("f_chain_id"), genesis.chainId],
        [t("f_genesis_fingerprint"), genesis.fingerprint],
        [t("f_genesis_source"), ctx.genesisSource ? t("genesis_source_local", { name: ctx.genesisSource }) : t("genesis_source_node")],
        [t("f_genesis_created"), new Date(genesis.createdAt).toISOString()],
        [t("f_software"), status?.version ? `evledger ${status.version}` : t("unknown")],
        [t("f_serving_node"), status?.node ? `${status.node} (${location.origin})` : location.origin],
        [t("f_consensus"), `PBFT, n = ${genesis.validators().length}, f = ${maxFaulty(genesis.validators().length)}, quorum = ${quorum(genesis.validators().length)}`],
      ])),
    );
  }
  sections.push(h("section", {}, h("h2", {}, t("report_technique")),
    h("p", {}, t("report_technique_text")),
    genesis ? h("p", {}, t("report_time_rule", { skew: genesis.consensus.max_clock_skew_ms })) : null,
    dl([[t("f_hash_algorithm"), "SHA-256 (FIPS 180-4)"], [t("f_signature_algorithm"), `Ed25519 (RFC 8032), ${ctx.edImpl}`]]),
    h("h2", {}, t("report_steps")), checks,
    h("p", { class: "small" }, t("report_disclaimer"))));
  return h("article", { class: "report-item" }, sections);
}

/** Rebuild #report from the verified items (one page each). */
export function renderReport(container, items, ctx) {
  container.replaceChildren(...items.map((item) => reportItem(item, ctx)));
}
