"""Deterministic application of entries: permissions, limits, idempotence.

Theory of operation
-------------------
Every replica runs :func:`apply_block` on every committed (and every proposed)
block and must reach exactly the same verdict, so this module is a pure function of
its arguments: the :class:`Rules` derived from the genesis, a :class:`ChainView`
snapshot of the chain *before* the block, the block's header timestamp and its
records.  It performs no I/O, reads no clock and draws no randomness.

An entry is checked by :func:`check_record`; the first failing check, in this fixed
order, is the verdict (``EntryRejected.reason``):

====  ===================  ====================================================
 1    ``unknown_member``   the signer (then, for an access record, the accessor)
                           is not a member of the genesis
 2    ``not_permitted``    the signer's roles do not allow this entry type
                           (:data:`SIGNER_ROLES`); an access record's accessor
                           must hold a caller role (``model.CALLER_ROLES``)
 3    ``limit_exceeded``   entry-level limits: items per deposit, codes cited,
                           metadata keys, case-number length
 4    ``stale_timestamp``  ``client_time`` (``accessed_at`` for access records)
                           more than ``client_time_window_ms`` from the block
                           time either way; a credit event's ``occurred_at``
                           later than block time + window
 5    item checks          for each deposit item in order: ``limit_exceeded``
                           (metadata keys, case length), then
                           ``unknown_category``
 6    ``bad_signature``    the body does not verify under the signer's key, the
                           entry's context and the chain id
 7    ``already_deposited`` a deposit item's code is on chain or earlier in the
                           block (the error's ``codes`` lists them);
      ``already_recorded`` the same signed non-deposit entry is on chain or
                           earlier in the block
 8    ``unknown_code``     a code cited by a case event, credit event or access
                           record is neither on chain nor deposited earlier in
                           the block
====  ===================  ====================================================

Cheap checks come first so a flood of forged entries costs no signature
verification; the verdict order matters only for which reason is reported, and it
is the same on every replica because it is fixed here.

Keys and idempotence
--------------------
Item ``i`` of a deposit has the code ``derive_code(chain_id, signature, index=i)``
(``ledger.codes``): a resubmission of the same signed deposit yields the same codes
and is refused as ``already_deposited``, so nothing is ever stored twice.
Ed25519 signatures as verified by libsodium are not malleable (canonical ``S``,
``R`` compared as an encoding), so a third party cannot re-sign a deposit into new
codes.  A non-deposit entry has no code; its replay key is
:func:`entry_key` ``= SHA-256("evledger/entry-key/1\\x00" || signature)`` so a
credit event can never be counted twice.  Code keys are 25 bytes (the compact code
in ASCII) and entry keys 32 bytes, so both live in one namespace without
collision: :meth:`ChainView.has_code` must answer for every key any earlier
:class:`BlockEffects` reported in ``codes`` or ``entry_keys``.

Cost
----
One signature verification per entry and one ``derive_code`` per deposit item;
record structure (``items_root``, private commitments) is *not* re-checked: an
:class:`~ledger.model.EntryRecord` cannot be built or decoded without it.
"""

from __future__ import annotations

import hashlib
from operator import attrgetter
from typing import AbstractSet as Set, NamedTuple, Sequence

from . import derived
from .codes import DepositCode, codes_from_keys
from .errors import EntryRejected, SignatureError
from .model import AccessRecord, CaseEvent, CreditEvent, Deposit, Entry, EntryRecord
from .state_types import (ACCESSOR_ROLES, ENTRY_KEY_DOMAIN, SIGNER_ROLES, BlockEffects, ChainView, MemoryView,
                          Rejection, Rules, _MemberRule)

__all__ = [
    "SIGNER_ROLES",
    "BlockEffects",
    "ChainView",
    "MemoryView",
    "Rejection",
    "Rules",
    "apply_block",
    "check_record",
    "check_record_keys",
    "deposit_code_keys",
    "deposit_codes",
    "entry_key",
    "filter_block",
    "filter_valid",
]

