"""The case report: every deposit of a case, each with its verification status.

``evledger query --case CASE --report FILE.html`` writes it.  For every deposit the
court's query returns, the report fetches the deposit's receipt and verifies it
offline against the consortium's genesis (the file given with ``--genesis``; else
the node's own ``/v1/genesis.json``, and the report says so, because then the
fingerprint must be compared with the published one).  The report is one
self-contained, printable HTML page: no scripts, no external resources.
"""

from __future__ import annotations

import html
import time
from typing import Any

from ledger.receipt import verify_receipt

STATUS_TEXT = {
    "valid": ("有效", "valid: the receipt proves the deposit"),
    "invalid": ("无效", "invalid receipt"),
    "missing": ("无回执", "no receipt could be fetched"),
}

STYLE = """
body { font-family: "Noto Sans CJK SC", "WenQuanYi Micro Hei", sans-serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; } table { border-collapse: collapse; width: 100%; font-size: 0.85em; }
th, td { border: 1px solid #999; padding: 4px 6px; text-align: left; vertical-align: top; }
th { background: #eee; } .valid { color: #0a5c1f; font-weight: bold; } .invalid, .missing { color: #a30000;
font-weight: bold; } code { font-size: 0.9em; word-break: break-all; } .meta { color: #333; }
@media print { body { margin: 0; } }
"""


def verify_items(deposits: list[dict], fetch_receipt: Any, genesis: Any) -> list[dict]:
    """Each deposit with ``status`` (valid/invalid/missing) and the failed check, if any."""
    out = []
    for deposit in deposits:
        item = dict(deposit)
        try:
            receipt = fetch_receipt(deposit["code"])
        except Exception as exc:  # one unreachable receipt must not hide the others
            item.update(status="missing", detail=str(exc)[:200])
            out.append(item)
            continue
        verdict = verify_receipt(receipt, genesis, bytes.fromhex(deposit["digest"]))
        item.update(status="valid" if verdict.verdict == "match" else "invalid",
                    detail=verdict.message if verdict.verdict != "match" else "%d checks passed"
                    % sum(1 for c in verdict.checks if c.status == "passed"),
                    failed_check=verdict.failed_check)
        out.append(item)
    return out


def render(case: str, items: list[dict], *, node: str, caller: str, genesis: Any, genesis_source: str,
           access_record: str | None) -> str:
    esc = html.escape
    rows = []
    for n, item in enumerate(items, 1):
        zh, en = STATUS_TEXT[item["status"]]
        private = "".join("<div class=meta>%s: %s</div>" % (esc(k), esc(str(v)))
                          for k, v in sorted(item.get("private_meta", {}).items()))
        rows.append(
            "<tr><td>%d</td><td><code>%s</code></td><td>%s</td><td>%s</td><td>%s</td><td>%s</td>"
            "<td><code>%s</code></td><td>%s</td><td class=%s>%s / %s<div class=meta>%s</div></td></tr>"
            % (n, esc(item["code"]), esc(str(item.get("deposited_at"))), esc(str(item.get("depositor_name",
                                                                                          item.get("depositor")))),
               esc(str(item.get("category"))), esc(str(item.get("height"))), esc(item["digest"]), private,
               item["status"], zh, en, esc(str(item.get("detail", "")))))
    valid = sum(1 for i in items if i["status"] == "valid")
    validators = genesis.validator_set()
    return """<!doctype html><html lang="zh"><head><meta charset="utf-8">
<title>案件证据核验报告 %(case)s</title><style>%(style)s</style></head><body>
<h1>案件证据核验报告 / Case evidence verification report</h1>
<p>案号 / case: <b>%(case)s</b><br>
证据 %(total)d 份，回执核验有效 %(valid)d 份 / %(total)d items, %(valid)d with a valid receipt<br>
查询机构 / queried by: %(caller)s &nbsp; 节点 / node: %(node)s &nbsp; 时间 / at: %(now)s UTC<br>
本次查询已作为访问记录上链 / this retrieval is recorded on chain as access record <code>%(access)s</code></p>
<p>联盟 / consortium: %(display)s (chain <code>%(chain)s</code>), 创世文件指纹 / genesis fingerprint
<code>%(fp)s</code> (%(source)s)<br>
验证节点 / validators: %(n)d, 法定签名数 / quorum %(q)d, 可容忍作恶节点 / tolerated faults f = %(f)d</p>
<table><thead><tr><th>#</th><th>存证编号 code</th><th>存证时间 deposited at</th><th>存证机构 depositor</th>
<th>类别 category</th><th>区块 height</th><th>SHA-256</th><th>非公开信息 private</th>
<th>回执核验 receipt</th></tr></thead><tbody>%(rows)s</tbody></table>
<p class=meta>每份回执均在本机离线验算：存证方签名、默克尔证明、区块头、验证节点法定签名、摘要比对（docs/receipt.md）。
Each receipt was verified offline on this machine: depositor signature, Merkle proofs, block header, quorum of
validator signatures, digest (docs/receipt.md).</p></body></html>
""" % {"case": esc(case), "style": STYLE, "total": len(items), "valid": valid, "caller": esc(caller),
       "node": esc(node), "now": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
       "access": esc(access_record or "-"), "display": esc(genesis.display_name), "chain": esc(genesis.chain_id),
       "fp": esc(genesis.fingerprint()), "source": esc(genesis_source), "n": validators.n, "q": validators.quorum,
       "f": validators.f, "rows": "\n".join(rows)}
