"""Receipts, verifier side: the offline verification algorithm and its verdicts.

Theory of operation
-------------------
A receipt (``"format": "evledger-receipt/1"``, specified field by field in
``docs/receipt.md``) is first parsed into typed wire objects by
``ledger.receipt.parse_receipt`` (check ``format``); every later check re-encodes
those objects with ``ledger.codec`` and hashes or signature-checks them.

Verification (:func:`verify_receipt`) runs the checks of :data:`CHECKS` in that
fixed order and stops at the first failure.  The order goes from the receipt's
anchor in the verifier's own ``genesis.json`` up the proof chain a litigant
follows: the deposit is signed by a depositor of this consortium, the item is in
the signed batch, the code belongs to that item, the entry is in the block's
entries tree and history tree, the block's validator set is the one in office,
the header is the one certified, and a quorum of that set signed it.  Each check
only ever *recomputes* and compares; the human-facing ``display`` fields are
checked against what the signed data and the genesis say, never believed.

Errors by fault: a malformed or hostile receipt is never an exception, it is an
``invalid`` :class:`Verdict` naming the failed check and the field; passing
something that is not a genesis or a 32-byte digest is caller misuse and raises.
This module is pure: no I/O, no clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from . import merkle
from .block import ValidatorSet, quorum
from .codes import derive_code, parse_code
from .errors import CodeError, ProofError, SignatureError
from .jsondoc import format_time
from .receipt import FORMAT, FormatError, Parsed, Proof, load_receipt_json, parse_receipt, summary_of

if TYPE_CHECKING:  # pragma: no cover
    from .genesis import Genesis

__all__ = ["CHECKS", "Check", "Verdict", "verify_receipt"]

#: Check ids in the order they run; a verdict names the first that failed.
CHECKS: tuple[str, ...] = (
    "format",
    "chain_id",
    "genesis_fingerprint",
    "depositor_role",
    "entry_signature",
    "item_inclusion",
    "code_derivation",
    "entry_inclusion",
    "history_inclusion",
    "validator_set",
    "header_hash",
    "certificate_quorum",
    "display",
    "digest",
)


# -------------------------------------------------------------------- verdicts


@dataclass(frozen=True, slots=True)
class Check:
    """One verification step: ``status`` is ``passed``, ``failed`` or ``skipped``."""

    id: str
    status: str
    message: str

    def to_dict(self) -> dict:
        return {"id": self.id, "status": self.status, "message": self.message}


@dataclass(frozen=True, slots=True)
class Verdict:
    """The outcome of :func:`verify_receipt`.

    ``verdict``: ``match`` (file given, equal), ``mismatch`` (file given, receipt
    valid, digest differs; ``failed_check == "digest"``), ``valid`` (no file,
    receipt valid) or ``invalid`` (``failed_check`` names the first failed check).
    ``checks`` lists every id of :data:`CHECKS` in order with its status.
    ``summary`` is :func:`summary_of` the receipt once its format is valid (its
    values are proven only when the verdict is not ``invalid``).
    """

    verdict: str
    failed_check: str | None
    message: str
    checks: tuple[Check, ...]
    summary: dict | None = None

    @property
    def ok(self) -> bool:
        """True for ``match`` and ``valid``."""
        return self.verdict in ("match", "valid")

    def to_dict(self) -> dict:
        return {"verdict": self.verdict, "failed_check": self.failed_check, "message": self.message,
                "checks": [c.to_dict() for c in self.checks], "summary": self.summary}


class _Failed(Exception):
    pass


@dataclass
class _Context:
    p: Parsed
    genesis: Any
    file_digest: bytes | None
    vset: ValidatorSet | None = None
    extra: dict = field(default_factory=dict)


def _check_chain_id(c: _Context) -> str:
    want = c.genesis.chain_id
    if c.p.chain_id != want:
        raise _Failed("receipt is for chain %r, this genesis is chain %r (another consortium)" % (c.p.chain_id, want))
    if c.p.header.chain_id != want:
        raise _Failed("header.chain_id is %r, this genesis is chain %r" % (c.p.header.chain_id, want))
    return "chain %r" % want


def _check_fingerprint(c: _Context) -> str:
    want = c.genesis.fingerprint()
    if c.p.genesis_fingerprint.hex() != want:
        raise _Failed("receipt names genesis %s, the given genesis is %s" % (c.p.genesis_fingerprint.hex(), want))
    return "genesis %s" % want


def _check_depositor(c: _Context) -> str:
    name = c.p.entry.body.depositor
    member = c.genesis.member(name)
    if member is None:
        raise _Failed("depositor %r is not a member of this consortium" % name)
    if "depositor" not in member.roles:
        raise _Failed("member %r does not hold the depositor role (roles: %s)" % (name, ", ".join(member.roles)))
    return "%r (%s) holds the depositor role" % (name, member.display_name)


def _check_signature(c: _Context) -> str:
    member = c.genesis.member(c.p.entry.body.depositor)
    try:
        c.p.entry.verify(member.public_key, c.genesis.chain_id)
    except SignatureError:
        raise _Failed("the deposit signature does not verify under %r's key %s"
                      % (member.name, member.public_key.fingerprint())) from None
    return "Ed25519 signature of %r over the deposit batch verifies" % member.name


def _inclusion(leaf: bytes, proof: Proof, size: int, root: bytes, what: str, size_name: str) -> None:
    if proof.size != size:
        raise _Failed("%s size %d differs from %s %d" % (what, proof.size, size_name, size))
    try:
        merkle.verify_inclusion(leaf, proof.index, proof.size, list(proof.path), root)
    except ProofError as exc:
        raise _Failed("%s: %s" % (what, exc)) from None


def _check_item(c: _Context) -> str:
    body, proof = c.p.entry.body, c.p.item_proof
    _inclusion(c.p.item.leaf_hash(), proof, body.item_count, body.items_root, "item_proof", "entry.item_count")
    return "item %d of %d is in the signed batch (items_root %s)" % (proof.index, proof.size, body.items_root.hex())


def _check_code(c: _Context) -> str:
    try:
        stated = parse_code(c.p.code)
    except CodeError as exc:
        raise _Failed("code %s: %s" % (c.p.code, exc)) from None
    derived = derive_code(c.genesis.chain_id, c.p.entry.signature, c.p.item_proof.index)
    if stated != derived:
        raise _Failed("code %s is not the code of item %d of this deposit (%s)" % (c.p.code, c.p.item_proof.index,
                                                                                  derived))
    return "%s is derived from the deposit signature and item index %d" % (derived, c.p.item_proof.index)


def _check_entry(c: _Context) -> str:
    h = c.p.header
    _inclusion(c.p.entry.leaf_hash(), c.p.entry_proof, h.entry_count, h.entries_root, "entry_proof",
               "header.entry_count")
    return "entry %d of %d is in block %d (entries_root %s)" % (c.p.entry_proof.index, h.entry_count, h.height,
                                                              h.entries_root.hex())


def _check_history(c: _Context) -> str:
    h, proof = c.p.header, c.p.history_proof
    want = h.history_size - h.entry_count + c.p.entry_proof.index
    if proof.index != want:
        raise _Failed("history_proof.index %d, but entry %d of a block ending at history size %d with %d entries "
                      "is at %d" % (proof.index, c.p.entry_proof.index, h.history_size, h.entry_count, want))
    _inclusion(c.p.entry.leaf_hash(), proof, h.history_size, h.history_root, "history_proof", "header.history_size")
    return "entry is leaf %d of the history tree of size %d (history_root %s)" % (proof.index, h.history_size,
                                                                                 h.history_root.hex())


def _check_validators(c: _Context) -> str:
    epochs, height = c.p.validator_sets, c.p.header.height
    first = epochs[0]
    if first.kind != "genesis" or first.from_height != 1:
        raise _Failed("validator_sets[0] must be the genesis set (proof kind \"genesis\", from_height 1)")
    for i, epoch in enumerate(epochs[1:], 1):
        raise _Failed("validator_sets[%d]: membership changes (proof kind %r) are not supported by %s"
                      % (i, epoch.kind, FORMAT))
    genesis_set = c.genesis.validator_set()
    stated = tuple((name, key.raw) for name, key in genesis_set.members)
    if first.members != stated:
        raise _Failed("validator_sets[0].validators differ from the validators of this genesis")
    if first.hash != genesis_set.hash():
        raise _Failed("validator_sets[0].hash is not the hash of its validators (%s)" % genesis_set.hash().hex())
    if c.p.header.validator_set_hash != genesis_set.hash():
        raise _Failed("header.validator_set_hash %s is not the hash of the validators in office at height %d (%s)"
                      % (c.p.header.validator_set_hash.hex(), height, genesis_set.hash().hex()))
    c.vset = genesis_set
    return "%d validators in office at height %d (genesis set, hash %s), quorum %d" % (
        genesis_set.n, height, genesis_set.hash().hex(), genesis_set.quorum)


def _check_header(c: _Context) -> str:
    computed = c.p.header.hash()
    if computed != c.p.certificate_hash:
        raise _Failed("the header hashes to %s, the certificate is for %s" % (computed.hex(),
                                                                           c.p.certificate_hash.hex()))
    return "header of block %d hashes to %s" % (c.p.header.height, computed.hex())


def _check_quorum(c: _Context) -> str:
    vset, header_hash = c.vset, c.p.certificate_hash
    valid, ignored = [], []
    for name, sig in c.p.signatures:
        key = vset.key(name)
        if key is None:
            ignored.append("%s (not a validator in office)" % name)
            continue
        try:
            key.verify("block/commit", c.genesis.chain_id, header_hash, sig)
        except SignatureError:
            ignored.append("%s (signature does not verify)" % name)
            continue
        valid.append(name)
    need = quorum(vset.n)
    note = "; ignored: %s" % ", ".join(ignored) if ignored else ""
    if len(valid) < need:
        raise _Failed("only %d valid commit signatures of %d validators, %d needed%s" % (len(valid), vset.n, need,
                                                                                       note))
    return "%d of %d validators signed the block (quorum %d): %s%s" % (len(valid), vset.n, need, ", ".join(valid),
                                                                      note)


def _rfc3339(ms: int) -> str:
    try:
        return format_time(ms)
    except (ValueError, OverflowError, OSError):
        raise _Failed("header.timestamp %d is not a representable date" % ms) from None


def _check_display(c: _Context) -> str:
    d, g, p = c.p.display, c.genesis, c.p
    member = g.member(p.entry.body.depositor)
    category = next((cat for cat in g.categories if cat.id == p.item.category), None)
    if category is None:
        raise _Failed("item.category %r is not a category of this genesis" % p.item.category)
    expected = {
        "height": p.header.height,
        "deposited_at": _rfc3339(p.header.timestamp),
        "deposited_at_ms": p.header.timestamp,
        "depositor_display_name": member.display_name,
        "depositor_institution": member.institution,
        "category_display_name": category.display_name,
        "category_display_name_en": category.display_name_en,
    }
    for key, want in expected.items():
        if d[key] != want:
            raise _Failed("display.%s is %r, the signed data and genesis say %r" % (key, d[key], want))
    return "deposited %s by %s (%s), category %s, block %d" % (expected["deposited_at"], member.display_name,
                                                               member.institution, category.display_name_en,
                                                               p.header.height)


_STEPS: tuple[tuple[str, Callable[[_Context], str]], ...] = (
    ("chain_id", _check_chain_id),
    ("genesis_fingerprint", _check_fingerprint),
    ("depositor_role", _check_depositor),
    ("entry_signature", _check_signature),
    ("item_inclusion", _check_item),
    ("code_derivation", _check_code),
    ("entry_inclusion", _check_entry),
    ("history_inclusion", _check_history),
    ("validator_set", _check_validators),
    ("header_hash", _check_header),
    ("certificate_quorum", _check_quorum),
    ("display", _check_display),
)
assert tuple(s for s, _ in _STEPS) == CHECKS[1:-1]


def _finish(done: list[Check], verdict: str, failed: str | None, message: str, summary: dict | None) -> Verdict:
    ran = {c.id for c in done}
    rest = [Check(cid, "skipped", "not run: %s failed" % failed if failed else "no file given")
            for cid in CHECKS if cid not in ran]
    return Verdict(verdict, failed, message, tuple(done + rest), summary)


def _verify(receipt: Any, genesis: Any, file_digest: bytes | None) -> Verdict:
    done: list[Check] = []
    try:
        if isinstance(receipt, (bytes, bytearray, str)):
            receipt = load_receipt_json(receipt)
        parsed = parse_receipt(receipt)
    except FormatError as exc:
        done.append(Check("format", "failed", str(exc)))
        return _finish(done, "invalid", "format", "malformed receipt: %s" % exc, None)
    done.append(Check("format", "passed", "%s, every field well-formed" % FORMAT))
    summary = summary_of(parsed)
    ctx = _Context(parsed, genesis, file_digest)
    for check_id, step in _STEPS:
        try:
            message = step(ctx)
        except _Failed as exc:
            done.append(Check(check_id, "failed", str(exc)))
            return _finish(done, "invalid", check_id, "receipt is not valid: %s" % exc, summary)
        done.append(Check(check_id, "passed", message))
    if file_digest is None:
        return _finish(done, "valid", None, "receipt is valid: deposit %s of %s is proven" % (
            parsed.code, summary["deposited_at"]), summary)
    if file_digest == parsed.item.digest:
        done.append(Check("digest", "passed", "the file's SHA-256 equals the deposited digest"))
        return _finish(done, "match", None, "the file is exactly the one deposited as %s" % parsed.code, summary)
    done.append(Check("digest", "failed", "the file's SHA-256 %s differs from the deposited digest %s"
                      % (file_digest.hex(), parsed.item.digest.hex())))
    return _finish(done, "mismatch", "digest", "the receipt is valid but the file is NOT the one deposited as %s"
                   % parsed.code, summary)


def verify_receipt(receipt: Any, genesis: "Genesis", file_digest: bytes | None = None) -> Verdict:
    """Verify ``receipt`` (a decoded JSON document, or its JSON text) fully offline against ``genesis``.

    ``file_digest`` is the SHA-256 of the file to compare, or ``None``.  Never raises
    for any receipt: a malformed one is ``invalid`` with ``failed_check == "format"``.
    Raises ``TypeError`` for a ``file_digest`` that is not 32 bytes (caller misuse).
    """
    if file_digest is not None and (type(file_digest) is not bytes or len(file_digest) != 32):
        raise TypeError("file_digest must be the 32-byte SHA-256 of the file, or None")
    if not all(hasattr(genesis, a) for a in ("chain_id", "fingerprint", "member", "validator_set", "categories")):
        raise TypeError("genesis must be a ledger.genesis.Genesis")
    try:
        return _verify(receipt, genesis, file_digest)
    except Exception as exc:  # noqa: BLE001 - last line of defence: hostile input never raises
        message = "malformed receipt (unexpected %s: %s)" % (type(exc).__name__, exc)
        return _finish([Check("format", "failed", message)], "invalid", "format", message, None)