def entry_key(entry: Entry) -> bytes:
    """Replay key of a non-deposit entry (32 bytes)."""
    return hashlib.sha256(ENTRY_KEY_DOMAIN + entry.signature).digest()


def deposit_code_keys(chain_id: str, record: EntryRecord) -> tuple[bytes, ...]:
    """The store keys (``DepositCode.key``) of a deposit's items, in item order (empty for other entries)."""
    if not isinstance(record.entry.body, Deposit):
        return ()
    return derived.code_keys(chain_id, record)


def deposit_codes(chain_id: str, record: EntryRecord) -> list[DepositCode]:
    """The codes of a deposit's items, in item order (empty for other entries)."""
    return codes_from_keys(deposit_code_keys(chain_id, record))


# --------------------------------------------------------------------------- checks


def _reject(reason: str, field_: str, message: str, codes: Sequence[DepositCode] = ()) -> EntryRejected:
    err = EntryRejected("%s: %s" % (field_, message), reason=reason, field=field_)
    err.codes = list(codes)
    err.entry_index = None
    return err


class _Verdict(NamedTuple):
    keys: tuple[bytes, ...]  # code keys of a deposit, or (entry_key,) of another entry
    case_adds: list[tuple[str, bytes]]


def _check_meta(rules: Rules, meta: tuple, where: str) -> None:
    if len(meta) > rules.limits.max_meta_keys:
        raise _reject("limit_exceeded", where, "%d metadata keys exceed the limit of %d"
                      % (len(meta), rules.limits.max_meta_keys))


def _check_case(rules: Rules, case: str | None, where: str) -> None:
    if case is not None and len(case) > rules.limits.max_case_len:
        raise _reject("limit_exceeded", where, "case number of %d characters exceeds the limit of %d"
                      % (len(case), rules.limits.max_case_len))


def _check_private(rules: Rules, record: EntryRecord, where: str) -> None:
    for i, part in enumerate(record.private):
        if part is not None:
            _check_meta(rules, part.fields, "%s.private[%d].fields" % (where, i))


def _check_time(rules: Rules, value: int, block_time: int, where: str) -> None:
    window = rules.limits.client_time_window_ms
    if abs(value - block_time) > window:
        raise _reject("stale_timestamp", where, "%d is %d ms from the block time %d (allowed: %d ms either way)"
                      % (value, value - block_time, block_time, window))


def _check_member(rules: Rules, record: EntryRecord) -> _MemberRule:
    """Steps 1-2: signer (and accessor) known and permitted."""
    body = record.entry.body
    tag = body.TAG
    where = "%s.%s" % (tag, body.SIGNER)
    signer = rules.members.get(record.entry.signer)
    if signer is None:
        raise _reject("unknown_member", where, "%r is not a member of chain %s" % (record.entry.signer, rules.chain_id))
    allowed = SIGNER_ROLES[tag]
    if not signer.roles & allowed:
        raise _reject("not_permitted", where, "%r (roles: %s) may not sign a %s; needs one of: %s"
                      % (record.entry.signer, ", ".join(sorted(signer.roles)), tag, ", ".join(sorted(allowed))))
    if tag == AccessRecord.TAG:
        accessor = rules.members.get(body.accessor)
        if accessor is None:
            raise _reject("unknown_member", "access_record.accessor", "%r is not a member of chain %s"
                          % (body.accessor, rules.chain_id))
        if not accessor.roles & ACCESSOR_ROLES:
            raise _reject("not_permitted", "access_record.accessor", "%r (roles: %s) holds no caller role (%s)"
                          % (body.accessor, ", ".join(sorted(accessor.roles)), ", ".join(sorted(ACCESSOR_ROLES))))
    return signer


