#!/usr/bin/env python3
"""Generate the receipt test vectors in ``tests/vectors/receipts/``.

A small real chain is built in a ``MemoryStore`` with ``ledger.chain.LedgerApp``
and real Ed25519 signatures; everything is deterministic (keys from fixed seeds,
fixed times, a fixed private-metadata salt), so the files are the same on every run.

Chain: a consortium of four validators (a court, a notary, a carrier and a bank),
two depositors and an arbitration body.  Block 1 holds three single deposits;
block 2 holds five entries, of which entry 2 is a batch of three items signed once
by ``shop`` -- item 1 of that batch (with an SM3 digest, a case number, public
metadata including a 64-bit integer, and a private-metadata commitment) is the
deposit every vector is about; block 3 holds one more deposit, so the receipt's
history proof is against block 2's history root, not the head's.  Block 2 is
certified by all four validators (the quorum is 3).

Files written:

* ``genesis.json`` -- the consortium; ``genesis-other-consortium.json`` (another
  chain id and keys); ``genesis-rekeyed.json`` (same chain id, one validator key
  replaced);
* ``<name>.json`` -- one case each::

      {"name", "mutation", "genesis": "<file name>", "file_digest": hex | null,
       "expected": {"verdict", "failed_check"}, "receipt": <document>}

  ``valid`` is the untouched receipt; every other case is named by its mutation
  (``item-path@0-bit@0``, ``header-timestamp-plus-1``, ...);
* ``worked-example.json`` -- the intermediate values of the valid receipt
  (encodings, leaf hashes, roots, signing bytes, header hash) that
  ``docs/receipt.md`` walks through.

Usage: ``python tools/gen_receipt_vectors.py [--out DIR] [--check]``; ``--check``
exits 1 if DIR differs from what would be written.
"""

from __future__ import annotations

import argparse
import copy
import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from ledger import merkle  # noqa: E402
from ledger.block import CommitCertificate, sign_commit  # noqa: E402
from ledger.chain import LedgerApp  # noqa: E402
from ledger.codec import encode  # noqa: E402
from ledger.codes import DERIVATION_DOMAIN, derive_code  # noqa: E402
from ledger.crypto import SecretKey, signing_bytes  # noqa: E402
from ledger.genesis import Member, Node, build_genesis  # noqa: E402
from ledger.model import DepositItem, PrivateMeta, make_deposit  # noqa: E402
from ledger.receipt import build_receipt  # noqa: E402
from ledger.state import Rules  # noqa: E402
from ledger.memory_store import MemoryStore  # noqa: E402
from ledger.store import BlockIndex  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "vectors" / "receipts"
CHAIN_ID = "evledger-vectors"
CREATED_AT = "2025-01-01T00:00:00Z"
T0 = 1_750_000_000_123  # 2025-06-15T15:06:40.123Z
VALIDATORS = (("court-node", "court"), ("notary-node", "notary"), ("carrier-node", "carrier"), ("bank-node", "bank"))
DISPLAY = {
    "court-node": "某市中级人民法院", "notary-node": "某市公证处", "carrier-node": "某电信运营商",
    "bank-node": "某商业银行", "shop": "示例电商平台", "copyright": "示例版权平台", "arbitration": "某仲裁委员会",
}
TARGET = (2, 2, 1)  # (height, entry index, item index) of the deposit the vectors are about


def key_of(name: str, salt: str = "") -> SecretKey:
    return SecretKey(hashlib.sha256(("evledger-receipt-vectors/%s%s" % (salt, name)).encode()).digest())


