"""Receipts: one JSON document that proves a deposit offline, with only ``genesis.json``.

Theory of operation
-------------------
A litigant holding a file and a deposit code must be able to prove, years later
and without trusting any node, that the file is exactly what was deposited, when
and by whom.  :func:`build_receipt` collects, from one node's store, everything
that proof needs (``docs/receipt.md`` specifies every field):

* the deposit **item** (its public wire fields; private metadata only as the
  salted commitment it already is) and its inclusion proof in the batch's
  ``items_root``;
* the deposit **entry** body and the depositor's signature over it;
* the entry's inclusion proofs in its block (``entries_root``) and in the history
  tree as of that block (``history_root``);
* the block **header** and its **commit certificate** (every signature);
* the **validator sets** in office from genesis to that height, each with the
  proof of how it came to office.  This version has no membership changes
  (governance entries are refused), so the list holds the genesis set alone,
  whose hash must equal the header's ``validator_set_hash``; a later version
  appends sets proven by certified governance entries;
* the chain id, the genesis fingerprint and the printed deposit code;
* ``display`` fields for people (time in RFC 3339 and ms, depositor and category
  display names, height) which the verifier recomputes and compares.

The builder is pure apart from store reads, and self-checking: it runs
:func:`verify_receipt` on what it built and refuses to hand out a receipt that
does not verify (a store or genesis that disagrees with the chain is the node's
fault, reported as :class:`~ledger.errors.CorruptionError`).

JSON spelling.  Nothing in a receipt is trusted as JSON: every value converts back
to the typed wire object it came from (``DepositItem``, ``Deposit``, ``Entry``,
``BlockHeader``, the validator set), driven by those objects' own ``SPEC`` tables
(``ledger.wire``), so a receipt field and the bytes it stands for cannot drift
apart.  Bytes are lowercase hex of exactly the wire length; integers are JSON
numbers in ``[0, 2**53 - 1]`` (exact in every JSON implementation), except
metadata integers beyond that range, written ``{"int": "<decimal>"}``; ``null``
is nil.  :func:`parse_receipt` checks the shape strictly (unknown or missing
keys, wrong types, upper-case hex, floats, booleans for integers are refused
with a :class:`FormatError` naming the JSON path).

The verification algorithm lives in ``ledger.receipt_verify`` and is re-exported
here (``verify_receipt``, ``Verdict``, ``Check``, ``CHECKS``).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import merkle
from .block import MAX_VALIDATORS, BlockHeader
from .codes import DepositCode
from .errors import CorruptionError, InputError
from .jsondoc import format_time
from .model import Deposit, DepositItem, Entry
from .wire import INT63, INT64_MIN, KINDS

if TYPE_CHECKING:  # pragma: no cover
    from .genesis import Genesis
    from .store import Store

__all__ = ["CHECKS", "FORMAT", "Check", "FormatError", "Parsed", "Verdict", "build_receipt", "load_receipt_json",
           "parse_receipt", "receipt_json", "receipt_summary", "verify_receipt"]

FORMAT = "evledger-receipt/1"
MAX_SAFE_INT = 2**53 - 1
MAX_RECEIPT_BYTES = 1024 * 1024
MAX_PROOF = 64  # an RFC 9162 inclusion proof in a tree of < 2**64 leaves has at most 64 hashes
MAX_VALIDATOR_SETS = 64
MAX_DISPLAY_TEXT = 256

TOP_KEYS = ("format", "chain_id", "genesis_fingerprint", "code", "item", "item_proof", "entry", "entry_proof",
            "history_proof", "header", "certificate", "validator_sets", "display")
PROOF_KEYS = ("index", "size", "path")
DISPLAY_KEYS = ("height", "deposited_at", "deposited_at_ms", "depositor_display_name", "depositor_institution",
                "category_display_name", "category_display_name_en")
VSET_KEYS = ("from_height", "proof", "validators", "hash")
CODE_RE = re.compile(r"EV(-[0-9A-HJKMNP-TV-Z]{5}){5}")
_BIG_INT_RE = re.compile(r"-?[1-9][0-9]{0,18}")


class FormatError(InputError):
    """A receipt field is missing, unknown or of the wrong type; ``field`` is its JSON path."""

    reason = "malformed_receipt"


def _fail(where: str, message: str) -> FormatError:
    return FormatError("%s: %s" % (where, message), field=where)


# ------------------------------------------------------------ JSON <-> wire values


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "boolean", int: "integer", float: "number", str: "string", list: "array",
            dict: "object"}.get(type(value), type(value).__name__)


def hex_bytes(value: Any, where: str, size: int) -> bytes:
    """Exactly ``size`` bytes written as ``2 * size`` lowercase hex digits."""
    if type(value) is not str or len(value) != 2 * size or not re.fullmatch("[0-9a-f]*", value):
        shown = "%d characters" % len(value) if type(value) is str else _jtype(value)
        raise _fail(where, "expected %d lowercase hex characters (%d bytes), got %s" % (2 * size, size, shown))
    return bytes.fromhex(value)


def safe_int(value: Any, where: str, lo: int = 0, hi: int = MAX_SAFE_INT) -> int:
    if type(value) is not int:
        raise _fail(where, "expected an integer, got %s" % _jtype(value))
    if not lo <= value <= hi:
        raise _fail(where, "%d is outside [%d, %d]" % (value, lo, hi))
    return value


def _meta_from_json(value: Any, where: str) -> dict:
    if type(value) is not dict:
        raise _fail(where, "expected an object, got %s" % _jtype(value))
    out = {}
    for key, item in value.items():
        at = "%s.%s" % (where, key)
        if type(item) is str:
            out[key] = item
        elif type(item) is int:
            out[key] = safe_int(item, at, -MAX_SAFE_INT, MAX_SAFE_INT)
        elif type(item) is dict and list(item) == ["int"] and type(item["int"]) is str \
                and _BIG_INT_RE.fullmatch(item["int"]):
            big = int(item["int"])
            if -MAX_SAFE_INT <= big <= MAX_SAFE_INT or not INT64_MIN <= big <= INT63:
                raise _fail(at, "{\"int\": ...} is only for 64-bit integers beyond +-(2**53 - 1); "
                            "write %s as a JSON number" % item["int"] if -MAX_SAFE_INT <= big <= MAX_SAFE_INT
                            else "integer out of the 64-bit range")
            out[key] = big
        else:
            raise _fail(at, "expected a string, an integer or {\"int\": \"<decimal>\"}, got %s" % _jtype(item))
    return out


def value_from_json(kind: str, value: Any, where: str) -> Any:
    """The wire value of a JSON field of wire ``kind`` (``ledger.wire.KINDS``), checked."""
    if kind in ("hash", "signature", "salt"):
        value = hex_bytes(value, where, {"hash": 32, "signature": 64, "salt": 16}[kind])
    elif kind == "opt_hash":
        value = None if value is None else hex_bytes(value, where, 32)
    elif kind in ("uint", "time_ms", "count"):
        value = safe_int(value, where)
    elif kind == "meta":
        value = _meta_from_json(value, where)
    elif type(value) is not str and not (kind.startswith("opt_") and value is None):
        raise _fail(where, "expected a string, got %s" % _jtype(value))
    try:
        return KINDS[kind](value, where)
    except ValueError as exc:  # DecodeError names ``where`` already
        raise _fail(where, str(exc).split(": ", 1)[-1]) from None


def value_to_json(kind: str, value: Any) -> Any:
    """The JSON spelling of a wire value of ``kind`` (inverse of :func:`value_from_json`)."""
    if value is None or type(value) is str:
        return value
    if type(value) is bytes:
        return value.hex()
    if type(value) is int:
        if not 0 <= value <= MAX_SAFE_INT:
            raise ValueError("integer %d does not fit a JSON number exactly" % value)
        return value
    if kind == "meta":
        return {k: v if type(v) is str or -MAX_SAFE_INT <= v <= MAX_SAFE_INT else {"int": str(v)}
                for k, v in dict(value).items()}
    raise TypeError("no JSON spelling for %s" % type(value).__name__)


def typed_to_json(obj: Any) -> dict:
    """A typed wire object (``DepositItem``, ``Deposit``, ``BlockHeader``) as a JSON object."""
    return {name: value_to_json(kind, getattr(obj, name)) for name, kind in obj.SPEC}


# ---------------------------------------------------------------------- parsing


def _object(value: Any, where: str, keys: tuple[str, ...]) -> dict:
    if type(value) is not dict:
        raise _fail(where, "expected an object, got %s" % _jtype(value))
    for key in value:
        if key not in keys:
            raise _fail("%s.%s" % (where, key) if where != "$" else str(key),
                        "unknown key (valid: %s)" % ", ".join(keys))
    for key in keys:
        if key not in value:
            raise _fail("%s.%s" % (where, key) if where != "$" else key, "missing required key")
    return value


def _list(value: Any, where: str, max_len: int, min_len: int = 0) -> list:
    if type(value) is not list:
        raise _fail(where, "expected an array, got %s" % _jtype(value))
    if not min_len <= len(value) <= max_len:
        raise _fail(where, "expected %d to %d elements, got %d" % (min_len, max_len, len(value)))
    return value


def _text(value: Any, where: str) -> str:
    if type(value) is not str or not 0 < len(value) <= MAX_DISPLAY_TEXT:
        raise _fail(where, "expected a string of 1 to %d characters" % MAX_DISPLAY_TEXT)
    return value


def _typed(cls: Any, doc: Any, where: str, extra: tuple[str, ...] = ()) -> tuple[Any, dict]:
    names = tuple(name for name, _ in cls.SPEC)
    doc = _object(doc, where, names + extra)
    values = {name: value_from_json(kind, doc[name], "%s.%s" % (where, name)) for name, kind in cls.SPEC}
    return cls(**values), doc


@dataclass(frozen=True, slots=True)
class Proof:
    """An inclusion proof as given in the receipt (not yet verified)."""

    index: int
    size: int
    path: tuple[bytes, ...]


def _proof(doc: Any, where: str) -> Proof:
    doc = _object(doc, where, PROOF_KEYS)
    path = _list(doc["path"], where + ".path", MAX_PROOF)
    return Proof(safe_int(doc["index"], where + ".index"), safe_int(doc["size"], where + ".size"),
                 tuple(hex_bytes(h, "%s.path[%d]" % (where, i), 32) for i, h in enumerate(path)))


def _named_pairs(value: Any, where: str, second: str, size: int, min_len: int) -> tuple[tuple[str, bytes], ...]:
    """``[{"name", second}, ...]`` strictly sorted by name (so names are distinct)."""
    out = []
    for i, item in enumerate(_list(value, where, MAX_VALIDATORS, min_len)):
        at = "%s[%d]" % (where, i)
        item = _object(item, at, ("name", second))
        name = value_from_json("name", item["name"], at + ".name")
        if out and name <= out[-1][0]:
            raise _fail(at + ".name", "must be sorted by name, each name once (%r after %r)" % (name, out[-1][0]))
        out.append((name, hex_bytes(item[second], "%s.%s" % (at, second), size)))
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ValidatorEpoch:
    """One element of ``validator_sets``: a set in office from ``from_height`` on."""

    from_height: int
    kind: str
    members: tuple[tuple[str, bytes], ...]
    hash: bytes


def _epoch(doc: Any, where: str) -> ValidatorEpoch:
    doc = _object(doc, where, VSET_KEYS)
    proof = doc["proof"]
    if type(proof) is not dict or type(proof.get("kind")) is not str:
        raise _fail(where + ".proof", "expected an object with a string \"kind\"")
    if proof["kind"] == "genesis":
        _object(proof, where + ".proof", ("kind",))
    return ValidatorEpoch(safe_int(doc["from_height"], where + ".from_height"), proof["kind"],
                          _named_pairs(doc["validators"], where + ".validators", "public_key", 32, 1),
                          hex_bytes(doc["hash"], where + ".hash", 32))


@dataclass(frozen=True, slots=True)
class Parsed:
    """A receipt whose every field is well-formed, as typed wire objects (nothing verified)."""

    chain_id: str
    genesis_fingerprint: bytes
    code: str
    item: DepositItem
    item_proof: Proof
    entry: Entry
    entry_proof: Proof
    history_proof: Proof
    header: BlockHeader
    certificate_hash: bytes
    signatures: tuple[tuple[str, bytes], ...]
    validator_sets: tuple[ValidatorEpoch, ...]
    display: dict


def parse_receipt(doc: Any) -> Parsed:
    """Check the shape and every field's type; raise :class:`FormatError` naming the field."""
    doc = _object(doc, "$", TOP_KEYS)
    if doc["format"] != FORMAT:
        raise _fail("format", "unsupported receipt format %r (this verifier reads %r)"
                    % (doc["format"] if type(doc["format"]) is str else _jtype(doc["format"]), FORMAT))
    chain_id = value_from_json("chain_id", doc["chain_id"], "chain_id")
    fingerprint = hex_bytes(doc["genesis_fingerprint"], "genesis_fingerprint", 32)
    code = doc["code"]
    if type(code) is not str or not CODE_RE.fullmatch(code):
        raise _fail("code", "expected a printed deposit code EV-XXXXX-XXXXX-XXXXX-XXXXX-XXXXX (upper case)")
    item, _ = _typed(DepositItem, doc["item"], "item")
    body, entry_doc = _typed(Deposit, doc["entry"], "entry", ("signature",))
    signature = value_from_json("signature", entry_doc["signature"], "entry.signature")
    header, _ = _typed(BlockHeader, doc["header"], "header")
    cert = _object(doc["certificate"], "certificate", ("header_hash", "signatures"))
    epochs = _list(doc["validator_sets"], "validator_sets", MAX_VALIDATOR_SETS, 1)
    display = _object(doc["display"], "display", DISPLAY_KEYS)
    for key in DISPLAY_KEYS:
        at = "display." + key
        if key in ("height", "deposited_at_ms"):
            safe_int(display[key], at)
        else:
            _text(display[key], at)
    return Parsed(
        chain_id=chain_id, genesis_fingerprint=fingerprint, code=code,
        item=item, item_proof=_proof(doc["item_proof"], "item_proof"),
        entry=Entry(body, signature), entry_proof=_proof(doc["entry_proof"], "entry_proof"),
        history_proof=_proof(doc["history_proof"], "history_proof"), header=header,
        certificate_hash=hex_bytes(cert["header_hash"], "certificate.header_hash", 32),
        signatures=_named_pairs(cert["signatures"], "certificate.signatures", "signature", 64, 0),
        validator_sets=tuple(_epoch(e, "validator_sets[%d]" % i) for i, e in enumerate(epochs)),
        display=dict(display),
    )


