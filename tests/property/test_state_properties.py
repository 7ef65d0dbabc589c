"""Property tests for ledger.state against a deliberately naive re-implementation.

The naive model below re-derives the rules from the genesis with no shared code:
linear member search, signature checked with PyNaCl directly, deposit codes computed
from the derivation formula in ``ledger/codes.py``'s docstring, and the duplicate set
kept as a plain list.  ``apply_block`` and ``filter_valid`` must agree with it on
random mixes of valid and invalid records, and must be deterministic.
"""

from __future__ import annotations

import functools
import hashlib

import nacl.exceptions
import nacl.signing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.codes import DepositCode
from ledger.crypto import SecretKey, signing_bytes
from ledger.errors import EntryRejected
from ledger.genesis import Member, Node, build_genesis
from ledger.model import (
    AccessRecord,
    CaseEvent,
    CreditEvent,
    Deposit,
    DepositItem,
    Entry,
    EntryRecord,
    PrivateMeta,
    make_deposit,
)
from ledger.state import MemoryView, Rules, apply_block, check_record, filter_valid

CHAIN = "evledger-prop"
T = 1_750_000_000_000
WINDOW = 60_000

ROLES_OF = {
    "v1": ["validator"], "v2": ["validator"], "v3": ["validator"], "v4": ["validator"], "obs": ["observer"],
    "shop": ["depositor"], "studio": ["depositor"], "court": ["court"], "notary": ["notary"],
    "arbiter": ["arbitration"], "bureau": ["credit-source"], "court-credit": ["court", "credit-source"],
}
SIGNERS = sorted(ROLES_OF) + ["outsider"]
KEYS = {n: SecretKey(hashlib.sha256(b"prop/" + n.encode()).digest()) for n in SIGNERS}
GENESIS = build_genesis(
    CHAIN,
    [Member.make(n, r, KEYS[n].public, node=Node("h%d:1" % i, "http://h%d:2" % i) if r[0] in ("validator",
                                                                                              "observer") else None)
     for i, (n, r) in enumerate(sorted(ROLES_OF.items()))],
    created_at=0,
    limits={"max_items_per_deposit": 4, "max_meta_keys": 2, "client_time_window_ms": WINDOW, "max_case_len": 12,
            "max_codes_per_event": 3},
)
RULES = Rules.from_genesis(GENESIS)
CATEGORIES = ["general", "copyright", "email", "unknown-cat"]
CASES = [None, "case-1", "case-2", "a-very-long-case-number"]


# --------------------------------------------------------------------------- record builders (cached)


@functools.lru_cache(maxsize=None)
def build_deposit(signer, key, chain, n, cat, case, meta_keys, dt, salt, private):
    items, parts = [], []
    for i in range(n):
        part = PrivateMeta(bytes(16), {"k%d" % j: j for j in range(meta_keys)}) if private else None
        items.append(DepositItem(hashlib.sha256(b"%d/%d" % (salt, i)).digest(), None, CATEGORIES[(cat + i) % 4]
                                 if cat >= 0 else "general", CASES[case],
                                 {} if private else {"k%d" % j: j for j in range(meta_keys)},
                                 None if part is None else part.commitment()))
        parts.append(part)
    return make_deposit(items, signer, T + dt, KEYS[key], chain, private=parts)


def _sign(body, key, chain):
    private = () if isinstance(body, AccessRecord) else (None,)
    return EntryRecord(Entry.sign(body, KEYS[key], chain), (), private)


@functools.lru_cache(maxsize=None)
def build_event(kind, signer, other, key, chain, codes, dt, salt, meta_keys, case):
    meta = {"k%d" % j: j for j in range(meta_keys)}
    if kind == "credit":
        body = CreditEvent(signer, "subject-%d" % salt, "dim", "kind", salt, T + dt, codes, meta, None, T + dt)
    elif kind == "case":
        body = CaseEvent(signer, CASES[case] or "case-1", "attach-%d" % salt, codes, meta, None, T + dt)
    else:
        body = AccessRecord(signer, other, CASES[case], codes, "purpose-%d" % salt, T + dt)
    return _sign(body, key, chain)


