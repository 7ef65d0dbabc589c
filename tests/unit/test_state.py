"""Unit tests for ledger.state: every rejection reason, idempotence, block-level rules."""

from __future__ import annotations

import hashlib
import random

import pytest

from ledger.codes import derive_code
from ledger.crypto import SecretKey
from ledger.errors import EntryRejected
from ledger.genesis import DEFAULT_CATEGORIES, Category, Member, Node, build_genesis, load_genesis
from ledger.model import (
    AccessRecord,
    CaseEvent,
    CreditEvent,
    DepositItem,
    Entry,
    EntryRecord,
    PrivateMeta,
    make_deposit,
)
from ledger.state import (
    SIGNER_ROLES,
    BlockEffects,
    MemoryView,
    Rules,
    apply_block,
    check_record,
    deposit_codes,
    entry_key,
    filter_valid,
)

CHAIN = "evledger-test"
T = 1_750_000_000_000  # block time used throughout (ms)
WINDOW = 3_600_000
MAX_ITEMS = 5
MAX_META = 3
MAX_CASE = 20
MAX_CODES = 4

MEMBER_ROLES = {
    "v1": ["validator"], "v2": ["validator"], "v3": ["validator"], "v4": ["validator"],
    "obs": ["observer"],
    "shop": ["depositor"], "studio": ["depositor"],
    "court": ["court"], "procurator": ["procuratorate"], "arbiter": ["arbitration"], "notary": ["notary"],
    "bureau": ["credit-source"],
    "court-credit": ["court", "credit-source"],
}
NAMES = sorted(MEMBER_ROLES)
KEYS = {name: SecretKey(hashlib.sha256(name.encode()).digest()) for name in NAMES + ["outsider"]}


def make_genesis():
    members = []
    for i, name in enumerate(NAMES):
        roles = MEMBER_ROLES[name]
        node = Node("127.0.0.1:%d" % (7300 + i), "http://127.0.0.1:%d" % (7400 + i)) \
            if roles[0] in ("validator", "observer") else None
        members.append(Member.make(name, roles, KEYS[name].public, node=node))
    return build_genesis(
        CHAIN, members, created_at=T - 10**9,
        categories=DEFAULT_CATEGORIES + (Category("patent", "专利", "Patent"),),
        limits={"max_items_per_deposit": MAX_ITEMS, "max_meta_keys": MAX_META, "client_time_window_ms": WINDOW,
                "max_case_len": MAX_CASE, "max_codes_per_event": MAX_CODES},
    )


GENESIS = make_genesis()
RULES = Rules.from_genesis(GENESIS)


def item(n: int = 0, category: str = "general", case: str | None = None, meta: dict | None = None,
         private: bool = False) -> tuple[DepositItem, PrivateMeta | None]:
    part = PrivateMeta(salt=bytes([n % 256]) * 16, fields={"party": "张三"}) if private else None
    it = DepositItem(digest=hashlib.sha256(b"evidence %d" % n).digest(), sm3=None, category=category, case=case,
                     public_meta=meta or {}, private_commitment=None if part is None else part.commitment())
    return it, part


def deposit(n_items: int = 1, signer: str = "shop", key: str | None = None, client_time: int = T,
            chain: str = CHAIN, start: int = 0, **item_kw) -> EntryRecord:
    pairs = [item(start + i, **item_kw) for i in range(n_items)]
    return make_deposit([p[0] for p in pairs], signer, client_time, KEYS[key or signer], chain,
                        private=[p[1] for p in pairs])


def signed(body, key: str | None = None, chain: str = CHAIN, private=()) -> EntryRecord:
    signer = key or getattr(body, body.SIGNER)
    return EntryRecord(Entry.sign(body, KEYS[signer], chain), (), tuple(private))


def credit(source: str = "bureau", evidence=(), client_time: int = T, occurred_at: int = T - 1000,
           subject: str = "subject-1", meta: dict | None = None, key: str | None = None) -> EntryRecord:
    body = CreditEvent(source=source, subject=subject, dimension="performance", kind="judgment-performed",
                       score_delta=5, occurred_at=occurred_at, evidence=tuple(evidence), public_meta=meta or {},
                       private_commitment=None, client_time=client_time)
    return signed(body, key, private=(None,))


def case_event(actor: str = "court", case: str = "(2025)京0491民初1号", codes=(), client_time: int = T,
               kind: str = "evidence-attached", key: str | None = None) -> EntryRecord:
    body = CaseEvent(actor=actor, case=case, kind=kind, codes=tuple(codes), public_meta={}, private_commitment=None,
                     client_time=client_time)
    return signed(body, key, private=(None,))


