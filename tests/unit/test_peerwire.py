"""Node-to-node frames: round trips, the spliced block encoding, hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from ledger.codec import array_header, decode, encode
from ledger.errors import DecodeError
from ledger.leveldb_store import LevelDBStore
from ledger.memory_store import MemoryStore
from runtime import peerwire
from storehelpers import ChainBuilder


@pytest.mark.parametrize("n", [0, 1, 15, 16, 65535, 65536])
def test_array_header_is_canonical(n):
    elements = [0] * n
    assert array_header(n) + b"\x00" * n == encode(elements)


def test_requests_and_fetch_round_trip():
    chain = ChainBuilder()
    records = [chain.deposit(3), chain.deposit(1)]
    kind, body = peerwire.split(peerwire.requests(records))
    assert kind == peerwire.REQUESTS and peerwire.parse_requests(body) == records
    kind, body = peerwire.split(peerwire.fetch(5, 9))
    assert kind == peerwire.FETCH and peerwire.parse_fetch(body) == (5, 9)
    _, body = peerwire.split(peerwire.fetch(1, 10_000))
    assert peerwire.parse_fetch(body) == (1, peerwire.MAX_FETCH)  # bounded


def test_spliced_blocks_equal_the_canonical_encoding(tmp_path):
    chain = ChainBuilder()
    for store in (MemoryStore(), LevelDBStore.open(tmp_path / "db")):
        for _ in range(3):
            chain.append(store, [chain.deposit(2), chain.deposit(1)])
        pairs = [(store.block(h), store.certificate(h)) for h in (1, 2, 3)]
        raw = peerwire.blocks_raw([(store.header(h).wire(), store.raw_records(h), store.certificate(h).wire())
                                   for h in (1, 2, 3)])
        canonical = bytes([peerwire.BLOCKS]) + encode(["blocks", 1, [[b.wire(), c.wire()] for b, c in pairs]])
        assert raw == canonical == peerwire.blocks(pairs)
        assert peerwire.parse_blocks(peerwire.split(raw)[1]) == (pairs, 0)
        assert peerwire.parse_blocks(peerwire.split(peerwire.blocks([]))[1]) == ([], 0)
        store.close()


def test_blocks_already_delivered_are_left_unread(monkeypatch):
    chain = ChainBuilder()
    store = MemoryStore()
    for _ in range(3):
        chain.append(store, [chain.deposit(2)])
    pairs = [(store.block(h), store.certificate(h)) for h in (1, 2, 3)]
    body = peerwire.split(peerwire.blocks(pairs))[1]
    assert peerwire.parse_blocks(body, after=2) == (pairs[2:], 2)
    assert peerwire.parse_blocks(body, after=3) == ([], 3)
    read = []
    real = peerwire.Block.from_wire
    monkeypatch.setattr(peerwire.Block, "from_wire", lambda w, where="block": read.append(where) or real(w, where))
    peerwire.parse_blocks(body, after=1)
    assert read == ["blocks[1].block", "blocks[2].block"]  # the stale block's records were never read


def test_a_stale_block_with_a_broken_header_is_still_refused():
    bad = bytes([peerwire.BLOCKS]) + encode(["blocks", 1, [[["block", 1, ["header"], []], []]]])
    with pytest.raises(DecodeError, match="block-header: expected 13 fields"):
        peerwire.parse_blocks(peerwire.split(bad)[1], after=10)


@pytest.mark.parametrize("frame, message", [
    (b"", "empty frame"),
    (b"\x09abc", "unknown frame kind"),
    (peerwire.fetch(5, 9)[:-1], "msgpack"),
    (bytes([peerwire.FETCH]) + encode(["fetch", 1, 0, 9]), "from_height"),
    (bytes([peerwire.FETCH]) + encode(["fetch", 1, 9, 5]), "to_height"),
    (bytes([peerwire.FETCH]) + encode(["fetch", 2, 1, 5]), "unsupported version"),
    (bytes([peerwire.REQUESTS]) + encode(["requests", 1, [["junk"]]]), r"requests\.records\[0\]: expected 5 fields"),
    (bytes([peerwire.BLOCKS]) + encode(["blocks", 1, [[1, 2]]]), "block"),
])
def test_hostile_frames_are_refused_with_a_reason(frame, message):
    with pytest.raises(DecodeError, match=message):
        kind, body = peerwire.split(frame)
        {peerwire.FETCH: peerwire.parse_fetch, peerwire.REQUESTS: peerwire.parse_requests,
         peerwire.BLOCKS: peerwire.parse_blocks}[kind](body)


@settings(max_examples=200)
@given(st.binary(max_size=300))
def test_random_frames_only_raise_decode_error(data):
    try:
        kind, body = peerwire.split(data)
        if kind != peerwire.CONSENSUS:
            {peerwire.FETCH: peerwire.parse_fetch, peerwire.REQUESTS: peerwire.parse_requests,
             peerwire.BLOCKS: peerwire.parse_blocks}[kind](body)
    except DecodeError:
        pass


def test_decode_of_blocks_frame_checks_canonical_form():
    body = peerwire.split(peerwire.blocks([]))[1]
    assert decode(body) == ["blocks", 1, []]