small_dt = st.sampled_from([0, 1, -WINDOW, WINDOW, WINDOW + 1, -WINDOW - 1, 3 * WINDOW])


def mostly(good, bad):
    """``good`` about nine times in ten, else something drawn from ``bad`` (maybe good too)."""
    return st.integers(0, 9).flatmap(lambda i: bad if i == 9 else st.just(good))


@st.composite
def record_specs(draw):
    """A list of records: valid ones, invalid ones, duplicates, and events citing codes."""
    n = draw(st.integers(0, 12))
    records: list[EntryRecord] = []
    for _ in range(n):
        kind = draw(st.sampled_from(["deposit", "deposit", "deposit", "credit", "case", "access", "dup"]))
        chain = draw(mostly(CHAIN, st.just("evledger-other")))
        dt = draw(mostly(0, small_dt))
        salt = draw(st.integers(0, 6))
        if kind == "dup" and records:
            records.append(records[draw(st.integers(0, len(records) - 1))])
            continue
        if kind in ("deposit", "dup"):
            signer = draw(mostly(draw(st.sampled_from(["shop", "studio"])), st.sampled_from(SIGNERS)))
            key = draw(mostly(signer, st.sampled_from(SIGNERS)))
            n_items = draw(st.integers(1, 5))
            category = draw(mostly(-1, st.integers(0, 3)))
            case = draw(mostly(draw(st.integers(0, 2)), st.just(3)))
            meta_keys = draw(mostly(0, st.integers(0, 3)))
            rec = build_deposit(signer, key, chain, n_items, category, case, meta_keys, dt, salt, draw(st.booleans()))
            records.append(rec)
            continue
        default_signer = {"credit": "bureau", "case": "court", "access": "v1"}[kind]
        signer = draw(mostly(default_signer, st.sampled_from(SIGNERS)))
        other = draw(mostly("court", st.sampled_from(SIGNERS)))
        key = draw(mostly(signer, st.sampled_from(SIGNERS)))
        codes = []
        for _ in range(draw(st.integers(0, 4))):
            earlier = [r for r in records + list(PRELOADED) if isinstance(r.entry.body, Deposit)]
            if earlier and draw(st.booleans()):
                r = draw(st.sampled_from(earlier))
                codes.append(naive_codes(r)[draw(st.integers(0, len(r.items) - 1))].compact)
            else:
                codes.append(DepositCode(draw(st.integers(0, 2**115 - 1))).compact)
        meta_keys = draw(mostly(0, st.integers(0, 3)))
        case = draw(mostly(draw(st.integers(0, 2)), st.just(3)))
        records.append(build_event(kind, signer, other, key, chain, tuple(codes), dt, salt, meta_keys, case))
    return records


# --------------------------------------------------------------------------- the naive model


def naive_codes(record):
    sig = record.entry.signature
    out = []
    for i in range(len(record.items)):
        h = hashlib.sha256(b"evledger/deposit-code/1\x00" + CHAIN.encode() + b"\x00" + sig + i.to_bytes(4, "big"))
        out.append(DepositCode(int.from_bytes(h.digest()[:15], "big") >> 5))
    return out


def naive_member(name):
    for m in GENESIS.members:
        if m.name == name:
            return m
    return None