def access(recorder: str = "v1", accessor: str = "court", codes=(), accessed_at: int = T,
           case: str | None = None, key: str | None = None) -> EntryRecord:
    body = AccessRecord(recorder=recorder, accessor=accessor, case=case, codes=tuple(codes), purpose="trial",
                        accessed_at=accessed_at)
    return signed(body, key)


def rejected(record, view=None, block_time=T, pending=frozenset()) -> EntryRejected:
    with pytest.raises(EntryRejected) as info:
        check_record(RULES, view or MemoryView(), record, block_time, pending)
    return info.value


def on_chain(*records) -> MemoryView:
    """A view of a chain holding ``records`` (committed in one earlier block)."""
    view = MemoryView()
    view.add(apply_block(RULES, view, T - 1, list(records)))
    return view


def compact(record, i=0) -> str:
    return deposit_codes(CHAIN, record)[i].compact


# --------------------------------------------------------------------------- acceptance


def test_valid_deposit_gets_its_derived_codes():
    rec = deposit(3)
    codes = check_record(RULES, MemoryView(), rec, T, set())
    assert codes == [derive_code(CHAIN, rec.entry.signature, index=i) for i in range(3)]
    assert len({c.key for c in codes}) == 3
    effects = apply_block(RULES, MemoryView(), T, [rec])
    assert effects.codes == {c.key: (0, i) for i, c in enumerate(codes)}
    assert effects.entry_codes == (tuple(c.key for c in codes),)
    assert effects.entry_keys == {} and effects.cases == {}


@pytest.mark.parametrize("record", [
    pytest.param(lambda: credit("bureau"), id="credit-source"),
    pytest.param(lambda: credit("court-credit"), id="court-as-credit-source"),
    pytest.param(lambda: case_event("court"), id="court"),
    pytest.param(lambda: case_event("procurator"), id="procuratorate"),
    pytest.param(lambda: case_event("arbiter"), id="arbitration"),
    pytest.param(lambda: case_event("notary"), id="notary"),
    pytest.param(lambda: access("v1", "court"), id="validator-records"),
    pytest.param(lambda: access("obs", "arbiter"), id="observer-records"),
    pytest.param(lambda: access("v2", "notary", case="(2025)京0491民初1号"), id="with-case"),
])
def test_permitted_non_deposits(record):
    rec = record()
    assert check_record(RULES, MemoryView(), rec, T) == []
    effects = apply_block(RULES, MemoryView(), T, [rec])
    assert effects.entry_keys == {entry_key(rec.entry): 0}
    assert effects.codes == {} and effects.entry_codes == ((),)


def test_signer_role_table_matches_the_contract():
    assert SIGNER_ROLES == {
        "deposit": {"depositor"},
        "credit_event": {"credit-source"},
        "case_event": {"court", "procuratorate", "arbitration", "notary"},
        "access_record": {"validator", "observer"},
    }


# --------------------------------------------------------------------------- each reason


def test_unknown_member():
    err = rejected(deposit(signer="outsider"))
    assert err.reason == "unknown_member" and err.field == "deposit.depositor"
    err = rejected(access("v1", "outsider"))
    assert err.reason == "unknown_member" and err.field == "access_record.accessor"
    assert rejected(credit("outsider")).reason == "unknown_member"


@pytest.mark.parametrize("record, field", [
    pytest.param(lambda: deposit(signer="court"), "deposit.depositor", id="court-deposits"),
    pytest.param(lambda: deposit(signer="v1"), "deposit.depositor", id="validator-deposits"),
    pytest.param(lambda: credit("shop"), "credit_event.source", id="depositor-credit"),
    pytest.param(lambda: credit("court"), "credit_event.source", id="court-credit-without-role"),
    pytest.param(lambda: case_event("shop"), "case_event.actor", id="depositor-case-event"),
    pytest.param(lambda: case_event("bureau"), "case_event.actor", id="credit-source-case-event"),
    pytest.param(lambda: case_event("v1"), "case_event.actor", id="validator-case-event"),
    pytest.param(lambda: access("court", "court"), "access_record.recorder", id="client-records-access"),
    pytest.param(lambda: access("shop", "court"), "access_record.recorder", id="depositor-records-access"),
    pytest.param(lambda: access("v1", "shop"), "access_record.accessor", id="accessor-not-a-caller"),
    pytest.param(lambda: access("v1", "v2"), "access_record.accessor", id="accessor-is-a-node"),
    pytest.param(lambda: access("v1", "bureau"), "access_record.accessor", id="accessor-credit-source"),
])
def test_not_permitted(record, field):
    err = rejected(record())
    assert err.reason == "not_permitted", str(err)
    assert err.field == field


