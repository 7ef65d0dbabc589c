"""The page's JavaScript, run in headless chromium and compared with the Python reference.

Each JS module of ``runtime/web/`` mirrors a Python module; these tests feed both the
same inputs and require the same answers:

* ``codes.js`` vs ``ledger.codes``: ``partial_check``, ``parse_code`` (detail, position,
  compact form) and ``derive_code`` over valid codes in every accepted spelling, every
  single substitution, adjacent swaps, insertions/deletions, look-alike and astral
  characters;
* ``sha256.js`` vs ``hashlib`` (FIPS vectors, every length 0..300, random chunkings,
  a multi-chunk Blob) and vs WebCrypto;
* ``msgpack.js`` vs ``ledger.codec`` on every length and integer boundary;
* ``merkle.js`` vs ``ledger.merkle`` (inclusion and consistency proofs, tampered ones);
* ``ed25519.js`` (WebCrypto and the pure-JS fallback) vs PyNaCl, valid and tampered;
* ``genesis.js`` fingerprint vs ``ledger.genesis``;
* ``verify.js`` vs ``ledger.receipt_verify`` on every committed receipt vector.

Skipped with a reason when chromium is not installed (CI installs it: ``.ci/run``).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import nacl.exceptions
import nacl.signing
import pytest
from aiohttp import web

from e2e.cdp import Chromium, find_chromium
from e2e.harness import serve
from ledger import codec, merkle
from ledger.codes import ALPHABET, DepositCode, derive_code, parse_code, partial_check
from ledger.errors import CodeError
from ledger.genesis import load_genesis
from runtime.web_routes import add_web_routes

REPO = Path(__file__).resolve().parents[2]
VECTORS = REPO / "tests" / "vectors" / "receipts"

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(find_chromium() is None, reason="chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture(scope="module")
def page():
    app = web.Application()
    add_web_routes(app)
    url, stop = serve(app)
    browser = Chromium()
    try:
        tab = browser.new_page()
        tab.navigate(url + "/")
        yield tab
        assert not tab.exceptions, tab.exceptions
    finally:
        browser.close()
        stop()


def js(page, module: str, body: str, data=None):
    """Run ``body`` (an async function body seeing ``m`` = the module, ``data``) in the page."""
    return page.evaluate("(async (data) => { const m = await import('/assets/%s'); %s })(%s)"
                         % (module, body, json.dumps(data)))


# ------------------------------------------------------------------ deposit codes


def _fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in text)


def code_inputs() -> list[str]:
    rng = random.Random(5)
    codes = [derive_code("chain-%d" % i, rng.randbytes(64)) for i in range(12)]
    inputs = ["", " ", "EV", "EV-", "ev-", "-", "0" * 25, "EV" + "0" * 25, "E" * 27, "1" * 64, "1" * 65,
              "U", "evu", "ı", "\u212a", "😀" * 3, "😀" * 40, "EV-😀", "\u3000" * 10, "Ｕ", "ｕ", "\u200b" * 70]
    for code in codes:
        printed, compact = str(code), code.compact
        inputs += [printed, compact, compact.lower(), printed.lower(), " ".join(compact), _fullwidth(printed),
                   printed.replace("-", "\u2014"), printed.replace("-", "\u3000"), "\ufeff" + printed + "\u200b",
                   printed[:-1], printed + "0", compact[:-1], compact + "7", printed[:10], "EV" + compact[:23],
                   compact.replace("1", "l").replace("0", "o"), compact.replace("1", "I"),
                   printed.replace("-", "\u2212"), printed.replace("-", "\uff0d"), "EV-EV-" + compact]
        for i in range(len(compact)):  # every single substitution at every position
            sym = ALPHABET[(ALPHABET.index(compact[i]) + rng.randrange(1, 32)) % 32]
            inputs.append(compact[:i] + sym + compact[i + 1:])
        for i in range(len(compact) - 1):  # adjacent swaps
            if compact[i] != compact[i + 1]:
                inputs.append(compact[:i] + compact[i + 1] + compact[i] + compact[i + 2:])
        inputs.append(printed[:7] + "U" + printed[8:])
        inputs.append(printed[:5] + "😀" + printed[5:])  # astral: positions count code points
    return inputs


def python_code_answer(text: str) -> dict:
    answer = {"partial": partial_check(text)}
    try:
        answer["compact"] = parse_code(text).compact
    except CodeError as err:
        answer["detail"] = err.detail
        answer["position"] = err.position
    return answer


def test_codes_match_python(page):
    inputs = code_inputs()
    got = js(page, "codes.js", """
        return data.map((text) => {
          const answer = {partial: m.partialCheck(text)};
          try { answer.compact = m.parseCode(text).compact; }
          catch (err) { answer.detail = err.detail; answer.position = err.position; }
          return answer;
        });""", inputs)
    want = [python_code_answer(text) for text in inputs]
    mismatches = [(text, g, w) for text, g, w in zip(inputs, got, want) if g != w]
    assert not mismatches, mismatches[:5]
    assert len(inputs) > 600


def test_code_derivation_and_printing_match_python(page):
    rng = random.Random(9)
    cases = [("evledger-%d" % i, rng.randbytes(64).hex(), rng.choice([0, 1, 7, 2**32 - 1])) for i in range(50)]
    got = js(page, "codes.js", """
        const {fromHex} = await import('/assets/sha256.js');
        return data.map(([chain, sig, index]) => m.deriveCode(chain, fromHex(sig), index).printed);""", cases)
    assert got == [str(derive_code(c, bytes.fromhex(s), i)) for c, s, i in cases]
    values = [0, 1, 2**115 - 1, 12345678901234567890123]
    printed = js(page, "codes.js", "return data.map((v) => new m.DepositCode(BigInt(v)).printed);",
                 [str(v) for v in values])
    assert printed == [str(DepositCode(v)) for v in values]


# ------------------------------------------------------------------ SHA-256


def test_sha256_vectors_every_length_and_webcrypto(page):
    got = js(page, "sha256.js", """
        const enc = new TextEncoder();
        const fips = ['', 'abc', 'abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq'].map((s) => m.toHex(m.sha256(enc.encode(s))));
        const lengths = [];
        for (let n = 0; n <= 300; n++) {
          const b = new Uint8Array(n); for (let i = 0; i < n; i++) b[i] = (i * 31 + n) & 255;
          const whole = m.toHex(m.sha256(b));
          const h = new m.Sha256(); let off = 0, step = 1;
          while (off < n) { h.update(b.subarray(off, off + step)); off += step; step = (step * 7 + 3) % 67 + 1; }
          const pieces = m.toHex(h.digest());
          const web = m.toHex(new Uint8Array(await crypto.subtle.digest('SHA-256', b)));
          lengths.push([whole, pieces, web]);
        }
        return {fips, lengths};""")
    assert got["fips"] == [hashlib.sha256(s).hexdigest() for s in
                           (b"", b"abc", b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq")]
    for n, (whole, pieces, webcrypto) in enumerate(got["lengths"]):
        want = hashlib.sha256(bytes((i * 31 + n) & 255 for i in range(n))).hexdigest()
        assert whole == pieces == webcrypto == want, n


def test_hash_file_in_chunks_with_progress(page):
    size = 3 * 1024 * 1024 + 12345
    got = js(page, "sha256.js", """
        const b = new Uint8Array(data); for (let i = 0; i < b.length; i++) b[i] = (i * 7 + (i >> 11)) & 255;
        const seen = [];
        const digest = await m.hashFile(new Blob([b]), (done, total) => seen.push([done, total]), null, 1 << 20);
        return {digest: m.toHex(digest), seen};""", size)
    data = bytes((i * 7 + (i >> 11)) & 255 for i in range(size))
    assert got["digest"] == hashlib.sha256(data).hexdigest()
    assert got["seen"][0] == [0, size] and got["seen"][-1] == [size, size] and len(got["seen"]) == 5


# ------------------------------------------------------------------ msgpack


def _tag(value):
    """JSON spelling of a msgpack value for the page: bytes and big ints are tagged."""
    if isinstance(value, bytes):
        return {"$bin": value.hex()}
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return {"$int": str(value)}
    if isinstance(value, list):
        return [_tag(v) for v in value]
    return {"$map": [[k, _tag(v)] for k, v in value.items()]}


def msgpack_values() -> list:
    ints = [0, 1, 127, 128, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**53, 2**64 - 1,
            -1, -32, -33, -128, -129, -32768, -32769, -(2**31), -(2**31) - 1, -(2**63)]
    strs = ["", "a", "证据", "x" * 31, "x" * 32, "x" * 255, "x" * 256, "y" * 65535, "y" * 65536, "😀"]
    bins = [b"", b"\x00", bytes(255), bytes(256), bytes(65535), bytes(65536)]
    arrays = [[], list(range(15)), list(range(16)), list(range(65536))]
    maps = [{}, {"b": 1, "a": 2, "é": 3, "Z": None}, {"k%02d" % i: i for i in range(16)},
            {"nested": [True, False, None, {"x": b"\x01"}]}]
    return ints + strs + bins + arrays + maps + [None, True, False]


def test_msgpack_matches_ledger_codec(page):
    values = msgpack_values()
    got = js(page, "msgpack.js", """
        const {toHex} = await import('/assets/sha256.js');
        const {fromHex} = await import('/assets/sha256.js');
        const untag = (v) => {
          if (v === null || typeof v !== 'object') return v;
          if (Array.isArray(v)) return v.map(untag);
          if ('$bin' in v) return fromHex(v.$bin);
          if ('$int' in v) { const b = BigInt(v.$int); return Number.isSafeInteger(Number(b)) ? Number(b) : b; }
          return new Map(v.$map.map(([k, x]) => [k, untag(x)]));
        };
        return data.map((v) => {
          const bytes = m.encode(untag(v));
          const back = m.encode(m.decode(bytes));
          return [toHex(bytes), toHex(back)];
        });""", [_tag(v) for v in values])
    for value, (encoded, round_trip) in zip(values, got):
        assert encoded == round_trip == codec.encode(value).hex(), repr(value)[:80]


def test_msgpack_decoder_refuses_non_canonical(page):
    bad = ["cc05", "d9016120", "c4", "ca3f800000", "82a16201a16101", "9101ff"]
    got = js(page, "msgpack.js", """
        const {fromHex} = await import('/assets/sha256.js');
        return data.map((h) => { try { m.decode(fromHex(h)); return 'accepted'; } catch (e) { return e.name; } });""",
             bad)
    assert "accepted" not in got, got


# ------------------------------------------------------------------ Merkle


def test_merkle_proofs_match_ledger_merkle(page):
    rng = random.Random(3)
    cases = []
    for size in list(range(1, 20)) + [31, 32, 33, 100]:
        leaves = [merkle.leaf_hash(rng.randbytes(8)) for _ in range(size)]
        root = merkle.root(leaves)
        for index in {0, size - 1, rng.randrange(size)}:
            proof = merkle.inclusion_proof(index, leaves)
            cases.append(["inc", leaves[index].hex(), index, size, [p.hex() for p in proof], root.hex()])
            if proof:
                bad = list(proof)
                bad[rng.randrange(len(bad))] = bytes(32)
                cases.append(["inc", leaves[index].hex(), index, size, [p.hex() for p in bad], root.hex()])
            cases.append(["inc", leaves[index].hex(), index, size + 1, [p.hex() for p in proof], root.hex()])
        for size1 in {1, size // 2 or 1, size}:
            proof = merkle.consistency_proof(size1, leaves)
            root1 = merkle.root(leaves[:size1])
            cases.append(["con", size1, size, [p.hex() for p in proof], root1.hex(), root.hex()])
            if proof:
                cases.append(["con", size1, size, [p.hex() for p in proof[:-1]], root1.hex(), root.hex()])
    got = js(page, "merkle.js", """
        const {fromHex} = await import('/assets/sha256.js');
        return data.map((c) => {
          try {
            if (c[0] === 'inc') m.verifyInclusion(fromHex(c[1]), c[2], c[3], c[4].map(fromHex), fromHex(c[5]));
            else m.verifyConsistency(c[1], c[2], c[3].map(fromHex), fromHex(c[4]), fromHex(c[5]));
            return true;
          } catch (e) { if (!(e instanceof m.ProofError)) throw e; return false; }
        });""", cases)
    want = [_python_verifies(c) for c in cases]
    assert got == want
    assert want.count(False) > 20 and want.count(True) > 50


def _python_verifies(c: list) -> bool:
    """The Python verifier's answer for one case (the reference the page must agree with)."""
    h = bytes.fromhex
    try:
        if c[0] == "inc":
            merkle.verify_inclusion(h(c[1]), c[2], c[3], [h(p) for p in c[4]], h(c[5]))
        else:
            merkle.verify_consistency(c[1], c[2], [h(p) for p in c[3]], h(c[4]), h(c[5]))
    except merkle.ProofError:
        return False
    return True


