"""Receipts: build from a real chain, verify offline, and reject every tamper with the right check.

* ``tests/vectors/receipts/*.json`` are written by ``tools/gen_receipt_vectors.py``
  (a real chain in a MemoryStore, real signatures, fixed seeds and times); each
  carries its expected verdict and failed check, and ``--check`` proves the
  committed files are what the generator writes today.
* Every single-field tamper of a fresh receipt (walked programmatically over all
  fields) is rejected, and by the check that owns that field.
* Hypothesis: random JSON mutations never raise; the result is always a Verdict.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
import re
from pathlib import Path

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from ledger import receipt_verify
from ledger.codes import derive_code
from ledger.errors import InputError
from ledger.genesis import load_genesis
from ledger.receipt import (CHECKS, FORMAT, FormatError, Verdict, build_receipt, receipt_json, receipt_summary,
                            verify_receipt)

REPO = Path(__file__).resolve().parents[2]
VECTOR_DIR = REPO / "tests" / "vectors" / "receipts"
DOC = REPO / "docs" / "receipt.md"


def _load_generator():
    spec = importlib.util.spec_from_file_location("gen_receipt_vectors", REPO / "tools" / "gen_receipt_vectors.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
GENESIS, RECEIPT, STORE = gen.fresh_receipt()
_, QUORUM_RECEIPT, _ = gen.fresh_receipt(signers=3)  # exactly quorum (3 of 4) signatures


def vectors():
    return sorted(p for p in VECTOR_DIR.glob("*.json") if not p.name.startswith(("genesis", "worked-example")))


# ------------------------------------------------------------------ vectors


def test_vector_set_is_present():
    names = {p.stem for p in vectors()}
    assert {"valid", "valid-file-match", "valid-file-mismatch", "wrong-genesis-other-consortium",
            "certificate-fewer-than-quorum", "entry-signature-modified", "code-symbol-changed"} <= names
    failed = {json.loads(p.read_text(encoding="utf-8"))["expected"]["failed_check"] for p in vectors()}
    assert failed == set(CHECKS) | {None}, "every check id has a vector that fails it"


def test_vectors_are_what_the_generator_writes():
    assert gen.main(["--out", str(VECTOR_DIR), "--check"]) == 0


@pytest.mark.parametrize("path", vectors(), ids=lambda p: p.stem)
def test_vector(path):
    v = json.loads(path.read_text(encoding="utf-8"))
    genesis = load_genesis(VECTOR_DIR / v["genesis"])
    digest = bytes.fromhex(v["file_digest"]) if v["file_digest"] else None
    verdict = verify_receipt(v["receipt"], genesis, digest)
    assert (verdict.verdict, verdict.failed_check) == (v["expected"]["verdict"], v["expected"]["failed_check"]), \
        verdict.message
    # The check list: every id once, in order; passed up to the failure, then skipped.
    assert [c.id for c in verdict.checks] == list(CHECKS)
    statuses = [c.status for c in verdict.checks]
    if verdict.failed_check:
        at = CHECKS.index(verdict.failed_check)
        assert statuses[:at] == ["passed"] * at and statuses[at] == "failed"
        assert set(statuses[at + 1:]) <= {"skipped"}
    else:
        assert statuses[:-1] == ["passed"] * (len(CHECKS) - 1)
    # Also as JSON text, as the CLI reads it.
    again = verify_receipt(json.dumps(v["receipt"]).encode(), genesis, digest)
    assert (again.verdict, again.failed_check) == (verdict.verdict, verdict.failed_check)


# ------------------------------------------------------------- build + verify


def test_fresh_receipt_verifies_and_matches_its_file():
    assert RECEIPT["format"] == FORMAT
    assert verify_receipt(RECEIPT, GENESIS).verdict == "valid"
    evidence = b"evidence-21"  # the generator's target item is the SHA-256 of this
    good = verify_receipt(RECEIPT, GENESIS, hashlib.sha256(evidence).digest())
    assert good.verdict == "match" and good.failed_check is None and good.ok
    bad = verify_receipt(RECEIPT, GENESIS, hashlib.sha256(evidence + b"!").digest())
    assert bad.verdict == "mismatch" and bad.failed_check == "digest" and not bad.ok
    assert bad.checks[-1].status == "failed" and all(c.status == "passed" for c in bad.checks[:-1])


def test_every_item_of_the_chain_has_a_receipt_that_verifies():
    for height in range(1, STORE.head().height + 1):
        for e, record in enumerate(STORE.records(height)):
            for i in range(len(record.items)):
                code = derive_code(GENESIS.chain_id, record.entry.signature, i)
                receipt = build_receipt(STORE, GENESIS, code.key)
                assert receipt["code"] == str(code)
                assert (receipt["header"]["height"], receipt["entry_proof"]["index"],
                        receipt["item_proof"]["index"]) == (height, e, i)
                assert verify_receipt(receipt, GENESIS).verdict == "valid"


def test_unknown_code_is_a_clear_error():
    code = derive_code(GENESIS.chain_id, bytes(64), 0)
    with pytest.raises(InputError) as info:
        build_receipt(STORE, GENESIS, code.key)
    assert info.value.reason == "not_found" and str(code.compact) in str(info.value)


def test_build_refuses_a_genesis_that_is_not_the_chains():
    from ledger.errors import CorruptionError

    other = load_genesis(VECTOR_DIR / "genesis-rekeyed.json")
    code = gen.target_code(GENESIS, STORE)
    with pytest.raises(CorruptionError):
        build_receipt(STORE, other, code.key)


def test_receipt_has_no_private_fields_and_is_plain_json():
    text = receipt_json(RECEIPT)
    assert json.loads(text) == RECEIPT
    # The generator's private metadata: neither the buyer's name nor the amount leaks.
    assert "张三" not in text and "129900" not in text and "buyer" not in text


def test_summary():
    s = receipt_summary(RECEIPT)
    assert s["code"] == RECEIPT["code"] and s["digest"] == RECEIPT["item"]["digest"]
    assert s["deposited_at"] == "2025-06-15T15:06:40.123Z" and s["deposited_at_ms"] == 1_750_000_000_123
    assert (s["depositor"], s["depositor_display_name"], s["height"]) == ("shop", "示例电商平台", 2)
    assert (s["category"], s["category_display_name"], s["category_display_name_en"]) == (
        "ecommerce-order", "电商订单", "E-commerce order")
    assert verify_receipt(RECEIPT, GENESIS).summary == s
    with pytest.raises(FormatError) as info:
        receipt_summary(dict(RECEIPT, item=None))
    assert info.value.field == "item"


# ------------------------------------------------------- single-field tampers

# Which check must catch a change of the field at each path (regex over the path).
EXPECTED = [
    (r"format", "format"),
    (r"chain_id|header\.chain_id", "chain_id"),
    (r"genesis_fingerprint", "genesis_fingerprint"),
    (r"code", "code_derivation"),
    (r"item\..*|item_proof\..*", "item_inclusion"),
    (r"entry\.depositor", "depositor_role"),
    (r"entry\..*", "entry_signature"),
    (r"entry_proof\..*|header\.(entries_root|entry_count)", "entry_inclusion"),
    (r"history_proof\..*|header\.(history_size|history_root)", "history_inclusion"),
    (r"validator_sets\..*|header\.validator_set_hash", "validator_set"),
    (r"header\..*|certificate\.header_hash", "header_hash"),
    (r"certificate\.signatures\..*", "certificate_quorum"),
    (r"display\..*", "display"),
]


def expected_check(path: str) -> str:
    for pattern, check in EXPECTED:
        if re.fullmatch(pattern, path):
            return check
    raise AssertionError("no expectation for field %s: every field must be owned by a check" % path)


def leaves(doc, path=""):
    """(path, container, key) of every scalar in ``doc``; list indexes are written ``.N``."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for key, value in items:
        sub = "%s.%s" % (path, key) if path else str(key)
        if isinstance(value, (dict, list)) and not (isinstance(value, list) and not value):
            yield from leaves(value, sub)
        else:
            yield sub, doc, key


