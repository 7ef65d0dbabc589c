"""Entries, blocks and certificates: round trips, strict decoding, signatures."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ledger import merkle
from ledger.block import (
    Block, BlockHeader, CommitCertificate, ValidatorSet, ZERO_HASH, max_faulty, quorum, sign_commit,
)
from ledger.codec import decode, encode
from ledger.crypto import SecretKey
from ledger.errors import DecodeError, SignatureError
from ledger.model import (
    AccessRecord, CaseEvent, CreditEvent, DepositItem, Entry, EntryRecord, PrivateMeta, make_deposit,
)

CHAIN = "test-chain"
KEY = SecretKey.generate()


def item(n: int = 0, **kw) -> DepositItem:
    args = dict(digest=n.to_bytes(32, "big"), sm3=None, category="copyright", case=None,
                public_meta={"title": "作品 %d" % n}, private_commitment=None)
    args.update(kw)
    return DepositItem(**args)


def test_deposit_round_trip_and_signature():
    private = PrivateMeta(salt=b"s" * 16, fields={"id_number": "110101199001011234"})
    items = [item(1), item(2, case="(2026)京0491民初1号", private_commitment=private.commitment(), sm3=b"\x07" * 32)]
    record = make_deposit(items, "ecommerce", 1_700_000_000_000, KEY, CHAIN, private=[None, private])
    again = EntryRecord.decode(record.encode())
    assert again == record
    again.entry.verify(KEY.public, CHAIN)
    with pytest.raises(SignatureError):
        again.entry.verify(KEY.public, "other-chain")
    assert record.entry.signer == "ecommerce" and record.entry.tag == "deposit"
    codes = {record.entry.item_code(CHAIN, i) for i in range(2)}
    assert len(codes) == 2


def test_private_fields_never_enter_the_leaf():
    a = PrivateMeta(salt=b"a" * 16, fields={"name": "张三"})
    b = PrivateMeta(salt=b"b" * 16, fields={"name": "张三"})
    assert a.commitment() != b.commitment()  # salted: equal values are not linkable
    record = make_deposit([item(1, private_commitment=a.commitment())], "ecommerce", 1, KEY, CHAIN, private=[a])
    assert "张三".encode() not in record.entry.encode()
    assert "张三".encode() in record.encode()


def test_record_consistency_is_checked():
    good = make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN)
    with pytest.raises(DecodeError, match="announces 1 items but carries 2"):
        EntryRecord(good.entry, (item(1), item(2)), (None, None))
    with pytest.raises(DecodeError, match="items_root"):
        EntryRecord(good.entry, (item(3),), (None,))
    private = PrivateMeta(salt=b"s" * 16, fields={"k": "v"})
    with pytest.raises(DecodeError, match="present exactly when"):
        EntryRecord(good.entry, good.items, (private,))
    with pytest.raises(DecodeError, match="does not match its commitment"):
        make_deposit([item(1, private_commitment=bytes(32))], "ecommerce", 1, KEY, CHAIN, [private])
    with_commitment = make_deposit([item(1, private_commitment=private.commitment())], "ecommerce", 1, KEY, CHAIN,
                                   [private])
    wire = with_commitment.wire()
    wire[4][0][3] = {"k": "changed"}
    with pytest.raises(DecodeError, match="does not match its commitment"):
        EntryRecord.decode(encode(wire))


def test_each_field_error_names_the_field():
    record = make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN)
    wire = record.wire()
    wire[3][0][2] = b"short"  # item digest
    with pytest.raises(DecodeError, match=r"deposit-item\.digest: expected 32 bytes, got 5"):
        EntryRecord.decode(encode(wire))
    wire = record.wire()
    wire[2][2][1] = 2  # body version
    with pytest.raises(DecodeError, match="unsupported version 2"):
        EntryRecord.decode(encode(wire))
    wire = record.wire()
    wire[2][2].append(1)  # extra field
    with pytest.raises(DecodeError, match="expected 6 fields, got 7"):
        EntryRecord.decode(encode(wire))
    wire = record.wire()
    wire[2][2][2] = "Not A Name"
    with pytest.raises(DecodeError, match=r"deposit\.depositor"):
        EntryRecord.decode(encode(wire))


@pytest.mark.parametrize("tag, reason", [("governance", "unsupported_entry_type"), ("teleport", "unknown_entry_type")])
def test_reserved_and_unknown_entry_types_are_refused(tag, reason):
    record = make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN)
    wire = record.wire()
    wire[2][2][0] = tag
    with pytest.raises(DecodeError) as info:
        EntryRecord.decode(encode(wire))
    assert info.value.reason == reason


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: item(1, category=""), "must not be empty"),
        (lambda: item(1, category="x\x00y"), "category"),
        (lambda: item(1, public_meta={"K": "v"}), "key"),
        (lambda: item(1, public_meta={"k": 1.5}), "expected a string"),
        (lambda: item(1, public_meta={str(i): "v" for i in range(33)}), "limit of 32"),
        (lambda: item(1, public_meta={"k": "v" * 1025}), "limit of 1024"),
        (lambda: item(1, case="c" * 129), "limit of 128"),
        (lambda: item(1, sm3=b"x"), "expected 32 bytes"),
    ],
)
def test_locally_built_objects_obey_the_same_rules(build, message):
    with pytest.raises(DecodeError, match=message):
        build()


def test_event_types_round_trip():
    code = make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN).entry.item_code(CHAIN, 0).compact
    private = PrivateMeta(salt=b"s" * 16, fields={"subject_name": "李四"})
    bodies = [
        (CreditEvent(source="bank", subject="subject-7f3a", dimension="contract", kind="overdue", score_delta=-5,
                     occurred_at=2, evidence=(code,), public_meta={}, private_commitment=private.commitment(),
                     client_time=3), (private,)),
        (CaseEvent(actor="court", case="(2026)京0491民初1号", kind="attach_evidence", codes=(code,),
                   public_meta={"note": "ok"}, private_commitment=None, client_time=4), (None,)),
        (AccessRecord(recorder="court-node", accessor="court", case=None, codes=(code,), purpose="trial",
                      accessed_at=5), ()),
    ]
    for body, priv in bodies:
        record = EntryRecord(Entry.sign(body, KEY, CHAIN), (), priv)
        again = EntryRecord.decode(record.encode())
        assert again == record
        again.entry.verify(KEY.public, CHAIN)
    with pytest.raises(DecodeError, match="codes"):
        CaseEvent(actor="court", case="c", kind="k", codes=("not-a-code",), public_meta={},
                  private_commitment=None, client_time=1)


@settings(max_examples=60)
@given(st.lists(st.tuples(st.binary(min_size=32, max_size=32), st.sampled_from(["copyright", "e-contract"]),
                          st.one_of(st.none(), st.text(min_size=1, max_size=20).filter(lambda s: s.isprintable()))),
                min_size=1, max_size=5),
       st.integers(0, 2**62))
def test_random_deposits_round_trip(specs, client_time):
    items = [DepositItem(digest=d, sm3=None, category=c, case=case, public_meta={}, private_commitment=None)
             for d, c, case in specs]
    record = make_deposit(items, "copyright-platform", client_time, KEY, CHAIN)
    assert EntryRecord.decode(record.encode()) == record


@settings(max_examples=200)
@given(st.data())
def test_mutated_records_never_raise_anything_but_decode_error(data):
    record = make_deposit([item(1), item(2)], "ecommerce", 1, KEY, CHAIN)
    raw = bytearray(record.encode())
    for _ in range(data.draw(st.integers(1, 3))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.integers(0, 255))
    try:
        EntryRecord.decode(bytes(raw))
    except DecodeError:
        pass


# ---------------------------------------------------------------- blocks and certificates

def validators(n):
    keys = {"v%d" % i: SecretKey.generate() for i in range(n)}
    return keys, ValidatorSet(tuple((name, k.public) for name, k in keys.items()))


def header_for(records, vset, height=1):
    leaves = [r.entry.leaf_hash() for r in records]
    return BlockHeader(chain_id=CHAIN, height=height, prev_hash=ZERO_HASH, entries_root=merkle.root(leaves),
                       entry_count=len(leaves), history_size=len(leaves), history_root=merkle.root(leaves),
                       timestamp=1_700_000_000_000, view=0, proposer="v0", validator_set_hash=vset.hash())


def test_quorum_arithmetic_matches_a_naive_intersection_rule():
    for n in range(1, 40):
        f = max_faulty(n)
        assert n >= 3 * f + 1
        q = quorum(n)
        naive = min(q2 for q2 in range(1, n + 1) if 2 * q2 - n >= f + 1)
        assert q == naive and q <= n - f
    assert quorum(4) == 3 and quorum(7) == 5


def test_block_round_trip_and_certificate():
    keys, vset = validators(4)
    records = tuple(make_deposit([item(i)], "ecommerce", i, KEY, CHAIN) for i in range(3))
    header = header_for(records, vset)
    block = Block(header, records)
    assert Block.decode(block.encode()) == block
    sigs = tuple((name, sign_commit(keys[name], header)) for name in ("v0", "v1", "v2"))
    cert = CommitCertificate(header.hash(), sigs)
    assert CommitCertificate.from_wire(decode(cert.encode())) == cert
    cert.verify(header, vset)


def test_certificate_needs_a_quorum_of_distinct_valid_members():
    keys, vset = validators(4)
    header = header_for((), vset)
    good = {name: sign_commit(keys[name], header) for name in keys}
    with pytest.raises(SignatureError, match="only 2 valid") as info:
        CommitCertificate(header.hash(), (("v0", good["v0"]), ("v1", good["v1"]))).verify(header, vset)
    assert info.value.reason == "insufficient_quorum"
    forged = bytes(64)
    with pytest.raises(SignatureError, match="only 2 valid"):
        CommitCertificate(header.hash(), (("v0", good["v0"]), ("v1", good["v1"]), ("v2", forged))).verify(header, vset)
    outsider = SecretKey.generate()
    with pytest.raises(SignatureError, match="only 2 valid"):
        CommitCertificate(header.hash(), (("v0", good["v0"]), ("v1", good["v1"]),
                                          ("zz", sign_commit(outsider, header)))).verify(header, vset)
    with pytest.raises(DecodeError, match="twice"):
        CommitCertificate(header.hash(), (("v0", good["v0"]), ("v0", good["v0"])))
    other = header_for((), vset, height=2)
    with pytest.raises(SignatureError, match="another header"):
        CommitCertificate(header.hash(), tuple(good.items())).verify(other, vset)
    _, other_set = validators(4)
    with pytest.raises(SignatureError, match="another validator set"):
        CommitCertificate(header.hash(), tuple(good.items())).verify(header, other_set)


def test_block_body_must_match_entry_count():
    keys, vset = validators(4)
    records = (make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN),)
    block = Block(header_for(records, vset), records)
    wire = block.wire()
    wire[3].append(wire[3][0])
    with pytest.raises(DecodeError, match="announces 1 entries"):
        Block.decode(encode(wire))


def _bodies():
    return [
        make_deposit([item(7)], "ecommerce", 1_700_000_000_000, KEY, CHAIN).entry.body,
        CreditEvent(source="bank", subject="subject-7f3a", dimension="contract", kind="overdue", score_delta=-5,
                    occurred_at=2, evidence=(), public_meta={"note": "逾期"}, private_commitment=None, client_time=3),
        AccessRecord(recorder="court-node", accessor="court", case="(2026)京0491民初1号", codes=(),
                     purpose="trial", accessed_at=1_700_000_000_000),
    ]


@pytest.mark.parametrize("index", range(3))
def test_an_entry_s_kept_encoding_and_leaf_equal_a_fresh_encoding(index):
    """Entry keeps its body bytes, its encoding (spliced) and its leaf hash once computed:
    each must equal what the generic encoder gives, for signed and for decoded entries."""
    from ledger.codec import encode_wire

    body = _bodies()[index]
    signed = Entry.sign(body, KEY, CHAIN)
    decoded = Entry.from_wire(decode(signed.encode()))
    for entry in (signed, decoded, Entry(body, signed.signature)):
        assert entry.encode() == encode_wire(entry.wire()) == encode(entry.wire())
        assert entry.body_bytes() == encode(body.wire())
        assert entry.leaf_hash() == merkle.leaf_hash(encode(entry.wire()))
        entry.verify(KEY.public, CHAIN)
    assert signed == decoded and hash(signed) == hash(decoded)  # the kept values do not take part


def test_replacing_a_field_does_not_carry_the_kept_encoding():
    import dataclasses

    entry = Entry.sign(_bodies()[0], KEY, CHAIN)
    entry.encode(), entry.leaf_hash()
    other = dataclasses.replace(entry, signature=b"\x01" * 64)
    assert other.encode() == encode(other.wire()) != entry.encode()
    assert other.leaf_hash() != entry.leaf_hash()


def test_a_header_hash_is_remembered_and_always_that_of_its_encoding():
    import dataclasses
    import hashlib

    _, vset = validators(4)
    header = header_for([make_deposit([item(1)], "ecommerce", 1, KEY, CHAIN)], vset)
    assert header.hash() == hashlib.sha256(header.encode()).digest() == header.hash()
    from ledger.wire import from_wire

    read = from_wire(BlockHeader, decode(header.encode()))  # built without __init__
    assert read.hash() == header.hash() and read == header
    later = dataclasses.replace(header, height=2)  # a changed copy does not inherit the hash
    assert later.hash() == hashlib.sha256(later.encode()).digest() != header.hash()
    assert ", _hash=" not in repr(header)
    import copy
    import pickle

    fresh = from_wire(BlockHeader, decode(header.encode()))  # not hashed yet: copies must still work
    for twin in (copy.copy(fresh), copy.deepcopy(fresh), pickle.loads(pickle.dumps(fresh)), dataclasses.replace(fresh)):
        assert twin == header and twin.hash() == header.hash()