def load_receipt_json(data: bytes | str) -> Any:
    """Strict JSON text -> document: at most 1 MiB, no duplicate keys, no NaN/Infinity."""
    if len(data) > MAX_RECEIPT_BYTES:
        raise _fail("$", "%d bytes exceed the limit of %d" % (len(data), MAX_RECEIPT_BYTES))

    def pairs(items: list) -> dict:
        out: dict = {}
        for key, value in items:
            if key in out:
                raise _fail("$", "duplicate key %r in a JSON object" % key[:40])
            out[key] = value
        return out

    def constant(name: str) -> Any:
        raise _fail("$", "%s is not allowed" % name)

    try:
        text = data.decode("utf-8") if isinstance(data, (bytes, bytearray)) else data
        return json.loads(text, object_pairs_hook=pairs, parse_constant=constant)
    except UnicodeDecodeError:
        raise _fail("$", "not UTF-8 text") from None
    except RecursionError:
        raise _fail("$", "JSON nested too deeply") from None
    except json.JSONDecodeError as exc:
        raise _fail("$", "invalid JSON at line %d, column %d: %s" % (exc.lineno, exc.colno, exc.msg)) from None


def summary_of(p: Parsed) -> dict:
    """Display fields of a parsed receipt (see ``ledger.receipt.receipt_summary``)."""
    return {
        "code": p.code,
        "digest": p.item.digest.hex(),
        "deposited_at": p.display["deposited_at"],
        "deposited_at_ms": p.display["deposited_at_ms"],
        "depositor": p.entry.body.depositor,
        "depositor_display_name": p.display["depositor_display_name"],
        "depositor_institution": p.display["depositor_institution"],
        "category": p.item.category,
        "category_display_name": p.display["category_display_name"],
        "category_display_name_en": p.display["category_display_name_en"],
        "case": p.item.case,
        "height": p.header.height,
        "chain_id": p.chain_id,
    }