def naive_verdict(record, block_time, seen):
    """(reason or None, keys) following the documented order of checks."""
    body = record.entry.body
    lim = GENESIS.limits
    signer_name = {"deposit": "depositor", "credit_event": "source", "case_event": "actor",
                   "access_record": "recorder"}[body.TAG]
    signer = naive_member(getattr(body, signer_name))
    if signer is None:
        return "unknown_member", None
    allowed = {"deposit": ["depositor"], "credit_event": ["credit-source"],
               "case_event": ["court", "procuratorate", "arbitration", "notary"],
               "access_record": ["validator", "observer"]}[body.TAG]
    if not any(r in signer.roles for r in allowed):
        return "not_permitted", None
    if body.TAG == "access_record":
        accessor = naive_member(body.accessor)
        if accessor is None:
            return "unknown_member", None
        if not any(r in accessor.roles for r in ("court", "procuratorate", "arbitration", "notary")):
            return "not_permitted", None
    if body.TAG == "deposit":
        if body.item_count > lim.max_items_per_deposit:
            return "limit_exceeded", None
        if abs(body.client_time - block_time) > lim.client_time_window_ms:
            return "stale_timestamp", None
        for it, part in zip(record.items, record.private):
            if len(it.public_meta) > lim.max_meta_keys:
                return "limit_exceeded", None
            if part is not None and len(part.fields) > lim.max_meta_keys:
                return "limit_exceeded", None
            if it.case is not None and len(it.case) > lim.max_case_len:
                return "limit_exceeded", None
            if it.category not in GENESIS.category_ids:
                return "unknown_category", None
    else:
        cited = body.evidence if body.TAG == "credit_event" else body.codes
        if len(cited) > lim.max_codes_per_event:
            return "limit_exceeded", None
        if body.TAG != "access_record":
            if len(body.public_meta) > lim.max_meta_keys:
                return "limit_exceeded", None
            if any(p is not None and len(p.fields) > lim.max_meta_keys for p in record.private):
                return "limit_exceeded", None
        case = getattr(body, "case", None)
        if case is not None and len(case) > lim.max_case_len:
            return "limit_exceeded", None
        t = body.accessed_at if body.TAG == "access_record" else body.client_time
        if abs(t - block_time) > lim.client_time_window_ms:
            return "stale_timestamp", None
        if body.TAG == "credit_event" and body.occurred_at > block_time + lim.client_time_window_ms:
            return "stale_timestamp", None
    message = signing_bytes("entry/" + body.TAG, CHAIN, body.encode())
    try:
        nacl.signing.VerifyKey(signer.public_key.raw).verify(message, record.entry.signature)
    except nacl.exceptions.BadSignatureError:
        return "bad_signature", None
    if body.TAG == "deposit":
        keys = [c.key for c in naive_codes(record)]
        if any(k in seen for k in keys):
            return "already_deposited", None
        return None, keys
    key = hashlib.sha256(b"evledger/entry-key/1\x00" + record.entry.signature).digest()
    if key in seen:
        return "already_recorded", None
    cited = body.evidence if body.TAG == "credit_event" else body.codes
    if any(c.encode() not in seen for c in cited):
        return "unknown_code", None
    return None, [key]


def naive_effects(records, keys_per_record):
    codes, entry_keys, cases, entry_codes = {}, {}, {}, []
    for i, (rec, keys) in enumerate(zip(records, keys_per_record)):
        body = rec.entry.body
        if body.TAG == "deposit":
            for j, k in enumerate(keys):
                codes[k] = (i, j)
                if rec.items[j].case is not None:
                    cases.setdefault(rec.items[j].case, [])
                    if k not in cases[rec.items[j].case]:
                        cases[rec.items[j].case].append(k)
            entry_codes.append(tuple(keys))
        else:
            entry_keys[keys[0]] = i
            entry_codes.append(())
            if body.TAG == "case_event":
                for c in body.codes:
                    cases.setdefault(body.case, [])
                    if c.encode() not in cases[body.case]:
                        cases[body.case].append(c.encode())
    return codes, entry_keys, {k: tuple(v) for k, v in cases.items()}, tuple(entry_codes)


