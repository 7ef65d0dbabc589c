"""What the HTTP API asks of a node: the answers behind each endpoint.

``runtime.http_api`` parses and checks requests and shapes errors; this module
computes the answers from the node's store, pool and replica, and hands deposits
and access records to consensus through the node.  It holds no state of its own:
everything lives on the :class:`node.Node` it serves (``node.py`` builds it).
"""

from __future__ import annotations

import base64
from typing import Any

from consensus import io
from ledger.codec import Fields, Limits, decode
from ledger.errors import DecodeError, InputError
from ledger.genesis import format_time
from ledger.model import AccessRecord, Deposit, Entry, EntryRecord
from ledger.receipt import build_receipt
from ledger.state import entry_key

from .commit_waiters import TooManyWaiters
from .http_api import ApiFailure
from .pool import PoolFull

MAX_REQUEST_RECORDS = 10_000
BODY_LIMITS = Limits(max_bytes=16 * 1024 * 1024, max_bin=4 * 1024 * 1024, max_array=10_000)


class NodeService:
    """The :class:`runtime.http_api.Service` of one node."""

    def __init__(self, node: Any):
        self.node = node
        self.chain_id = node.chain_id
        self.genesis = node.genesis
        self.name = node.name
        self.role = node.role
        self.verifier = node.verifier
        self.registry = node.registry
        self._genesis_json = node.genesis.to_json()

    # The node's parts, read at call time (they exist once the node has started).
    store = property(lambda self: self.node.store)
    pool = property(lambda self: self.node.pool)
    replica = property(lambda self: self.node.replica)
    transport = property(lambda self: self.node.transport)
    setup = property(lambda self: self.node.setup)

    def now_ms(self) -> int:
        return self.node.now_ms()

    def step(self, event: Any) -> None:
        self.node.step(event)

    def _view_and_primary(self, height: int) -> tuple[int, str]:
        """A validator's own view; an observer follows no views, so the view of the last
        block it holds, whose proposer was that view's primary."""
        header = self.store.header(height) if self.role != "validator" and height >= 1 else None
        if header is None:
            return self.replica.view, self.replica.primary()
        return header.view, header.proposer

    def status(self) -> dict:
        head = self.store.head()
        view, primary = self._view_and_primary(head.height)
        return {"node": self.name, "role": self.role, "chain_id": self.chain_id, "height": head.height,
                "view": view, "primary": primary,
                "last_block_hash": head.header_hash.hex(), "history_size": head.history_size,
                "pending": len(self.pool), "peers_connected": sorted(self.transport.connected()),
                "version": self.node.version, "genesis_fingerprint": self.genesis.fingerprint()}

    def submit_deposits(self, body: bytes, content_type: str, caller: str) -> tuple[int, dict]:
        records = _decode_deposit_request(body, content_type)
        if not records:
            raise ApiFailure(400, "malformed_request", "the request holds no records: nothing to deposit")
        for i, record in enumerate(records):
            if record.entry.signer != caller or not isinstance(record.entry.body, Deposit):
                raise ApiFailure(403, "not_permitted", "record %d is not a deposit signed by %s" % (i, caller))
        try:
            outcomes = self.pool.admit(records, self.now_ms())
        except PoolFull as full:
            status = 429 if full.per_client else 503
            raise ApiFailure(status, "busy" if status == 503 else "rate_limited", str(full),
                             retry_after=full.retry_after_s) from None
        rejected = [o for o in outcomes if o.state == "rejected"]
        if rejected:
            first = rejected[0]
            raise ApiFailure(403 if first.error.reason in ("not_permitted", "unknown_member") else 400,
                             first.error.reason, "record %d: %s" % (outcomes.index(first), first.error))
        fresh = [o.record for o in outcomes if o.state == "new"]
        if fresh:
            if self.role == "validator":
                for record in fresh:
                    self.step(io.ClientRequest(record))
            self.node.forward(fresh)
        deposits = []
        for o in outcomes:
            items = o.record.items
            for key, item, height in zip(o.keys, items, o.heights or [None] * len(items)):
                deposits.append({"code": _printed_key(key), "digest": item.digest.hex(),
                                 "state": "committed" if o.state == "committed" else "pending", "height": height})
        all_committed = all(o.state == "committed" for o in outcomes)
        return (200 if all_committed else 202), {"deposits": deposits}

    def deposit_view(self, code_key: bytes) -> dict:
        loc = self.store.locate(code_key)
        if loc is None:
            pending = self.pool.pending_item(code_key)
            if pending is None:
                raise ApiFailure(404, "not_found", "no deposit with this code on chain %s" % self.chain_id)
            return self._view(code_key, *pending, None, None)  # waiting in this node's pool: no block yet
        record = self.store.record(loc.height, loc.entry_index)
        return self._view(code_key, record, loc.item_index, loc.height, self.store.header(loc.height).timestamp)

    def _view(self, code_key: bytes, record: EntryRecord, index: int, height: int | None,
              block_time: int | None) -> dict:
        """The public view of one deposit item: committed at ``height`` (block time in ms), or pending."""
        item = record.items[index]
        member = self.genesis.member(record.entry.signer)
        return {"code": _printed(code_key), "state": "pending" if height is None else "committed",
                "digest": item.digest.hex(), "sm3": None if item.sm3 is None else item.sm3.hex(),
                "category": item.category, "case": item.case,
                "deposited_at": None if block_time is None else format_time(block_time),
                "deposited_at_ms": block_time, "height": height, "depositor": record.entry.signer,
                "depositor_name": member.display_name if member else record.entry.signer,
                "public_meta": dict(item.public_meta)}

    async def wait_committed(self, code_key: bytes, timeout_s: float, source: str) -> None:
        """Return once ``code_key`` is committed here, or after ``timeout_s`` (the view says
        which).  Only a code pending in this node's pool is waited for: one committed, or
        unknown here, is answered at once."""
        if self.pool.state_of(code_key) != "pending":  # the pool lets a deposit go when its block is appended
            return
        try:
            await self.node.waiters.wait(code_key, timeout_s, source)
        except TooManyWaiters as full:
            raise ApiFailure(503, "busy", "%s; retry later" % full, retry_after=1) from None

    def full_deposit_view(self, code_key: bytes, caller: str) -> dict:
        """The full record (private metadata included) for a caller role; the access goes on chain."""
        view = self.deposit_view(code_key)
        if view["state"] == "committed":
            loc = self.store.locate(code_key)
            view["private_meta"] = self._private_fields(loc)
            self._record_access(caller, None, [code_key], "deposit lookup")
        return view

    def case_view(self, case: str, caller: str, limit: int, after: bytes | None) -> dict:
        """Every deposit filed under ``case``, full records; the retrieval is recorded on chain."""
        keys = self.store.codes_for_case(case, limit=limit, after=after)
        deposits = []
        for key in keys:
            view = self.deposit_view(key)
            view["private_meta"] = self._private_fields(self.store.locate(key))
            deposits.append(view)
        access = self._record_access(caller, case, keys, "case query") if keys else None
        return {"case": case, "deposits": deposits, "next": _printed(keys[-1]) if len(keys) == limit else None,
                "access_record": access}

    def _private_fields(self, loc) -> dict:
        record = self.store.record(loc.height, loc.entry_index)
        part = record.private[loc.item_index] if loc.item_index < len(record.private) else None
        return {} if part is None else dict(part.fields)

    def _record_access(self, accessor: str, case: str | None, code_keys: list[bytes], purpose: str) -> str:
        """Sign an access record with this node's key and hand it to consensus like a deposit."""
        body = AccessRecord(recorder=self.name, accessor=accessor, case=case,
                            codes=tuple(k.decode("ascii") for k in code_keys), purpose=purpose,
                            accessed_at=self.now_ms())
        record = EntryRecord(Entry.sign(body, self.setup.key, self.chain_id), (), ())
        try:
            outcomes = self.pool.admit([record], self.now_ms())
        except PoolFull as full:
            raise ApiFailure(503, "busy", "the access cannot be recorded now (%s); retry later" % full,
                             retry_after=full.retry_after_s) from None
        if outcomes[0].state == "rejected":
            raise ApiFailure(500, "access_not_recorded", "the access could not be recorded: %s" % outcomes[0].error)
        if self.role == "validator":
            self.step(io.ClientRequest(record))
        self.node.forward([record])
        return entry_key(record.entry).hex()

    def receipt(self, code_key: bytes) -> dict:
        """The self-contained receipt of a committed deposit (ledger/receipt.py, docs/receipt.md)."""
        try:
            return build_receipt(self.store, self.genesis, code_key)
        except InputError as exc:
            if exc.reason == "not_found":
                if self.pool.state_of(code_key) == "pending":
                    raise ApiFailure(404, "not_found", "the deposit is not committed yet; retry shortly") from None
                raise ApiFailure(404, "not_found", "no deposit with this code on chain %s" % self.chain_id) from None
            raise

    def genesis_document(self) -> str:
        return self._genesis_json

    def verify(self, code_key: bytes, digest: bytes) -> dict:
        view = self.deposit_view(code_key)
        if view["state"] != "committed":
            raise ApiFailure(404, "not_found", "this deposit is not committed yet")
        matches = view["digest"] == digest.hex()
        return {"match": matches, "verdict": "match" if matches else "mismatch", "code": view["code"],
                "height": view["height"],
                "deposited_at": view["deposited_at"], "depositor": view["depositor"], "category": view["category"]}

    def block_view(self, height: int) -> dict:
        block = self.store.block(height) if height >= 1 else None
        if block is None:
            raise ApiFailure(404, "not_found", "no block at height %d (head is %d)" % (height,
                                                                                      self.store.head().height))
        cert = self.store.certificate(height)
        h = block.header
        return {"header": {"chain_id": h.chain_id, "height": h.height, "prev_hash": h.prev_hash.hex(),
                           "entries_root": h.entries_root.hex(), "entry_count": h.entry_count,
                           "history_size": h.history_size, "history_root": h.history_root.hex(),
                           "timestamp": h.timestamp, "view": h.view, "proposer": h.proposer,
                           "validator_set_hash": h.validator_set_hash.hex(), "hash": h.hash().hex()},
                "entries": [base64.b64encode(r.entry.encode()).decode() for r in block.records],
                "certificate": {"header_hash": cert.header_hash.hex(),
                                "signatures": [{"validator": n, "signature": s.hex()} for n, s in cert.signatures]}}