def _check_entry_limits(rules: Rules, record: EntryRecord, block_time: int) -> None:
    """Steps 3-4: entry-level limits and timestamps."""
    body = record.entry.body
    limits = rules.limits
    tag = body.TAG
    if isinstance(body, Deposit):
        if body.item_count > limits.max_items_per_deposit:
            raise _reject("limit_exceeded", "deposit.item_count", "%d items exceed the limit of %d"
                          % (body.item_count, limits.max_items_per_deposit))
        _check_time(rules, body.client_time, block_time, "deposit.client_time")
        return
    name, cited = _cited(body)
    if len(cited) > limits.max_codes_per_event:
        raise _reject("limit_exceeded", "%s.%s" % (tag, name), "%d codes exceed the limit of %d"
                      % (len(cited), limits.max_codes_per_event))
    if not isinstance(body, AccessRecord):
        _check_meta(rules, body.public_meta, "%s.public_meta" % tag)
        _check_private(rules, record, tag)
    _check_case(rules, getattr(body, "case", None), "%s.case" % tag)
    if isinstance(body, AccessRecord):
        _check_time(rules, body.accessed_at, block_time, "access_record.accessed_at")
    else:
        _check_time(rules, body.client_time, block_time, "%s.client_time" % tag)
    if isinstance(body, CreditEvent) and body.occurred_at > block_time + limits.client_time_window_ms:
        raise _reject("stale_timestamp", "credit_event.occurred_at", "%d is in the future of the block time %d"
                      % (body.occurred_at, block_time))


def _items_pass(rules: Rules, record: EntryRecord) -> bool:
    """Whether every item passes step 5, by whole-batch checks (C loops); the item
    loop below runs only to name the first failure."""
    items = record.items
    if not set(map(_CATEGORY, items)) <= rules.categories:
        return False
    limits = rules.limits
    if max(map(len, map(_PUBLIC_META, items))) > limits.max_meta_keys:
        return False
    cases = [c for c in map(_CASE, items) if c is not None]
    if cases and max(map(len, cases)) > limits.max_case_len:
        return False
    private = [p for p in record.private if p is not None]
    return not private or max(len(p.fields) for p in private) <= limits.max_meta_keys


_CATEGORY, _PUBLIC_META, _CASE = attrgetter("category"), attrgetter("public_meta"), attrgetter("case")


def _check_items(rules: Rules, record: EntryRecord) -> None:
    """Step 5: each deposit item's limits, then its category."""
    if record.items and _items_pass(rules, record):
        return
    max_meta = rules.limits.max_meta_keys
    max_case = rules.limits.max_case_len
    categories = rules.categories
    for i, (item, part) in enumerate(zip(record.items, record.private)):
        if len(item.public_meta) > max_meta:
            _check_meta(rules, item.public_meta, "deposit.items[%d].public_meta" % i)
        if part is not None and len(part.fields) > max_meta:
            _check_meta(rules, part.fields, "deposit.private[%d].fields" % i)
        if item.case is not None and len(item.case) > max_case:
            _check_case(rules, item.case, "deposit.items[%d].case" % i)
        if item.category not in categories:
            raise _reject("unknown_category", "deposit.items[%d].category" % i, "unknown category %r (valid: %s)"
                          % (item.category, ", ".join(sorted(categories))))


def _check_signature(rules: Rules, signer: _MemberRule, record: EntryRecord) -> None:
    """Step 6: one verification per entry, remembered (a pure function of the bytes compared)."""
    entry = record.entry
    body = entry.body_bytes()
    fingerprint = hashlib.sha256(b"\x00".join((signer.key.raw, rules.chain_id.encode("utf-8"),
                                               entry.context.encode("ascii"), body))).digest()
    if derived.verified(entry.signature, fingerprint):
        return
    try:
        signer.key.verify(entry.context, rules.chain_id, body, entry.signature)
    except SignatureError:
        raise _reject("bad_signature", "entry.signature", "does not verify for %r on chain %s"
                      % (record.entry.signer, rules.chain_id)) from None
    derived.remember_verified(entry.signature, fingerprint)