def naive_apply(chain_keys, block_time, records):
    seen = list(chain_keys)
    keys_per_record = []
    for i, rec in enumerate(records):
        reason, keys = naive_verdict(rec, block_time, seen)
        if reason is not None:
            return ("rejected", i, reason)
        seen.extend(keys)
        keys_per_record.append(keys)
    return ("ok",) + naive_effects(records, keys_per_record)


def naive_filter(chain_keys, block_time, records):
    seen = list(chain_keys)
    accepted, rejected = [], []
    for i, rec in enumerate(records):
        reason, keys = naive_verdict(rec, block_time, seen)
        if reason is None:
            seen.extend(keys)
            accepted.append(rec)
        else:
            rejected.append((i, reason))
    return accepted, rejected


# --------------------------------------------------------------------------- the chain before the block

PRELOADED = (build_deposit("shop", "shop", CHAIN, 2, -1, 1, 0, 0, 100, False),
             build_event("credit", "bureau", "court", "bureau", CHAIN, (), 0, 100, 0, 0))


def chain_view():
    view = MemoryView()
    view.add(apply_block(RULES, view, T, list(PRELOADED)))
    return view


def real_apply(view, block_time, records):
    try:
        e = apply_block(RULES, view, block_time, records)
    except EntryRejected as err:
        assert err.field.startswith("records[%d]." % err.entry_index)
        return ("rejected", err.entry_index, err.reason)
    return ("ok", dict(e.codes), dict(e.entry_keys), dict(e.cases), e.entry_codes)


SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                             HealthCheck.data_too_large])


@SETTINGS
@given(record_specs(), st.sampled_from([T, T + WINDOW, T - 1]))
def test_apply_block_equals_naive_model_and_is_deterministic(records, block_time):
    view = chain_view()
    chain_keys = set(view.keys)
    got = real_apply(view, block_time, records)
    assert got == naive_apply(chain_keys, block_time, records)
    assert real_apply(view, block_time, records) == got  # same inputs, same verdict
    assert real_apply(chain_view(), block_time, list(records)) == got  # fresh but equal view
    assert view.keys == chain_keys  # the view was only read


@SETTINGS
@given(record_specs(), st.sampled_from([T, T + WINDOW + 1]))
def test_filter_valid_equals_naive_model_and_its_output_applies(records, block_time):
    view = chain_view()
    accepted, rejected = filter_valid(RULES, view, block_time, records)
    n_accepted, n_rejected = naive_filter(view.keys, block_time, records)
    assert accepted == n_accepted
    assert [(r.index, r.reason) for r in rejected] == n_rejected
    assert real_apply(view, block_time, accepted)[0] == "ok"
    assert real_apply(view, block_time, accepted) == naive_apply(view.keys, block_time, accepted)


@SETTINGS
@given(record_specs(), st.randoms(use_true_random=False))
def test_check_record_verdicts_do_not_depend_on_call_order(records, rnd):
    view = chain_view()

    def verdict(rec):
        try:
            return [c.key for c in check_record(RULES, view, rec, T)]
        except EntryRejected as err:
            return err.reason

    expected = [verdict(r) for r in records]
    order = list(range(len(records)))
    rnd.shuffle(order)
    got = {i: verdict(records[i]) for i in order}
    assert [got[i] for i in range(len(records))] == expected
    for rec, v in zip(records, expected):
        assert v == (naive_verdict(rec, T, list(view.keys))[0] or v)


@SETTINGS
@given(record_specs())
def test_no_code_is_ever_indexed_twice(records):
    """Applying filter_valid's blocks one after another never repeats a code."""
    view = chain_view()
    indexed = set(view.keys)
    for chunk in (records[: len(records) // 2], records[len(records) // 2:], records):
        accepted, _ = filter_valid(RULES, view, T, chunk)
        effects = apply_block(RULES, view, T, accepted)
        new = set(effects.codes) | set(effects.entry_keys)
        assert not new & indexed
        assert len(new) == len(effects.codes) + len(effects.entry_keys)
        indexed |= new
        view.add(effects)
