"""The litigant's page in a real browser against a real consortium (issue 5, parts 3 and 4).

A four-validator consortium runs as separate node processes (``evledger cluster
init/up``); a file is deposited with ``evledger deposit --wait``; headless chromium,
driven over the DevTools protocol (``tests/e2e/cdp.py``), opens the page served by a
node and does what a litigant does: types the code, chooses the file, reads the
verdict.  Checked:

* the right file gives "match" (一致), a changed file "mismatch", a mistyped code
  the typo message before anything is fetched, an unknown code "not_found";
* the file never leaves the browser: every request is a GET without a body and no
  URL carries the file's bytes;
* the browser's own verification agrees with ``evledger verify-receipt`` check by
  check, for the real receipt and for tampered copies of it;
* "download receipt" saves exactly the node's receipt; the printable report has a
  section per review factor and prints to PDF.

Screenshots (Chinese and English) are taken on every run; with
``EVLEDGER_UPDATE_SCREENSHOTS=1`` they overwrite ``docs/images/`` (the guides use them).
Skipped, with the reason, when chromium is not installed; CI installs it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from e2e.cdp import Chromium, find_chromium
from runtime import cluster

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "cli.py")]
IMAGES = ROOT / "docs" / "images"
TYPO_ZH = "校验位不符，可能是输入错误"
TYPO_EN = "checksum does not match: probably a typing error"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
]


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


# ------------------------------------------------------------------ fixtures


@pytest.fixture(scope="module")
def consortium(tmp_path_factory):
    folder = tmp_path_factory.mktemp("consortium") / "c"
    result = run_cli("cluster", "init", str(folder), "--validators", "4", "--base-port", str(cluster.free_base_port()))
    assert result.returncode == 0, result.stderr
    up = run_cli("cluster", "up", str(folder), "--json")
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    try:
        yield folder, doc
    finally:
        down = run_cli("cluster", "down", str(folder))
        assert down.returncode == 0, down.stderr


@pytest.fixture(scope="module")
def evidence(consortium, tmp_path_factory):
    """A deposited file, a changed copy, and the deposit code."""
    folder, doc = consortium
    files = tmp_path_factory.mktemp("evidence")
    original = files / "合同-contract.txt"
    original.write_bytes(("电子合同 第 1 版 %s\n" % os.urandom(8).hex()).encode() * 50)
    changed = files / "合同-contract-changed.txt"
    changed.write_bytes(original.read_bytes().replace("第 1 版".encode(), "第 2 版".encode(), 1))
    key = next(c["key"] for c in doc["clients"] if "depositor" in c["roles"])
    api = doc["nodes"][0]["api"]
    result = run_cli("deposit", str(original), "--node", api, "--key", key, "--category", "e-contract", "--wait",
                     "--json")
    assert result.returncode == 0, result.stderr
    (item,) = json.loads(result.stdout)
    assert item["digest"] == hashlib.sha256(original.read_bytes()).hexdigest()
    return {"original": original, "changed": changed, "code": item["code"], "height": item["height"]}


@pytest.fixture(scope="module")
def site(consortium):
    """Base URL of the page: a node that did not take the deposit serves it itself."""
    _, doc = consortium
    api = doc["nodes"][1]["api"]
    with urllib.request.urlopen(api + "/", timeout=5) as answer:
        assert answer.status == 200 and answer.headers.get_content_type() == "text/html"
    return api


@pytest.fixture(scope="module")
def browser():
    b = Chromium()
    try:
        yield b
    finally:
        b.close()


@pytest.fixture
def page(browser, site):
    tab = browser.new_page()
    tab.set_viewport(1000, 900)
    # Collect Content-Security-Policy violations from the very start of every document.
    tab.send("Page.addScriptToEvaluateOnNewDocument", {"source": """
        window.__csp = [];
        document.addEventListener('securitypolicyviolation',
            (e) => window.__csp.push(e.violatedDirective + ' ' + e.blockedURI));"""})
    tab.navigate(site + "/?lang=zh")
    try:
        yield tab
        assert not tab.exceptions, tab.exceptions
        assert tab.evaluate("window.__csp") == [], "the page broke its own CSP"
    finally:
        tab.close()


def verdict_of(page, timeout: float = 30) -> str:
    return page.wait_for("document.getElementById('result').dataset.verdict", timeout, "a verdict")


def reset_verdict(page) -> None:
    page.evaluate("delete document.getElementById('result').dataset.verdict")


def shot(page, name: str, tmp_path: Path) -> None:
    target = IMAGES if os.environ.get("EVLEDGER_UPDATE_SCREENSHOTS") == "1" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    page.screenshot(target / name)
    assert (target / name).stat().st_size > 5000


# ------------------------------------------------------------------ cases


def test_right_file_matches_and_never_leaves_the_browser(page, evidence, tmp_path):
    page.type_into("#code", evidence["code"].lower().replace("-", " "))
    assert page.evaluate("document.getElementById('code-status').dataset.state") == "ok"
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "match"
    assert page.evaluate("document.getElementById('verdict').textContent") == "一致"
    record = page.evaluate("document.getElementById('record').innerText")
    assert evidence["code"] in record and "电子合同" in record and str(evidence["height"]) in record
    checks = json.loads(page.evaluate("document.getElementById('result').dataset.checks"))
    assert [c["status"] for c in checks] == ["passed"] * 14
    shot(page, "litigant-match-zh.png", tmp_path)

    page.evaluate("document.getElementById('lang-switch').click()")
    page.wait_for("document.documentElement.lang === 'en'")
    assert page.evaluate("document.getElementById('verdict').textContent") == "Match"
    assert "Electronic contract" in page.evaluate("document.getElementById('record').innerText")
    shot(page, "litigant-match-en.png", tmp_path)

    content = evidence["original"].read_bytes()
    marker = content[:40].decode(errors="ignore")
    for request in page.requests:
        assert request["method"] == "GET", request
        assert not request.get("hasPostData") and not request.get("postData"), request
        assert marker not in request["url"] and hashlib.sha256(content).hexdigest() not in request["url"]
    paths = {r["url"].split("/", 3)[3].split("?")[0] for r in page.requests}
    assert "v1/receipts/%s" % evidence["code"].replace("EV-", "").replace("-", "") in paths


def test_changed_file_is_a_mismatch(page, evidence, tmp_path):
    page.type_into("#code", evidence["code"])
    page.set_file("#file", evidence["changed"])
    assert verdict_of(page) == "mismatch"
    assert page.evaluate("document.getElementById('verdict').textContent") == "不一致"
    assert page.evaluate("document.getElementById('result').dataset.failedCheck") == "digest"
    shot(page, "litigant-mismatch-zh.png", tmp_path)
    # The right file afterwards turns the same page to "match" (a person trying again).
    reset_verdict(page)
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "match"


def test_mistyped_code_is_reported_as_a_typo_not_as_not_found(page, evidence, tmp_path):
    code = evidence["code"]
    typo = code[:-3] + code[-2] + code[-3] + code[-1] if code[-3] != code[-2] else code[:-1] + (
        "0" if code[-1] != "0" else "1")
    page.type_into("#code", typo)
    assert page.evaluate("document.getElementById('code-status').textContent") == TYPO_ZH
    assert page.evaluate("document.getElementById('code').getAttribute('aria-invalid')") == "true"
    page.set_file("#file", evidence["original"])
    page.wait_for("document.getElementById('file-status').dataset.digest")
    page.evaluate("document.getElementById('verify-button').click()")
    assert verdict_of(page) == "malformed_code"
    assert TYPO_ZH in page.evaluate("document.getElementById('verdict-reason').textContent")
    shot(page, "litigant-typo-zh.png", tmp_path)
    assert not [r for r in page.requests if "/v1/receipts/" in r["url"]], "a typo must not reach the node"
    page.evaluate("document.getElementById('lang-switch').click()")
    page.wait_for("document.documentElement.lang === 'en'")
    assert page.evaluate("document.getElementById('code-status').textContent") == TYPO_EN


def test_unknown_code_is_not_found(page, evidence):
    from ledger.codes import DepositCode

    page.type_into("#code", str(DepositCode(12345)))
    page.evaluate("document.getElementById('verify-button').click()")
    assert verdict_of(page) == "not_found"
    assert page.evaluate("document.getElementById('verdict').textContent") == "未找到"


def _cli_verdict(receipt_path: Path, genesis: Path, file: Path | None) -> dict:
    args = ["verify-receipt", str(receipt_path), "--genesis", str(genesis), "--json"]
    if file is not None:
        args += ["--file", str(file)]
    result = run_cli(*args)
    assert result.returncode in (0, 1), result.stderr
    doc = json.loads(result.stdout)
    return {"verdict": doc["verdict"], "failed_check": doc["failed_check"],
            "checks": [[c["id"], c["status"]] for c in doc["checks"]]}


def _tampered(receipt: dict) -> dict[str, dict]:
    out = {}
    r = copy.deepcopy(receipt)
    r["header"]["timestamp"] += 1
    out["header-timestamp"] = r
    r = copy.deepcopy(receipt)
    sig = r["entry"]["signature"]
    r["entry"]["signature"] = sig[:10] + ("0" if sig[10] != "0" else "1") + sig[11:]
    out["entry-signature"] = r
    r = copy.deepcopy(receipt)
    r["certificate"]["signatures"] = r["certificate"]["signatures"][:2]
    out["fewer-than-quorum"] = r
    r = copy.deepcopy(receipt)
    r["display"]["depositor_display_name"] = "某某"
    out["display-depositor"] = r
    r = copy.deepcopy(receipt)
    r["item"]["digest"] = "00" * 32
    out["item-digest"] = r
    return out


def test_browser_verification_agrees_with_cli(page, consortium, evidence, tmp_path):
    folder, doc = consortium
    receipt_path = tmp_path / "receipt.json"
    result = run_cli("receipt", evidence["code"], "--node", doc["nodes"][2]["api"], "-o", str(receipt_path))
    assert result.returncode == 0, result.stderr
    receipt = json.loads(receipt_path.read_text(encoding="utf-8"))
    cases = {"valid": (receipt, None), "match": (receipt, evidence["original"]),
             "mismatch": (receipt, evidence["changed"])}
    cases.update({name: (r, evidence["original"]) for name, r in _tampered(receipt).items()})
    genesis = folder / "genesis.json"
    want, texts = {}, {}
    for name, (r, file) in cases.items():
        path = tmp_path / ("%s.json" % name)
        path.write_text(json.dumps(r, ensure_ascii=False), encoding="utf-8")
        want[name] = _cli_verdict(path, genesis, file)
        texts[name] = [path.read_text(encoding="utf-8"),
                       hashlib.sha256(file.read_bytes()).hexdigest() if file else None]
    got = page.evaluate("""(async (data) => {
        const {verifyReceipt} = await import('/assets/verify.js');
        const {parseGenesis} = await import('/assets/genesis.js');
        const {fromHex} = await import('/assets/sha256.js');
        const g = parseGenesis(await (await fetch('/v1/genesis.json')).json());
        const out = {};
        for (const [name, [text, digest]] of Object.entries(data)) {
          const r = await verifyReceipt(text, g, digest ? fromHex(digest) : null);
          out[name] = {verdict: r.verdict, failed_check: r.failed_check, checks: r.checks.map((c) => [c.id, c.status])};
        }
        return out;
    })(%s)""" % json.dumps(texts))
    assert got == want
    assert {w["verdict"] for w in want.values()} == {"valid", "match", "mismatch", "invalid"}
    # ... and the page's own end-to-end run shows the same checks as the CLI's "match".
    page.type_into("#code", evidence["code"])
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "match"
    shown = json.loads(page.evaluate("document.getElementById('result').dataset.checks"))
    assert [[c["id"], c["status"]] for c in shown] == want["match"]["checks"]


def test_download_receipt_and_print_report(page, browser, evidence, tmp_path):
    page.type_into("#code", evidence["code"])
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "match"
    page.evaluate("document.getElementById('download-receipt').click()")
    name = "evledger-receipt-%s.json" % evidence["code"]
    target = browser.downloads / name
    deadline = time.monotonic() + 15
    while not target.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert target.exists(), list(browser.downloads.iterdir())
    saved = json.loads(target.read_text(encoding="utf-8"))
    assert saved["code"] == evidence["code"] and saved["format"] == "evledger-receipt/1"

    page.evaluate("window.print = () => { window.__printed = (window.__printed || 0) + 1; }")
    page.evaluate("document.getElementById('print-report').click()")
    page.wait_for("window.__printed === 1")
    report = page.evaluate("document.getElementById('report').innerText")
    for heading in ("一、核验结论", "二、存证记录", "三、平台运营者及其角色", "四、平台中立性", "五、信息系统",
                    "六、存证技术和过程", "核验步骤及结果"):
        assert heading in report, heading
    assert evidence["code"] in report and "SHA-256" in report and "法定" in report
    page.send("Emulation.setEmulatedMedia", {"media": "print"})
    page.set_viewport(800, 1100)
    shot(page, "report-zh.png", tmp_path)
    pdf = page.pdf(tmp_path / "report.pdf")
    assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
    page.send("Emulation.setEmulatedMedia", {"media": ""})
    # The same report in English after the language switch.
    page.evaluate("document.getElementById('lang-switch').click()")
    page.wait_for("document.documentElement.lang === 'en'")
    page.evaluate("document.getElementById('print-report').click()")
    page.wait_for("window.__printed === 2")
    report = page.evaluate("document.getElementById('report').innerText")
    for heading in ("1. Verdict", "2. Deposit record", "3. Who operates the platform", "4. Neutrality",
                    "5. Information system", "6. Deposit technique and process"):
        assert heading in report, heading
    assert "Match" in report and "一致" not in report


def test_own_genesis_file_pins_the_consortium(page, consortium, evidence, tmp_path):
    """A genesis of another consortium makes the node's receipt invalid, naming the check; the right one matches."""
    folder, _ = consortium
    page.evaluate("document.getElementById('genesis-box').open = true")
    page.set_file("#genesis-file", ROOT / "tests" / "vectors" / "receipts" / "genesis.json")
    page.wait_for("document.getElementById('genesis-status').textContent.includes('evledger-vectors')")
    page.type_into("#code", evidence["code"])
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "invalid_receipt"
    assert page.evaluate("document.getElementById('result').dataset.failedCheck") == "chain_id"
    assert "chain_id" in page.evaluate("document.getElementById('verdict-reason').textContent")
    shot(page, "litigant-invalid-receipt-zh.png", tmp_path)
    reset_verdict(page)
    page.set_file("#genesis-file", folder / "genesis.json")
    assert verdict_of(page) == "match"