def mutated(value, path):
    if path.endswith(".int"):
        return str(int(value) + 1)
    if isinstance(value, bool) or value is None:
        return "00" * 32
    if isinstance(value, int):
        return value + 1
    if re.fullmatch(r"([0-9a-f]{2}){32}|([0-9a-f]{2}){64}", value):
        return "%02x" % (int(value[:2], 16) ^ 1) + value[2:]
    if path == "code":
        return gen._code_symbol_changed(value)
    if path == "format":
        return FORMAT[:-1] + "2"
    return value + "x"


def normalized(path):
    return re.sub(r"\.\d+", "", path)


@pytest.mark.parametrize("path", [p for p, _, _ in leaves(QUORUM_RECEIPT)])
def test_every_single_field_tamper_is_rejected_by_its_check(path):
    assert verify_receipt(QUORUM_RECEIPT, GENESIS).verdict == "valid"
    doc = copy.deepcopy(QUORUM_RECEIPT)
    target = dict((p, (c, k)) for p, c, k in leaves(doc))[path]
    container, key = target
    container[key] = mutated(container[key], path)
    verdict = verify_receipt(doc, GENESIS)
    assert verdict.verdict == "invalid", "tampering %s went unnoticed" % path
    assert verdict.failed_check == expected_check(normalized(path)), (path, verdict.message)