# --------------------------------------------------------------------- build


def _proof_json(index: int, size: int, path: list[bytes]) -> dict:
    return {"index": index, "size": size, "path": [h.hex() for h in path]}


def build_receipt(store: "Store", genesis: "Genesis", code_key: bytes) -> dict:
    """The receipt (a JSON-ready ``dict``) of the deposit item whose code key is ``code_key``.

    ``code_key`` is the 25-byte compact code (``DepositCode.key``).  Raises
    ``InputError`` with ``reason="not_found"`` when no committed item has that code,
    ``CorruptionError`` if the stored chain does not yield a receipt that verifies
    against ``genesis``.
    """
    location = store.locate(code_key)
    if location is None:
        raise InputError("no committed deposit has the code %s" % code_key.decode("ascii", "replace"),
                         reason="not_found", field="code")
    height, entry_index, item_index = location
    header, certificate = store.header(height), store.certificate(height)
    record = store.record(height, entry_index)
    if header is None or certificate is None or record is None or not isinstance(record.entry.body, Deposit) \
            or not 0 <= item_index < len(record.items):
        raise CorruptionError("code %s points at %r, which holds no such deposit item"
                              % (code_key.decode("ascii", "replace"), tuple(location)))
    entry, item = record.entry, record.items[item_index]
    history_index = store.history_index(height, entry_index)
    validators = genesis.validator_set()
    member = genesis.member(entry.body.depositor)
    category = next((c for c in genesis.categories if c.id == item.category), None)
    receipt = {
        "format": FORMAT,
        "chain_id": genesis.chain_id,
        "genesis_fingerprint": genesis.fingerprint(),
        "code": str(DepositCode.from_compact(code_key.decode("ascii"))),
        "item": typed_to_json(item),
        "item_proof": _proof_json(item_index, len(record.items),
                                  merkle.inclusion_proof(item_index, [it.leaf_hash() for it in record.items])),
        "entry": dict(typed_to_json(entry.body), signature=entry.signature.hex()),
        "entry_proof": _proof_json(entry_index, header.entry_count, store.block_inclusion_proof(height, entry_index)),
        "history_proof": _proof_json(history_index, header.history_size,
                                     store.inclusion_proof(history_index, header.history_size)),
        "header": typed_to_json(header),
        "certificate": {
            "header_hash": certificate.header_hash.hex(),
            "signatures": [{"name": name, "signature": sig.hex()} for name, sig in certificate.signatures],
        },
        "validator_sets": [{
            "from_height": 1,
            "proof": {"kind": "genesis"},
            "validators": [{"name": name, "public_key": key.hex} for name, key in validators.members],
            "hash": validators.hash().hex(),
        }],
        "display": {
            "height": value_to_json("uint", header.height),
            "deposited_at": format_time(header.timestamp),
            "deposited_at_ms": value_to_json("time_ms", header.timestamp),
            "depositor_display_name": member.display_name if member else entry.body.depositor,
            "depositor_institution": member.institution if member else entry.body.depositor,
            "category_display_name": category.display_name if category else item.category,
            "category_display_name_en": category.display_name_en if category else item.category,
        },
    }
    from .receipt_verify import verify_receipt

    verdict = verify_receipt(receipt, genesis)
    if verdict.verdict != "valid":
        raise CorruptionError("the receipt built for %s does not verify against this genesis (%s: %s)"
                              % (receipt["code"], verdict.failed_check, verdict.message), reason="bad_receipt")
    return receipt