def test_page_is_served_with_its_security_headers(site):
    for path, kind in (("/", "text/html"), ("/assets/app.js", "text/javascript")):
        with urllib.request.urlopen(site + path, timeout=5) as answer:
            assert answer.status == 200 and answer.headers.get_content_type() == kind
            csp = answer.headers["Content-Security-Policy"]
            assert csp.startswith("default-src 'self'") and "'unsafe-inline'" not in csp
            assert answer.headers["X-Content-Type-Options"] == "nosniff"
            assert answer.headers["Referrer-Policy"] == "no-referrer"


def test_every_control_has_an_accessible_name_and_is_reachable_by_keyboard(page):
    tree = page.send("Accessibility.getFullAXTree")["nodes"]
    controls = [n for n in tree if n.get("role", {}).get("value") in ("textbox", "button", "combobox", "checkbox")
                and not n.get("ignored")]
    assert len(controls) >= 4
    unnamed = [n["role"]["value"] for n in controls if not n.get("name", {}).get("value", "").strip()]
    assert not unnamed, unnamed
    reached = []
    for _ in range(12):  # Tab through the page as a keyboard user does
        page.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
        page.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Tab", "code": "Tab", "windowsVirtualKeyCode": 9})
        reached.append(page.evaluate("document.activeElement.id || document.activeElement.tagName"))
    for wanted in ("lang-switch", "code", "file", "verify-button"):
        assert wanted in reached, reached