def make_genesis(chain_id: str = CHAIN_ID, salt: str = "", rekey: str | None = None):
    members = []
    for i, (name, inst) in enumerate(VALIDATORS):
        key = key_of(name, salt if rekey != name else salt + "rekeyed/")
        members.append(Member.make(name, ["validator"], key.public, display_name=DISPLAY[name], institution=inst,
                                   node=Node("127.0.0.1:%d" % (7301 + i), "http://127.0.0.1:%d" % (7401 + i))))
    members.append(Member.make("shop", ["depositor"], key_of("shop", salt).public, display_name=DISPLAY["shop"],
                               institution="shop-inc"))
    members.append(Member.make("copyright", ["depositor"], key_of("copyright", salt).public,
                               display_name=DISPLAY["copyright"], institution="copyright-center"))
    members.append(Member.make("arbitration", ["arbitration"], key_of("arbitration", salt).public,
                               display_name=DISPLAY["arbitration"], institution="arbitration-commission"))
    return build_genesis(chain_id, members, created_at=CREATED_AT, display_name="示例司法存证联盟链")


def _item(n: int, **fields: Any) -> DepositItem:
    base = dict(digest=hashlib.sha256(b"evidence-%d" % n).digest(), sm3=None, category="general", case=None,
                public_meta={}, private_commitment=None)
    base.update(fields)
    return DepositItem(**base)


def _single(genesis, depositor: str, n: int, time: int):
    return make_deposit([_item(n)], depositor, time, key_of(depositor), genesis.chain_id)


def target_batch(genesis, time: int):
    """The three-item batch holding the target item (index 1)."""
    private = PrivateMeta(salt=bytes(range(16)), fields={"buyer": "张三", "order_amount_fen": 129900})
    items = [
        _item(20, category="ecommerce-order"),
        _item(21, sm3=hashlib.sha256(b"stand-in for the SM3 digest of evidence-21").digest(),
              category="ecommerce-order", case="(2025)京0105民初12345号",
              public_meta={"order_id": "SO-2025-0615-0042", "pages": 3, "ledger_ref": 2**60 + 7},
              private_commitment=private.commitment()),
        _item(22, category="chat-record"),
    ]
    return make_deposit(items, "shop", time, key_of("shop"), genesis.chain_id, private=[None, private, None])


def build_chain(signers: int = 4):
    """(genesis, store) of the vector chain; each certificate has ``signers`` signatures."""
    genesis = make_genesis()
    store = MemoryStore()
    app = LedgerApp(Rules.from_genesis(genesis), store, genesis.validator_set().hash())
    tip = app.tip_of_store()
    blocks = [
        [_single(genesis, "shop", 1, T0 - 61_000), _single(genesis, "copyright", 2, T0 - 61_000),
         _single(genesis, "shop", 3, T0 - 60_500)],
        [_single(genesis, "copyright", 10, T0 - 2000), _single(genesis, "shop", 11, T0 - 1900),
         target_batch(genesis, T0 - 1500), _single(genesis, "copyright", 12, T0 - 1200),
         _single(genesis, "shop", 13, T0 - 1000)],
        [_single(genesis, "shop", 30, T0 + 29_000)],
    ]
    times = [T0 - 60_000, T0, T0 + 30_000]
    for height, (records, ts) in enumerate(zip(blocks, times), 1):
        proposer = VALIDATORS[(height - 1) % 4][0]
        block, new_tip, rejected = app.build_reporting(tip, records, ts, 0, proposer)
        assert not rejected and len(block.records) == len(records), rejected
        names = sorted(name for name, _ in VALIDATORS)[:signers]
        sigs = tuple((n, sign_commit(key_of(n), block.header)) for n in names)
        store.append(block, CommitCertificate(block.header.hash(), sigs),
                     BlockIndex.from_effects(height, new_tip.effects))
        tip = new_tip
    return genesis, store


def target_code(genesis, store, index: int = TARGET[2]):
    record = store.record(TARGET[0], TARGET[1])
    return derive_code(genesis.chain_id, record.entry.signature, index)


def fresh_receipt(signers: int = 4) -> tuple[Any, dict, Any]:
    """(genesis, receipt of the target item, store)."""
    genesis, store = build_chain(signers)
    return genesis, build_receipt(store, genesis, target_code(genesis, store).key), store


# ------------------------------------------------------------------ mutations


def flip(hex_text: str, byte: int = 0, bit: int = 0) -> str:
    raw = bytearray(bytes.fromhex(hex_text))
    raw[byte] ^= 1 << bit
    return raw.hex()


