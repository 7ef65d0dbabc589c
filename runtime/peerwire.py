"""What nodes say to each other over the peer transport, besides consensus votes.

Every transport frame starts with one kind byte:

======  ===========  ==========================================================
 0x01   consensus    the rest is a consensus message, handed to the replica as is
 0x02   requests     ``encode(["requests", 1, [entry_record_wire, ...]])``: client
                     deposits this node admitted, forwarded to every validator so
                     the primary can order them and backups can watch it do so
 0x03   fetch        ``encode(["fetch", 1, from_height, to_height])``: state
                     transfer asks for committed blocks
 0x04   blocks       ``encode(["blocks", 1, [[block_wire, certificate_wire], ...]])``:
                     the answer, consecutive blocks from ``from_height`` (possibly
                     fewer than asked, or none)
======  ===========  ==========================================================

Decoding is strict (``ledger.codec``); anything else is a :class:`DecodeError`
and the sender is reported, never trusted.
"""

from __future__ import annotations

from typing import Sequence

from ledger.block import Block, CommitCertificate
from ledger.codec import Fields, Limits, array_header, decode, encode
from ledger.errors import DecodeError
from ledger.model import EntryRecord

CONSENSUS, REQUESTS, FETCH, BLOCKS = 0x01, 0x02, 0x03, 0x04
KINDS = {CONSENSUS: "consensus", REQUESTS: "requests", FETCH: "fetch", BLOCKS: "blocks"}
MAX_FETCH = 64
MAX_REQUEST_RECORDS = 10_000
LIMITS = Limits(max_bytes=64 * 1024 * 1024, max_bin=8 * 1024 * 1024, max_array=100_000)


def split(frame: bytes) -> tuple[int, bytes]:
    if not frame:
        raise DecodeError("empty frame")
    kind = frame[0]
    if kind not in KINDS:
        raise DecodeError("unknown frame kind 0x%02x" % kind)
    return kind, frame[1:]


def consensus(data: bytes) -> bytes:
    return bytes([CONSENSUS]) + data


def requests(records: Sequence[EntryRecord]) -> bytes:
    # Spliced from each record's canonical bytes: the same bytes as
    # encode(["requests", 1, [r.wire() for r in records]]), without the generic walk.
    return b"".join([bytes([REQUESTS]), array_header(3), encode("requests"), encode(1), array_header(len(records)),
                     *(r.encode() for r in records)])


def parse_requests(body: bytes) -> list[EntryRecord]:
    fields = Fields("requests", decode(body, LIMITS, typed=True), 3)
    fields.header("requests", 1)
    return [EntryRecord.from_wire(r, "requests.records[%d]" % i)
            for i, r in enumerate(fields.list("records", MAX_REQUEST_RECORDS))]


def fetch(from_height: int, to_height: int) -> bytes:
    return bytes([FETCH]) + encode(["fetch", 1, from_height, to_height])


def parse_fetch(body: bytes) -> tuple[int, int]:
    fields = Fields("fetch", decode(body, LIMITS, typed=True), 4)
    fields.header("fetch", 1)
    low = fields.int("from_height", 1)
    high = fields.int("to_height", low)
    return low, min(high, low + MAX_FETCH - 1)


def blocks(pairs: Sequence[tuple[Block, CommitCertificate]]) -> bytes:
    return blocks_raw([(b.header.wire(), [r.encode() for r in b.records], c.wire()) for b, c in pairs])


def blocks_raw(parts: Sequence[tuple[list, Sequence[bytes], list]]) -> bytes:
    """Like :func:`blocks` from ``(header_wire, encoded_records, certificate_wire)``.

    Stored records are spliced in as they are (they are canonical), so serving a
    fetch never decodes and re-encodes thousands of items.
    """
    out = [bytes([BLOCKS]), array_header(3), encode("blocks"), encode(1), array_header(len(parts))]
    for header_wire, records, cert_wire in parts:
        out += [array_header(2), array_header(4), encode("block"), encode(1), encode(header_wire),
                array_header(len(records)), *records, encode(cert_wire)]
    return b"".join(out)


def parse_blocks(body: bytes, after: int = -1) -> tuple[list[tuple[Block, CommitCertificate]], int]:
    """The blocks of a fetch answer, and how many were left out as stale.

    A block at or below height ``after`` (what the replica has delivered) is left
    out after its header is read: the replica would skip it, and reading its
    records (the Python part of decoding) costs as much as a PRE-PREPARE's.  A
    replica that asked for blocks while it lagged, then caught up through the
    ordinary votes, receives exactly such answers.
    """
    fields = Fields("blocks", decode(body, LIMITS, typed=True), 3)
    fields.header("blocks", 1)
    out, stale = [], 0
    for i, pair in enumerate(fields.list("blocks", MAX_FETCH)):
        sub = Fields("blocks[%d]" % i, pair, 2)
        block_wire, _ = sub.raw("block")
        cert_wire, where = sub.raw("certificate")
        if Block.height_of_wire(block_wire, "blocks[%d].block" % i) <= after:
            stale += 1
            continue
        out.append((Block.from_wire(block_wire, "blocks[%d].block" % i), CommitCertificate.from_wire(cert_wire, where)))
    return out, stale