def _printed_key(code_key: bytes) -> str:
    """``str(DepositCode)`` from its store key (the compact form), without re-deriving it."""
    c = code_key.decode("ascii")
    return "EV-%s-%s-%s-%s-%s" % (c[0:5], c[5:10], c[10:15], c[15:20], c[20:25])


def _printed(code_key: bytes) -> str:
    from ledger.codes import DepositCode

    return str(DepositCode.from_compact(code_key.decode("ascii")))


def _decode_deposit_request(body: bytes, content_type: str) -> list[EntryRecord]:
    try:
        if content_type == "application/msgpack":
            fields = Fields("deposit_request", decode(body, BODY_LIMITS, typed=True), 3)
            fields.header("deposit-request", 1)
            wires = fields.list("records", MAX_REQUEST_RECORDS)
            return [EntryRecord.from_wire(r, "deposit_request.records[%d]" % i) for i, r in enumerate(wires)]
        if content_type == "application/json":
            return _decode_json_deposits(body)
    except DecodeError as exc:
        raise ApiFailure(400, "malformed_request", str(exc)) from None
    raise ApiFailure(415, "unsupported_media_type", "send application/msgpack or application/json")


def _decode_json_deposits(body: bytes) -> list[EntryRecord]:
    import binascii
    import json

    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DecodeError("body is not valid JSON: %s" % exc) from None
    if not isinstance(doc, dict) or set(doc) != {"records"} or not isinstance(doc["records"], list):
        raise DecodeError('expected {"records": [base64 of an encoded entry record, ...]}')
    if len(doc["records"]) > MAX_REQUEST_RECORDS:
        raise DecodeError("at most %d records per request" % MAX_REQUEST_RECORDS)
    out = []
    for i, text in enumerate(doc["records"]):
        try:
            raw = base64.b64decode(text, validate=True) if isinstance(text, str) else None
        except (binascii.Error, ValueError):
            raw = None
        if raw is None:
            raise DecodeError("records[%d]: not standard base64" % i)
        out.append(EntryRecord.decode(raw, BODY_LIMITS))
    return out