def objects(doc, path="$"):
    if isinstance(doc, dict):
        yield path, doc
        for key, value in doc.items():
            yield from objects(value, "%s.%s" % (path, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            yield from objects(value, "%s[%d]" % (path, i))


@pytest.mark.parametrize("path", [p for p, _ in objects(RECEIPT)])
def test_a_missing_or_unknown_key_anywhere_is_a_format_failure_naming_it(path):
    for change in ("drop", "add"):
        doc = copy.deepcopy(RECEIPT)
        obj = dict(objects(doc))[path]
        if change == "drop":
            key = sorted(obj)[0]
            del obj[key]
        else:
            key = "surplus"
            obj[key] = 1
        verdict = verify_receipt(doc, GENESIS)
        if path == "$.item.public_meta":  # the depositor's own keys: signed data, not format
            assert (verdict.verdict, verdict.failed_check) == ("invalid", "item_inclusion"), change
            continue
        assert (verdict.verdict, verdict.failed_check) == ("invalid", "format"), (path, change)
        assert key in verdict.message or path.rsplit(".", 1)[-1] in verdict.message


def test_uppercase_hex_and_non_canonical_big_ints_are_refused():
    doc = copy.deepcopy(RECEIPT)
    doc["item"]["public_meta"]["pages"] = {"int": "3"}  # must be written as a number
    assert verify_receipt(doc, GENESIS).failed_check == "format"
    doc = copy.deepcopy(RECEIPT)
    doc["item"]["public_meta"]["ledger_ref"] = 2**60 + 7  # must be written {"int": ...}
    assert verify_receipt(doc, GENESIS).failed_check == "format"
    doc = copy.deepcopy(RECEIPT)
    doc["header"]["height"] = True
    assert verify_receipt(doc, GENESIS).failed_check == "format"


# ------------------------------------------------ other consortium, quorum


def test_receipt_from_another_consortium_is_rejected():
    other = load_genesis(VECTOR_DIR / "genesis-other-consortium.json")
    assert verify_receipt(RECEIPT, other).failed_check == "chain_id"


def test_consistent_forgery_against_a_rekeyed_genesis_is_rejected():
    """Someone rewrites every unsigned field to fit a genesis with one validator key replaced."""
    rekeyed = load_genesis(VECTOR_DIR / "genesis-rekeyed.json")
    doc = copy.deepcopy(RECEIPT)
    doc["genesis_fingerprint"] = rekeyed.fingerprint()
    vset = rekeyed.validator_set()
    doc["validator_sets"][0]["validators"] = [{"name": n, "public_key": k.hex} for n, k in vset.members]
    doc["validator_sets"][0]["hash"] = vset.hash().hex()
    assert verify_receipt(doc, rekeyed).failed_check == "validator_set"
    doc["header"]["validator_set_hash"] = vset.hash().hex()
    assert verify_receipt(doc, rekeyed).failed_check == "header_hash"
    doc["certificate"]["header_hash"] = receipt_verify.parse_receipt(doc).header.hash().hex()
    verdict = verify_receipt(doc, rekeyed)
    assert verdict.failed_check == "certificate_quorum" and "0 valid" in verdict.message


@pytest.mark.parametrize("keep, verdict", [(4, "valid"), (3, "valid"), (2, "invalid"), (1, "invalid"),
                                           (0, "invalid")])
def test_quorum_of_distinct_valid_signatures(keep, verdict):
    doc = copy.deepcopy(RECEIPT)
    doc["certificate"]["signatures"] = doc["certificate"]["signatures"][:keep]
    result = verify_receipt(doc, GENESIS)
    assert result.verdict == verdict
    if verdict == "invalid":
        assert result.failed_check == "certificate_quorum"


def test_a_signature_copied_under_another_name_does_not_count():
    doc = copy.deepcopy(QUORUM_RECEIPT)
    sigs = doc["certificate"]["signatures"]
    sigs[1]["signature"] = sigs[0]["signature"]  # carrier-node "signs" with bank-node's signature
    assert verify_receipt(doc, GENESIS).failed_check == "certificate_quorum"


# ---------------------------------------------------------- hostile input

JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=80),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)
ALL_PATHS = [p for p, _, _ in leaves(RECEIPT)] + [p for p, _ in objects(RECEIPT)]