def test_bad_signature():
    assert rejected(deposit(signer="shop", key="studio")).reason == "bad_signature"  # another member's key
    assert rejected(deposit(chain="evledger-other")).reason == "bad_signature"  # signed for another chain
    a, b = deposit(start=0), deposit(start=1)
    swapped = EntryRecord(Entry(a.entry.body, b.entry.signature), a.items, a.private)
    err = rejected(swapped)
    assert err.reason == "bad_signature" and err.field == "entry.signature"
    assert rejected(credit(key="court-credit")).reason == "bad_signature"
    assert rejected(access("v1", "court", key="v2")).reason == "bad_signature"


def test_unknown_category():
    err = rejected(deposit(category="divorce"))
    assert err.reason == "unknown_category" and err.field == "deposit.items[0].category"
    assert "valid: audio-video, chat-record" in str(err)
    assert check_record(RULES, MemoryView(), deposit(category="patent"), T)  # defined by this genesis


@pytest.mark.parametrize("record, field", [
    pytest.param(lambda: deposit(MAX_ITEMS + 1), "deposit.item_count", id="items"),
    pytest.param(lambda: deposit(meta={"a": 1, "b": 2, "c": 3, "d": 4}), "deposit.items[0].public_meta",
                 id="item-meta"),
    pytest.param(lambda: deposit(case="x" * (MAX_CASE + 1)), "deposit.items[0].case", id="item-case"),
    pytest.param(lambda: credit(meta={"a": 1, "b": 2, "c": 3, "d": 4}), "credit_event.public_meta", id="event-meta"),
    pytest.param(lambda: credit(evidence=["0" * 25] * (MAX_CODES + 1)), "credit_event.evidence", id="credit-codes"),
    pytest.param(lambda: case_event(codes=["0" * 25] * (MAX_CODES + 1)), "case_event.codes", id="case-codes"),
    pytest.param(lambda: case_event(case="x" * (MAX_CASE + 1)), "case_event.case", id="event-case"),
    pytest.param(lambda: access(codes=["0" * 25] * (MAX_CODES + 1)), "access_record.codes", id="access-codes"),
])
def test_limit_exceeded(record, field):
    err = rejected(record())
    assert err.reason == "limit_exceeded" and err.field == field, str(err)


def test_private_metadata_counts_against_the_limit():
    part = PrivateMeta(salt=bytes(16), fields={"a": 1, "b": 2, "c": 3, "d": 4})
    it = DepositItem(digest=bytes(32), sm3=None, category="general", case=None, public_meta={},
                     private_commitment=part.commitment())
    rec = make_deposit([it], "shop", T, KEYS["shop"], CHAIN, private=[part])
    err = rejected(rec)
    assert err.reason == "limit_exceeded" and err.field == "deposit.private[0].fields"
    assert check_record(RULES, MemoryView(), deposit(private=True), T)


def test_limits_at_the_boundary_are_accepted():
    assert len(check_record(RULES, MemoryView(), deposit(MAX_ITEMS, meta={"a": 1, "b": 2, "c": 3},
                                                         case="x" * MAX_CASE), T)) == MAX_ITEMS


@pytest.mark.parametrize("record, field", [
    pytest.param(lambda: deposit(client_time=T - WINDOW - 1), "deposit.client_time", id="deposit-old"),
    pytest.param(lambda: deposit(client_time=T + WINDOW + 1), "deposit.client_time", id="deposit-future"),
    pytest.param(lambda: credit(client_time=T - WINDOW - 1), "credit_event.client_time", id="credit-old"),
    pytest.param(lambda: credit(occurred_at=T + WINDOW + 1), "credit_event.occurred_at", id="credit-occurs-later"),
    pytest.param(lambda: case_event(client_time=T + WINDOW + 1), "case_event.client_time", id="case-future"),
    pytest.param(lambda: access(accessed_at=T - WINDOW - 1), "access_record.accessed_at", id="access-old"),
])
def test_stale_timestamp(record, field):
    err = rejected(record())
    assert err.reason == "stale_timestamp" and err.field == field


def test_timestamps_at_the_window_edges_are_accepted():
    for t in (T - WINDOW, T + WINDOW):
        check_record(RULES, MemoryView(), deposit(client_time=t), T)
    check_record(RULES, MemoryView(), credit(occurred_at=T + WINDOW, client_time=T), T)
    check_record(RULES, MemoryView(), credit(occurred_at=0), T)  # an old event may be reported late