def receipt_summary(receipt: Any) -> dict:
    """What a person reads first: code, digest, time, depositor, category, height.

    Taken from the receipt as given, *not verified*: show it beside a
    :func:`verify_receipt` verdict (``Verdict.summary`` is the same dict).  Raises
    :class:`FormatError` (``reason="malformed_receipt"``) naming the field when the
    receipt is malformed.
    """
    if isinstance(receipt, (bytes, bytearray, str)):
        receipt = load_receipt_json(receipt)
    return summary_of(parse_receipt(receipt))


def receipt_json(receipt: dict) -> str:
    """The receipt as pretty UTF-8 JSON text (what ``evledger receipt`` writes)."""
    return json.dumps(receipt, indent=2, ensure_ascii=False) + "\n"


# ------------------------------------------------------------------ verifier

_VERIFY_API = frozenset({"CHECKS", "Check", "Verdict", "verify_receipt"})


def __getattr__(name: str) -> Any:
    # Lazy re-export (PEP 562, as in ledger.merkle): ledger.receipt_verify imports
    # this module, so importing it eagerly here would make the import order matter.
    if name in _VERIFY_API:
        from . import receipt_verify

        return getattr(receipt_verify, name)
    raise AttributeError("module %r has no attribute %r" % (__name__, name))