def _replace(doc, path, value):
    if path == "$":
        return value
    parts = [p for p in re.split(r"\.|\[|\]", path.removeprefix("$").lstrip(".")) if p]
    target = doc
    for part in parts[:-1]:
        target = target[int(part)] if isinstance(target, list) else target[part]
    last = parts[-1]
    target[int(last) if isinstance(target, list) else last] = value
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.sampled_from(ALL_PATHS), JSON), min_size=1, max_size=3))
def test_random_json_mutations_never_raise(changes):
    doc = copy.deepcopy(RECEIPT)
    for path, value in changes:
        try:
            doc = _replace(doc, path, value)
        except (KeyError, IndexError, TypeError, ValueError):
            continue  # an earlier change removed the container
    verdict = receipt_verify._verify(doc, GENESIS, None)  # without the last-resort catch-all
    assert isinstance(verdict, Verdict) and verdict.verdict in ("valid", "invalid")
    assert verify_receipt(doc, GENESIS) == verdict


@settings(max_examples=200, deadline=None)
@given(JSON)
def test_any_json_document_is_a_verdict(doc):
    verdict = receipt_verify._verify(doc, GENESIS, None)
    assert verdict.verdict == "invalid" and verdict.failed_check == "format"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_any_text_is_a_verdict(data):
    verdict = receipt_verify._verify(data, GENESIS, None)
    assert verdict.verdict == "invalid" and verdict.failed_check == "format"


def test_hostile_json_text():
    for text in (b'{"format": 1, "format": 2}', b"NaN", b"[" * 100_000, b"\xff\xfe", b"x" * (2 * 1024 * 1024)):
        verdict = verify_receipt(text, GENESIS)
        assert (verdict.verdict, verdict.failed_check) == ("invalid", "format")


def test_misuse_raises():
    with pytest.raises(TypeError):
        verify_receipt(RECEIPT, GENESIS, b"short")
    with pytest.raises(TypeError):
        verify_receipt(RECEIPT, object())


# ------------------------------------------------ the spec in docs/receipt.md

WORKED = json.loads((VECTOR_DIR / "worked-example.json").read_text(encoding="utf-8"))


def _msgpack(value):
    """Canonical msgpack written from the spec (sorted map keys), independent of ledger.codec."""
    def sort(v):
        if isinstance(v, dict):
            return {k: sort(v[k]) for k in sorted(v, key=lambda k: k.encode())}
        if isinstance(v, list):
            return [sort(x) for x in v]
        return v
    return msgpack.packb(sort(value), use_bin_type=True)