def test_already_deposited_across_blocks():
    rec = deposit(2)
    view = on_chain(rec)
    err = rejected(rec, view)
    assert err.reason == "already_deposited"
    assert err.codes == deposit_codes(CHAIN, rec)
    assert str(err.codes[0]) in str(err)
    # the same evidence in a new deposit (new signature) is a new deposit with new codes
    again = deposit(2, client_time=T + 1)
    assert check_record(RULES, view, again, T) != err.codes


def test_already_deposited_within_a_block():
    rec = deposit(1)
    with pytest.raises(EntryRejected) as info:
        apply_block(RULES, MemoryView(), T, [deposit(1, start=7), rec, credit(), rec])
    err = info.value
    assert err.reason == "already_deposited" and err.entry_index == 3
    assert err.field == "records[3].deposit" and str(err).startswith("entry 3: ")
    assert err.codes == deposit_codes(CHAIN, rec)
    # check_record sees the block's earlier codes through pending_codes
    pending = {c.key for c in deposit_codes(CHAIN, rec)}
    assert rejected(rec, pending=pending).reason == "already_deposited"


def test_resubmission_is_idempotent():
    """The same signed deposit yields the same codes and is reported, never stored twice."""
    first = deposit(3)
    resubmitted = EntryRecord.decode(first.encode())
    assert deposit_codes(CHAIN, resubmitted) == deposit_codes(CHAIN, first)
    view = on_chain(first)
    assert rejected(resubmitted, view).codes == deposit_codes(CHAIN, first)
    accepted, rejections = filter_valid(RULES, view, T, [resubmitted])
    assert accepted == [] and [r.reason for r in rejections] == ["already_deposited"]


def test_already_recorded_for_replayed_events():
    for rec in (credit(), case_event(), access()):
        err = rejected(rec, on_chain(rec))
        assert err.reason == "already_recorded", str(err)
        with pytest.raises(EntryRejected) as info:
            apply_block(RULES, MemoryView(), T, [rec, rec])
        assert info.value.reason == "already_recorded" and info.value.entry_index == 1


def test_unknown_code():
    ghost = derive_code(CHAIN, bytes(64), index=0).compact
    for rec, field in ((case_event(codes=[ghost]), "case_event.codes[0]"),
                       (credit(evidence=[ghost]), "credit_event.evidence[0]"),
                       (access(codes=[ghost]), "access_record.codes[0]")):
        err = rejected(rec)
        assert err.reason == "unknown_code" and err.field == field
    dep = deposit(2)
    assert check_record(RULES, on_chain(dep), case_event(codes=[compact(dep, 1)]), T) == []


def test_case_event_may_cite_a_deposit_earlier_in_the_same_block_only():
    dep = deposit(2, case="(2025)京0491民初1号")
    ev = case_event(codes=[compact(dep, 0), compact(dep, 1)])
    effects = apply_block(RULES, MemoryView(), T, [dep, ev])
    keys = tuple(c.key for c in deposit_codes(CHAIN, dep))
    assert effects.cases == {"(2025)京0491民初1号": keys}  # no repeats
    with pytest.raises(EntryRejected) as info:
        apply_block(RULES, MemoryView(), T, [ev, dep])
    assert info.value.reason == "unknown_code" and info.value.entry_index == 0


def test_case_index_collects_items_and_case_events():
    old = deposit(1, start=50)
    view = on_chain(old)
    a = deposit(2, case="case-a")
    b = deposit(1, start=9, case="case-b")
    ev = case_event(case="case-b", codes=[compact(old), compact(a, 1)])
    effects = apply_block(RULES, view, T, [a, b, ev])
    ka = [c.key for c in deposit_codes(CHAIN, a)]
    kb = [c.key for c in deposit_codes(CHAIN, b)]
    assert effects.cases == {"case-a": tuple(ka), "case-b": (kb[0], deposit_codes(CHAIN, old)[0].key, ka[1])}
    assert effects.entry_codes == (tuple(ka), tuple(kb), ())
    assert effects.entry_keys == {entry_key(ev.entry): 2}


# --------------------------------------------------------------------------- order of checks