def _cited(body) -> tuple[str, tuple[str, ...]]:
    """The field naming the codes a non-deposit entry cites, and those codes."""
    if isinstance(body, CreditEvent):
        return "evidence", body.evidence
    return "codes", body.codes


def _deposit_keys(rules: Rules, view: ChainView, record: EntryRecord, pending: Set[bytes]) -> _Verdict:
    """Step 7 for a deposit: its codes, none already on chain or earlier in the block."""
    keys = derived.code_keys(rules.chain_id, record)
    present = getattr(view, "codes_present", None)
    if present is not None:  # one bulk lookup (ChainView.codes_present, optional)
        stored = set(present(keys))
        dup = [key for key in keys if key in pending or key in stored]
    else:
        dup = [key for key in keys if key in pending or view.has_code(key)]
    if dup:
        codes = codes_from_keys(dup)
        raise _reject("already_deposited", "deposit", "already deposited: %s%s"
                      % (", ".join(str(c) for c in codes[:5]), " ..." if len(codes) > 5 else ""), codes)
    if len(set(keys)) != len(keys):  # two items of one batch with one code: ~2**-100, still never index twice
        raise _reject("already_deposited", "deposit", "two items of this deposit have the same code",
                      codes_from_keys(keys))
    adds = [(item.case, key) for item, key in zip(record.items, keys) if item.case is not None]
    return _Verdict(keys, adds)


def _event_keys(view: ChainView, record: EntryRecord, pending: Set[bytes]) -> _Verdict:
    """Steps 7-8 for other entries: not a replay, and every cited code exists."""
    body = record.entry.body
    key = entry_key(record.entry)
    if key in pending or view.has_code(key):
        raise _reject("already_recorded", body.TAG, "this signed %s is already on the chain" % body.TAG)
    name, cited = _cited(body)
    for i, code in enumerate(cited):
        ckey = code.encode("ascii")
        if ckey not in pending and not view.has_code(ckey):
            raise _reject("unknown_code", "%s.%s[%d]" % (body.TAG, name, i), "no deposit with code %s" % code)
    adds = [(body.case, c.encode("ascii")) for c in body.codes] if isinstance(body, CaseEvent) else []
    return _Verdict((key,), adds)


def _check(rules: Rules, view: ChainView, record: EntryRecord, block_time: int, pending: Set[bytes]) -> _Verdict:
    """Every check, in the documented order; the first failure raises."""
    signer = _check_member(rules, record)
    _check_entry_limits(rules, record, block_time)
    is_deposit = isinstance(record.entry.body, Deposit)
    if is_deposit:
        _check_items(rules, record)
    _check_signature(rules, signer, record)
    return _deposit_keys(rules, view, record, pending) if is_deposit else _event_keys(view, record, pending)


def _check_time_arg(block_time: int) -> None:
    if type(block_time) is not int or block_time < 0:
        raise TypeError("block_time must be a non-negative int (ms since the epoch)")


def check_record(rules: Rules, view: ChainView, record: EntryRecord, block_time: int,
                 pending_codes: Set[bytes] = frozenset()) -> list[DepositCode]:
    """Check one record against the chain; return its deposit codes (``[]`` for other entries).

    ``pending_codes`` holds the keys recorded earlier in the same block (code keys and
    entry keys, as :func:`apply_block` accumulates them); it is not modified.
    Raises :class:`EntryRejected` with the ``reason`` of the first failing check.
    """
    keys = check_record_keys(rules, view, record, block_time, pending_codes)
    return codes_from_keys(keys) if isinstance(record.entry.body, Deposit) else []