def _meta(doc):
    return {k: int(v["int"]) if isinstance(v, dict) else v for k, v in doc.items()}


def _hex(v):
    return None if v is None else bytes.fromhex(v)


def test_the_documented_reconstruction_gives_the_hashed_bytes():
    r = RECEIPT
    i, e, h = r["item"], r["entry"], r["header"]
    item_wire = ["deposit-item", 1, _hex(i["digest"]), _hex(i["sm3"]), i["category"], i["case"],
                 _meta(i["public_meta"]), _hex(i["private_commitment"])]
    assert _msgpack(item_wire).hex() == WORKED["item_wire_encoding"]
    body = ["deposit", 1, e["depositor"], e["client_time"], e["item_count"], _hex(e["items_root"])]
    assert _msgpack(body).hex() == WORKED["deposit_body_encoding"]
    signing = _msgpack(["evledger-sig/1", "entry/deposit", r["chain_id"], _msgpack(body)])
    assert signing.hex() == WORKED["entry_signing_bytes"]
    entry = _msgpack(["entry", 1, body, _hex(e["signature"])])
    assert entry.hex() == WORKED["entry_wire_encoding"]
    assert hashlib.sha256(b"\x00" + entry).hexdigest() == WORKED["entry_leaf_hash"]
    hashes = {"prev_hash", "entries_root", "history_root", "validator_set_hash"}
    header = ["block-header", 1] + [_hex(v) if k in hashes else v for k, v in h.items()]
    assert _msgpack(header).hex() == WORKED["header_wire_encoding"]
    assert hashlib.sha256(_msgpack(header)).hexdigest() == WORKED["header_hash"] == r["certificate"]["header_hash"]
    vset = ["validator-set", 1, [[v["name"], _hex(v["public_key"])] for v in r["validator_sets"][0]["validators"]]]
    assert hashlib.sha256(_msgpack(vset)).hexdigest() == WORKED["validator_set_hash"] == h["validator_set_hash"]


def test_docs_carry_the_worked_example():
    text = DOC.read_text(encoding="utf-8")
    blocks = re.findall(r"```json\n(.*?)```", text, re.S)
    assert any(json.loads(b) == RECEIPT for b in blocks if b.lstrip().startswith('{\n  "format"')), \
        "docs/receipt.md must show the receipt of tests/vectors/receipts/valid.json"
    for name, value in WORKED.items():
        for v in value if isinstance(value, list) else [value]:
            assert str(v) in text.replace("\n", ""), "docs/receipt.md lacks worked value %s" % name
    for check in CHECKS:
        assert "`%s`" % check in text


def _rfc9162_verify(leaf, index, size, path, root):
    """RFC 9162 section 2.1.3.2, transcribed as docs/receipt.md gives it (independent of ledger.merkle)."""
    def node(left, right):
        return hashlib.sha256(b"\x01" + left + right).digest()
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            while not fn & 1 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def test_the_documented_proof_algorithm_verifies_the_receipt_and_rejects_tampered_paths():
    r = RECEIPT
    item_leaf = bytes.fromhex(WORKED["item_leaf_hashes"][r["item_proof"]["index"]])
    entry_leaf = bytes.fromhex(WORKED["entry_leaf_hash"])
    cases = [(item_leaf, r["item_proof"], r["entry"]["items_root"]),
             (entry_leaf, r["entry_proof"], r["header"]["entries_root"]),
             (entry_leaf, r["history_proof"], r["header"]["history_root"])]
    for leaf, proof, root in cases:
        path = [bytes.fromhex(h) for h in proof["path"]]
        assert _rfc9162_verify(leaf, proof["index"], proof["size"], path, bytes.fromhex(root))
        for i in range(len(path)):
            bad = list(path)
            bad[i] = bytes([bad[i][0] ^ 1]) + bad[i][1:]
            assert not _rfc9162_verify(leaf, proof["index"], proof["size"], bad, bytes.fromhex(root))
        assert not _rfc9162_verify(leaf, proof["index"] + 1, proof["size"], path, bytes.fromhex(root))