def _set(path: str, fn: Callable[[Any], Any]) -> Callable[[dict], None]:
    """Mutation applying ``fn`` to the value at a dotted path (``a.b[2].c``)."""
    def mutate(doc: dict) -> None:
        parts = path.replace("[", ".[").split(".")
        target = doc
        for part in parts[:-1]:
            target = target[int(part[1:-1])] if part.startswith("[") else target[part]
        last = parts[-1]
        key: Any = int(last[1:-1]) if last.startswith("[") else last
        target[key] = fn(target[key])
    return mutate


def _code_symbol_changed(code: str) -> str:
    i = 5  # a data symbol
    return code[:i] + ("1" if code[i] != "1" else "2") + code[i + 1:]


def cases(genesis, receipt: dict, store) -> list[tuple[str, str, Any, str, str | None, str, str | None]]:
    """(name, mutation, mutate(doc) or replacement, genesis file, file digest, verdict, failed_check)."""
    digest = receipt["item"]["digest"]
    other_digest = hashlib.sha256(b"a different file").hexdigest()
    out: list = [
        ("valid", "none", None, "genesis.json", None, "valid", None),
        ("valid-file-match", "none; the file's digest is given and equal", None, "genesis.json", digest, "match",
         None),
        ("valid-file-mismatch", "none; another file's digest is given", None, "genesis.json", other_digest,
         "mismatch", "digest"),
        ("wrong-genesis-other-consortium", "verified against another consortium's genesis", None,
         "genesis-other-consortium.json", None, "invalid", "chain_id"),
        ("wrong-genesis-validator-key-modified", "verified against a genesis where one validator's key differs", None,
         "genesis-rekeyed.json", None, "invalid", "genesis_fingerprint"),
    ]

    def add(name: str, mutation: str, fn: Any, failed: str | None, verdict: str = "invalid") -> None:
        out.append((name, mutation, fn, "genesis.json", None, verdict, failed))

    add("format-version-2", "format = evledger-receipt/2", _set("format", lambda v: "evledger-receipt/2"), "format")
    add("format-unknown-key", "an extra top-level key", lambda d: d.update(extra=1), "format")
    add("format-missing-key", "the display object removed", lambda d: d.pop("display"), "format")
    add("format-hex-uppercase", "item.digest in upper case", _set("item.digest", str.upper), "format")
    add("format-float-number", "header.timestamp written as a float", _set("header.timestamp", float), "format")
    add("format-integer-above-2-53", "display.deposited_at_ms = 2**53", _set("display.deposited_at_ms",
                                                                              lambda v: 2**53), "format")
    add("format-not-an-object", "the receipt is a JSON array", lambda d: [d], "format")
    add("format-duplicate-signer", "a certificate signature listed twice",
        _set("certificate.signatures", lambda s: [s[0]] + s), "format")
    add("chain-id-modified", "chain_id of another consortium", _set("chain_id", lambda v: "other-chain"), "chain_id")
    add("genesis-fingerprint-modified", "genesis_fingerprint bit 0 flipped",
        _set("genesis_fingerprint", flip), "genesis_fingerprint")
    add("code-symbol-changed", "one symbol of the code changed (checksum fails)",
        _set("code", _code_symbol_changed), "code_derivation")
    add("code-of-another-item", "the (valid) code of item 0 of the same batch",
        _set("code", lambda v: str(target_code(genesis, store, 0))), "code_derivation")
    add("item-digest-modified", "item.digest bit 0 flipped", _set("item.digest", flip), "item_inclusion")
    add("item-category-modified", "item.category changed", _set("item.category", lambda v: "general"),
        "item_inclusion")
    add("item-public-meta-modified", "item.public_meta.pages + 1", _set("item.public_meta.pages", lambda v: v + 1),
        "item_inclusion")
    add("item-private-commitment-modified", "item.private_commitment bit 0 flipped",
        _set("item.private_commitment", flip), "item_inclusion")
    add("item-index-plus-1", "item_proof.index + 1", _set("item_proof.index", lambda v: v + 1), "item_inclusion")
    add("item-size-plus-1", "item_proof.size + 1", _set("item_proof.size", lambda v: v + 1), "item_inclusion")
    for name in ("item", "entry", "history"):
        for i in range(len(receipt[name + "_proof"]["path"])):
            add("%s-path@%d-bit@0" % (name, i), "%s_proof.path[%d] bit 0 flipped" % (name, i),
                _set("%s_proof.path[%d]" % (name, i), flip), name + "_inclusion")
        add("%s-path-truncated" % name, "last element of %s_proof.path removed" % name,
            _set("%s_proof.path" % name, lambda p: p[:-1]), name + "_inclusion")
    add("entry-index-plus-1", "entry_proof.index + 1", _set("entry_proof.index", lambda v: v + 1), "entry_inclusion")
    add("history-index-plus-1", "history_proof.index + 1", _set("history_proof.index", lambda v: v + 1),
        "history_inclusion")
    add("entry-signature-modified", "entry.signature bit 0 flipped", _set("entry.signature", flip),
        "entry_signature")
    add("entry-client-time-plus-1", "entry.client_time + 1 ms", _set("entry.client_time", lambda v: v + 1),
        "entry_signature")
    add("entry-items-root-modified", "entry.items_root bit 0 flipped", _set("entry.items_root", flip),
        "entry_signature")
    add("entry-depositor-is-validator", "entry.depositor = court-node (a validator, not a depositor)",
        _set("entry.depositor", lambda v: "court-node"), "depositor_role")
    add("entry-depositor-unknown", "entry.depositor = nobody", _set("entry.depositor", lambda v: "nobody"),
        "depositor_role")
    header_expect = {"chain_id": "chain_id", "entries_root": "entry_inclusion", "entry_count": "entry_inclusion",
                     "history_size": "history_inclusion", "history_root": "history_inclusion",
                     "validator_set_hash": "validator_set"}
    for field_name, value in receipt["header"].items():
        if isinstance(value, int):
            name, fn = "header-%s-plus-1" % field_name.replace("_", "-"), lambda v: v + 1
        elif field_name in ("chain_id", "proposer"):
            replacement = {"chain_id": "other-chain", "proposer": "bank-node"}[field_name]
            name, fn = "header-%s-modified" % field_name.replace("_", "-"), lambda v, r=replacement: r
        else:
            name, fn = "header-%s-bit@0" % field_name.replace("_", "-"), flip
        add(name, "header.%s modified" % field_name, _set("header." + field_name, fn),
            header_expect.get(field_name, "header_hash"))
    add("certificate-header-hash-modified", "certificate.header_hash bit 0 flipped",
        _set("certificate.header_hash", flip), "header_hash")
    add("certificate-one-signature-modified", "one of four commit signatures bit-flipped: f = 1 bad signature is "
        "tolerated", _set("certificate.signatures[0].signature", flip), None, "valid")
    add("certificate-two-signatures-modified", "two of four commit signatures bit-flipped (2 valid < quorum 3)",
        lambda d: [_set("certificate.signatures[%d].signature" % i, flip)(d) for i in (0, 1)], "certificate_quorum")
    add("certificate-fewer-than-quorum", "only two of the four signatures kept",
        _set("certificate.signatures", lambda s: s[:2]), "certificate_quorum")
    add("certificate-signer-not-validator", "two signatures replaced by one from a non-validator member",
        _set("certificate.signatures", lambda s: [{"name": "arbitration", "signature": s[0]["signature"]}]
             + s[2:]), "certificate_quorum")
    add("validator-key-modified", "validator_sets[0].validators[0].public_key bit 0 flipped",
        _set("validator_sets[0].validators[0].public_key", flip), "validator_set")
    add("validator-set-hash-modified", "validator_sets[0].hash bit 0 flipped", _set("validator_sets[0].hash", flip),
        "validator_set")
    add("validator-set-membership-change", "a second set appended, proven by a kind this version does not know",
        lambda d: d["validator_sets"].append(dict(copy.deepcopy(d["validator_sets"][0]), from_height=2,
                                                  proof={"kind": "governance"})), "validator_set")
    add("display-deposited-at-modified", "display.deposited_at one hour earlier",
        _set("display.deposited_at", lambda v: v.replace("T15:", "T14:")), "display")
    add("display-height-modified", "display.height + 1", _set("display.height", lambda v: v + 1), "display")
    add("display-depositor-modified", "display.depositor_display_name replaced",
        _set("display.depositor_display_name", lambda v: "某知名大型企业"), "display")
    return out