def check_record_keys(rules: Rules, view: ChainView, record: EntryRecord, block_time: int,
                      pending_codes: Set[bytes] = frozenset()) -> tuple[bytes, ...]:
    """:func:`check_record`, returning what the record would index instead of code objects:
    its code keys (a deposit) or its entry key (any other entry)."""
    _check_time_arg(block_time)
    return _check(rules, view, record, block_time, pending_codes).keys


class _Builder:
    __slots__ = ("pending", "codes", "entry_keys", "cases", "entry_codes")

    def __init__(self) -> None:
        self.pending: set[bytes] = set()
        self.codes: dict[bytes, tuple[int, int]] = {}
        self.entry_keys: dict[bytes, int] = {}
        self.cases: dict[str, dict[bytes, None]] = {}
        self.entry_codes: list[tuple[bytes, ...]] = []

    def add(self, index: int, record: EntryRecord, verdict: _Verdict) -> None:
        self.pending.update(verdict.keys)
        if isinstance(record.entry.body, Deposit):
            for item_index, key in enumerate(verdict.keys):
                self.codes[key] = (index, item_index)
            self.entry_codes.append(verdict.keys)
        else:
            self.entry_keys[verdict.keys[0]] = index
            self.entry_codes.append(())
        for case, key in verdict.case_adds:
            self.cases.setdefault(case, {})[key] = None

    def effects(self) -> BlockEffects:
        cases = {case: tuple(keys) for case, keys in self.cases.items()}
        return BlockEffects(self.codes, self.entry_keys, cases, tuple(self.entry_codes))


def apply_block(rules: Rules, view: ChainView, header_time: int, records: Sequence[EntryRecord]) -> BlockEffects:
    """Check every record of a block in order and return what a store must index.

    A block with one invalid entry is invalid as a whole: raises
    :class:`EntryRejected` whose ``entry_index`` (and message, and ``field`` prefix
    ``records[i]``) names the first bad entry.
    """
    _check_time_arg(header_time)
    builder = _Builder()
    for index, record in enumerate(records):
        try:
            verdict = _check(rules, view, record, header_time, builder.pending)
        except EntryRejected as err:
            raise _in_block(err, index) from None
        builder.add(index, record, verdict)
    return builder.effects()


def _in_block(err: EntryRejected, index: int) -> EntryRejected:
    out = EntryRejected("entry %d: %s" % (index, err), reason=err.reason, field="records[%d].%s" % (index, err.field))
    out.codes = getattr(err, "codes", [])
    out.entry_index = index
    return out


def filter_valid(rules: Rules, view: ChainView, block_time: int,
                 records: Sequence[EntryRecord]) -> tuple[list[EntryRecord], list[Rejection]]:
    """Split a pending pool into the records a block may carry and those it may not.

    Records are taken in order; a record that repeats an earlier accepted one (same
    codes) is rejected as ``already_deposited`` / ``already_recorded``, so
    ``apply_block(rules, view, block_time, accepted)`` always succeeds.
    """
    accepted, rejected, _ = filter_block(rules, view, block_time, records)
    return accepted, rejected


def filter_block(rules: Rules, view: ChainView, block_time: int,
                 records: Sequence[EntryRecord]) -> tuple[list[EntryRecord], list[Rejection], BlockEffects]:
    """:func:`filter_valid` plus the effects of the accepted records.

    The effects are exactly ``apply_block(rules, view, block_time, accepted)``: each
    accepted record was checked against the chain plus the records accepted before
    it, which is what ``apply_block`` checks, so a proposer need not check twice.
    """
    _check_time_arg(block_time)
    builder = _Builder()
    accepted: list[EntryRecord] = []
    rejected: list[Rejection] = []
    for index, record in enumerate(records):
        try:
            verdict = _check(rules, view, record, block_time, builder.pending)
        except EntryRejected as err:
            err.entry_index = index
            rejected.append(Rejection(index, record, err.reason, err))
            continue
        builder.add(len(accepted), record, verdict)
        accepted.append(record)
    return accepted, rejected, builder.effects()