# ------------------------------------------------------------------ Ed25519


def test_ed25519_webcrypto_and_fallback_agree_with_pynacl(page):
    rng = random.Random(11)
    cases = []
    for i in range(6):
        key = nacl.signing.SigningKey(rng.randbytes(32))
        message = rng.randbytes(rng.randrange(0, 200))
        sig = key.sign(message).signature
        pk = bytes(key.verify_key)
        cases.append([pk.hex(), message.hex(), sig.hex(), True])
        flipped = bytearray(sig)
        flipped[i * 9 % 64] ^= 1 << (i % 8)
        cases.append([pk.hex(), message.hex(), bytes(flipped).hex(), False])
        cases.append([pk.hex(), (message + b"x").hex(), sig.hex(), False])
    # S >= L (malleated) and a public key that is not a point
    key = nacl.signing.SigningKey(bytes(32))
    sig = key.sign(b"m").signature
    big_s = (int.from_bytes(sig[32:], "little") + 2**252 + 27742317777372353535851937790883648493).to_bytes(32, "little")
    cases.append([bytes(key.verify_key).hex(), b"m".hex(), (sig[:32] + big_s).hex(), False])
    cases.append([("02" + "00" * 30 + "80"), b"m".hex(), sig.hex(), False])
    # The identity as key and R with S = 0 passes a bare cofactorless check; libsodium refuses small order.
    identity = "01" + "00" * 31
    cases.append([identity, b"m".hex(), identity + "00" * 32, False])
    for pk, msg, sig, ok in cases[-3:]:
        try:
            nacl.signing.VerifyKey(bytes.fromhex(pk)).verify(bytes.fromhex(msg), bytes.fromhex(sig))
            assert ok
        except (nacl.exceptions.BadSignatureError, ValueError, TypeError):
            assert not ok
    got = js(page, "ed25519.js", """
        const {fromHex} = await import('/assets/sha256.js');
        const out = [];
        for (const [pk, msg, sig] of data) {
          out.push([await m.verifyEd25519(fromHex(pk), fromHex(msg), fromHex(sig), {force: 'webcrypto'}),
                    await m.verifyEd25519(fromHex(pk), fromHex(msg), fromHex(sig), {force: 'javascript'})]);
        }
        return {out, impl: await m.implementation()};""", cases)
    assert got["impl"] == "webcrypto"
    assert got["out"] == [[c[3], c[3]] for c in cases]