@pytest.mark.parametrize("record, reason", [
    pytest.param(lambda: deposit(signer="outsider", client_time=0), "unknown_member", id="member-before-time"),
    pytest.param(lambda: deposit(signer="court", category="divorce"), "not_permitted", id="role-before-category"),
    pytest.param(lambda: deposit(MAX_ITEMS + 1, client_time=0), "limit_exceeded", id="items-before-time"),
    pytest.param(lambda: deposit(client_time=0, category="divorce"), "stale_timestamp", id="time-before-category"),
    pytest.param(lambda: deposit(category="divorce", key="studio"), "unknown_category", id="category-before-sig"),
    pytest.param(lambda: deposit(client_time=0, key="studio"), "stale_timestamp", id="time-before-signature"),
    pytest.param(lambda: access("shop", "outsider"), "not_permitted", id="signer-before-accessor"),
])
def test_first_failing_check_is_the_verdict(record, reason):
    assert rejected(record()).reason == reason


def test_bad_signature_is_reported_before_duplicates():
    rec = deposit()
    forged = EntryRecord(Entry(rec.entry.body, deposit(start=3).entry.signature), rec.items, rec.private)
    assert rejected(forged, on_chain(rec)).reason == "bad_signature"


# --------------------------------------------------------------------------- determinism and purity


def independent_records():
    return [deposit(2, start=10), deposit(1, signer="studio", start=20), credit(), case_event("notary"),
            access("obs", "arbiter"), deposit(signer="court"), deposit(category="nope", start=30),
            deposit(client_time=0, start=40), credit("shop")]


def verdict(record, view):
    try:
        return ("ok", [c.compact for c in check_record(RULES, view, record, T)])
    except EntryRejected as err:
        return (err.reason, err.field)


def test_verdict_does_not_depend_on_call_order():
    records = independent_records()
    view = on_chain(deposit(start=99))
    expected = [verdict(r, view) for r in records]
    rng = random.Random(1)
    for _ in range(5):
        order = list(range(len(records)))
        rng.shuffle(order)
        got = {i: verdict(records[i], view) for i in order}
        assert [got[i] for i in range(len(records))] == expected


def test_valid_block_effects_do_not_depend_on_order_of_independent_entries():
    records = [r for r in independent_records() if verdict(r, MemoryView())[0] == "ok"]
    base = apply_block(RULES, MemoryView(), T, records)
    rng = random.Random(2)
    for _ in range(5):
        shuffled = records[:]
        rng.shuffle(shuffled)
        other = apply_block(RULES, MemoryView(), T, shuffled)
        assert set(other.codes) == set(base.codes)
        assert set(other.entry_keys) == set(base.entry_keys)


def test_check_record_is_pure():
    rec = deposit(2)
    pending = {b"x" * 25}
    view = MemoryView()
    check_record(RULES, view, rec, T, pending)
    assert pending == {b"x" * 25} and view.keys == set()
    assert apply_block(RULES, view, T, [rec]) == apply_block(RULES, view, T, [rec])
    assert view.keys == set()


def test_misuse_raises_type_error():
    with pytest.raises(TypeError):
        check_record(RULES, MemoryView(), deposit(), float(T))
    with pytest.raises(TypeError):
        apply_block(RULES, MemoryView(), -1, [])
    assert apply_block(RULES, MemoryView(), T, []) == BlockEffects()


# --------------------------------------------------------------------------- filter_valid


def test_filter_valid_cuts_a_block_that_applies():
    a, b = deposit(2), deposit(1, signer="studio")
    pool = [a, deposit(signer="court"), b, a, credit(), credit(), case_event(codes=[compact(a)]),
            deposit(category="nope", start=5)]
    accepted, rejections = filter_valid(RULES, MemoryView(), T, pool)
    assert accepted == [a, b, pool[4], pool[6]]
    assert [(r.index, r.reason) for r in rejections] == [
        (1, "not_permitted"), (3, "already_deposited"), (5, "already_recorded"), (7, "unknown_category")]
    assert rejections[1].error.codes == deposit_codes(CHAIN, a)
    assert all(r.record is pool[r.index] and r.error.entry_index == r.index for r in rejections)
    effects = apply_block(RULES, MemoryView(), T, accepted)
    assert len(effects.codes) == 3 and len(effects.entry_keys) == 2


def test_filter_valid_never_keeps_an_on_chain_deposit():
    rec = deposit()
    accepted, rejections = filter_valid(RULES, on_chain(rec), T, [rec, rec])
    assert accepted == [] and [r.reason for r in rejections] == ["already_deposited"] * 2


# --------------------------------------------------------------------------- example genesis


def test_rules_from_the_example_genesis():
    from pathlib import Path

    g = load_genesis(Path(__file__).resolve().parents[2] / "config" / "genesis.example.json")
    rules = Rules.from_genesis(g)
    assert rules.chain_id == g.chain_id
    assert "general" in rules.categories
    assert {"depositor"} <= rules.members["ecommerce"].roles
    assert rules.limits == g.limits