# ---------------------------------------------------------------- worked example


def worked_example(genesis, receipt: dict, store) -> dict:
    height, e, i = TARGET
    record = store.record(height, e)
    header = store.header(height)
    item = record.items[i]
    body = record.entry.body
    item_leaves = [it.leaf_hash() for it in record.items]
    cert = store.certificate(height)
    vset = genesis.validator_set()
    return {
        "item_wire_encoding": item.encode().hex(),
        "item_leaf_hashes": [h.hex() for h in item_leaves],
        "items_root": merkle.root(item_leaves).hex(),
        "deposit_body_encoding": body.encode().hex(),
        "entry_signing_bytes": signing_bytes("entry/deposit", genesis.chain_id, body.encode()).hex(),
        "entry_wire_encoding": record.entry.encode().hex(),
        "entry_leaf_hash": record.entry.leaf_hash().hex(),
        "code_derivation_hash": hashlib.sha256(DERIVATION_DOMAIN + genesis.chain_id.encode() + b"\x00"
                                               + record.entry.signature + i.to_bytes(4, "big")).hexdigest(),
        "code": receipt["code"],
        "entries_root": header.entries_root.hex(),
        "history_root": header.history_root.hex(),
        "header_wire_encoding": header.encode().hex(),
        "header_hash": header.hash().hex(),
        "commit_signing_bytes": signing_bytes("block/commit", genesis.chain_id, header.hash()).hex(),
        "validator_set_encoding": encode(vset.wire()).hex(),
        "validator_set_hash": vset.hash().hex(),
        "quorum": vset.quorum,
        "certificate_signers": [n for n, _ in cert.signatures],
        "genesis_fingerprint": genesis.fingerprint(),
    }