def test_sha512_fallback(page):
    messages = [b"", b"abc", bytes(range(256)) * 3]
    got = js(page, "ed25519.js", """
        const {fromHex, toHex} = await import('/assets/sha256.js');
        return data.map((h) => toHex(m.sha512(fromHex(h))));""", [x.hex() for x in messages])
    assert got == [hashlib.sha512(x).hexdigest() for x in messages]


# ------------------------------------------------------------------ genesis and receipts


def test_genesis_fingerprint_matches_python(page):
    paths = [REPO / "config" / "genesis.example.json"] + sorted(VECTORS.glob("*genesis*.json"))
    paths = [p for p in paths if json.loads(p.read_text(encoding="utf-8")).get("format") == "evledger-genesis/1"]
    assert paths
    got = js(page, "genesis.js", "return data.map((text) => m.parseGenesis(JSON.parse(text)).fingerprint);",
             [p.read_text(encoding="utf-8") for p in paths])
    assert got == [load_genesis(p).fingerprint() for p in paths]


def receipt_vectors() -> list[Path]:
    return sorted(p for p in VECTORS.glob("*.json")
                  if json.loads(p.read_text(encoding="utf-8")).get("format") != "evledger-genesis/1"
                  and "receipt" in json.loads(p.read_text(encoding="utf-8")))