def test_large_file_hashes_in_chunks_with_progress(page, tmp_path):
    big = tmp_path / "large-evidence.bin"
    chunk = os.urandom(1 << 20)
    with big.open("wb") as out:
        for i in range(21):  # 21 MiB: six 4 MiB chunks
            out.write(chunk[i:] + chunk[:i])
    page.evaluate("""(() => {
        window.__progress = [];
        new MutationObserver(() => window.__progress.push(document.getElementById('progress').value))
            .observe(document.getElementById('progress'), {attributes: true});
    })()""")
    page.set_file("#file", big)
    digest = page.wait_for("document.getElementById('file-status').dataset.digest", 60, "the file's digest")
    assert digest == hashlib.sha256(big.read_bytes()).hexdigest()
    seen = page.evaluate("window.__progress")
    assert any(0 < v < 1 for v in seen), seen
    assert page.evaluate("document.getElementById('progress').hidden") is True
    assert all(r["method"] == "GET" and not r.get("hasPostData") for r in page.requests)


def test_a_link_carrying_the_code_opens_ready(page, site, evidence):
    page.navigate(site + "/?lang=en&code=" + evidence["code"])
    assert page.evaluate("document.getElementById('code').value") == evidence["code"]
    assert page.evaluate("document.getElementById('code-status').dataset.state") == "ok"
    page.set_file("#file", evidence["original"])
    assert verdict_of(page) == "match"
    assert page.evaluate("document.getElementById('verdict').textContent") == "Match"