def render(doc: Any) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def build() -> dict[str, str]:
    genesis, receipt, store = fresh_receipt()
    files = {
        "genesis.json": genesis.to_json(),
        "genesis-other-consortium.json": make_genesis("other-consortium", salt="other/").to_json(),
        "genesis-rekeyed.json": make_genesis(rekey="bank-node").to_json(),
        "worked-example.json": render(worked_example(genesis, receipt, store)),
    }
    for name, mutation, fn, genesis_file, file_digest, verdict, failed in cases(genesis, receipt, store):
        doc = copy.deepcopy(receipt)
        if fn is not None:
            result = fn(doc)
            if isinstance(result, list) and name == "format-not-an-object":
                doc = result
        files[name + ".json"] = render({
            "name": name, "mutation": mutation, "genesis": genesis_file, "file_digest": file_digest,
            "expected": {"verdict": verdict, "failed_check": failed}, "receipt": doc,
        })
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--check", action="store_true", help="compare instead of writing")
    args = parser.parse_args(argv)
    wanted = build()
    existing = {p.name for p in args.out.glob("*.json")} if args.out.is_dir() else set()
    if args.check:
        stale = sorted(existing ^ set(wanted))
        changed = sorted(n for n in wanted if n in existing and (args.out / n).read_text(encoding="utf-8") != wanted[n])
        for n in stale + changed:
            print("differs: %s" % n, file=sys.stderr)
        return 1 if stale or changed else 0
    args.out.mkdir(parents=True, exist_ok=True)
    for n in existing - set(wanted):
        (args.out / n).unlink()
    for n, text in wanted.items():
        (args.out / n).write_text(text, encoding="utf-8")
    print("wrote %d files to %s" % (len(wanted), args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