@pytest.mark.skipif(not VECTORS.is_dir(), reason="no receipt vectors yet")
@pytest.mark.parametrize("ed25519", ["webcrypto", "javascript"])
def test_receipt_vectors_give_the_python_verdicts(page, ed25519):
    vectors = receipt_vectors()
    assert len(vectors) >= 10
    genesis_names = sorted({json.loads(p.read_text(encoding="utf-8"))["genesis"] for p in vectors})
    got = js(page, "verify.js", """
        const {parseGenesis} = await import('/assets/genesis.js');
        const {fromHex} = await import('/assets/sha256.js');
        const ed = await import('/assets/ed25519.js');
        ed.useJavaScriptOnly(data.ed25519 === 'javascript');
        if (await ed.implementation() !== data.ed25519) throw new Error('wrong Ed25519 implementation');
        const geneses = Object.fromEntries(Object.entries(data.geneses).map(([k, v]) => [k, parseGenesis(JSON.parse(v))]));
        const out = {};
        for (const [name, text] of Object.entries(data.vectors)) {
          const v = JSON.parse(text);
          // The receipt's own JSON text, so the strict parser sees floats and duplicate keys.
          const start = text.indexOf('"receipt"');
          const raw = start < 0 ? null : text.slice(text.indexOf(':', start) + 1, text.lastIndexOf('}'));
          const r = await m.verifyReceipt(raw, geneses[v.genesis], v.file_digest ? fromHex(v.file_digest) : null);
          out[name] = [r.verdict, r.failed_check, r.checks.map((c) => c.id + ':' + c.status)];
        }
        return out;""", {
        "geneses": {n: (VECTORS / n).read_text(encoding="utf-8") for n in genesis_names},
        "vectors": {p.stem: p.read_text(encoding="utf-8") for p in vectors},
        "ed25519": ed25519,
    })
    from ledger.receipt_verify import verify_receipt

    wrong = {}
    for path in vectors:
        v = json.loads(path.read_text(encoding="utf-8"))
        digest = bytes.fromhex(v["file_digest"]) if v["file_digest"] else None
        py = verify_receipt(v["receipt"], load_genesis(VECTORS / v["genesis"]), digest)
        want = [py.verdict, py.failed_check, ["%s:%s" % (c.id, c.status) for c in py.checks]]
        assert (py.verdict, py.failed_check) == (v["expected"]["verdict"], v["expected"]["failed_check"])
        if got[path.stem] != want:
            wrong[path.stem] = (got[path.stem][:2], want[:2])
    assert not wrong, wrong
