"""Where submitted requests go (runtime/forwarding.py) and the pool's record of local ones."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from ledger.memory_store import MemoryStore
from ledger.state import Rules, deposit_code_keys, deposit_codes
from runtime import forwarding, peerwire
from runtime.forwarding import Forwarder
from runtime.pool import DepositPool
from tests.unit.test_state import GENESIS, T, deposit

RULES = Rules.from_genesis(GENESIS)


class FakeTransport:
    def __init__(self):
        self.sent: list[tuple[str | None, bytes]] = []  # (peer, or None for a broadcast; frame)

    def send(self, peer: str, payload: bytes) -> bool:
        self.sent.append((peer, payload))
        return True

    def broadcast(self, payload: bytes) -> None:
        self.sent.append((None, payload))

    def records(self) -> list[tuple[str | None, list[bytes]]]:
        out = []
        for peer, frame in self.sent:
            kind, body = peerwire.split(frame)
            assert kind == peerwire.REQUESTS
            out.append((peer, [r.entry.signature for r in peerwire.parse_requests(body)]))
        return out


class Clock:
    def __init__(self):
        self.now = 1_000_000

    def __call__(self) -> int:
        return self.now


def _forwarder(target, local=(), clock=None, primary=False):
    transport, resent = FakeTransport(), []
    fwd = Forwarder(transport, lambda: target, lambda: list(local), "notary-node", resent.append,
                    clock=clock or Clock(), resend_ms=4000, is_primary=lambda: primary)
    return fwd, transport, resent


def _run(fn):
    async def main():
        result = fn()
        await asyncio.sleep(0)  # the call_soon flush
        await asyncio.sleep(0)
        return result

    return asyncio.run(main())


def test_a_backup_sends_what_one_loop_turn_admitted_to_the_primary_in_one_frame():
    fwd, transport, _ = _forwarder("court-node")
    records = [deposit(1, start=i * 10) for i in range(3)]
    _run(lambda: [fwd.forward([r]) for r in records])
    assert transport.records() == [("court-node", [r.entry.signature for r in records])]


def test_the_primary_or_a_node_in_a_view_change_sends_to_every_validator():
    fwd, transport, _ = _forwarder(None)
    record = deposit(2)
    _run(lambda: fwd.forward([record]))
    assert transport.records() == [(None, [record.entry.signature])]


def test_frames_are_split_by_size(monkeypatch):
    monkeypatch.setattr(forwarding, "FLUSH_BYTES", 400)
    fwd, transport, _ = _forwarder("court-node")
    records = [deposit(1, start=i * 10) for i in range(6)]
    size = len(records[0].encode())
    assert 200 < size <= 400  # two records per frame exceed the limit and close it
    fwd.send(records, "court-node")
    sent = transport.records()
    assert [sig for _, sigs in sent for sig in sigs] == [r.entry.signature for r in records]
    assert len(sent) == 3 and all(peer == "court-node" for peer, _ in sent)


def test_after_a_complaint_local_requests_go_to_everyone_and_are_counted():
    local = [deposit(3, start=100), deposit(1, start=200)]
    fwd, transport, resent = _forwarder("court-node", local)
    fwd.resend_local(None)
    assert transport.records() == [(None, [r.entry.signature for r in local])]
    assert resent == [4]


def test_a_new_primary_gets_local_requests_but_a_node_never_sends_to_itself():
    local = [deposit(1, start=300)]
    fwd, transport, resent = _forwarder("court-node", local)
    fwd.resend_local("bank-node")
    fwd.resend_local("notary-node")  # this node is the new primary: its replica has them
    assert transport.records() == [("bank-node", [local[0].entry.signature])]
    assert resent == [1]


def test_nothing_local_sends_nothing():
    fwd, transport, resent = _forwarder("court-node", [])
    fwd.resend_local(None)
    assert transport.sent == [] and resent == []


def _pool():
    store = MemoryStore()
    return DepositPool(RULES, store, lambda key: None, max_pending=1000, per_client=1000)


def test_the_pool_knows_which_records_were_submitted_here():
    pool = _pool()
    mine, theirs = deposit(2, start=400), deposit(2, start=500)
    assert [o.state for o in pool.admit([mine], T)] == ["new"]
    assert pool.add_forwarded(theirs, T) == "new"
    assert pool.local_records() == [mine]
    assert len(pool) == 4
    pool.remove(mine.entry.leaf_hash())
    assert pool.local_records() == [] and len(pool) == 2


def test_a_forward_of_a_committed_record_is_dropped_without_a_signature_check(monkeypatch):
    """A forward can arrive after its block: the node knows it by its first code and
    neither verifies it again nor counts it as refused."""
    store = MemoryStore()
    pool = DepositPool(RULES, store, lambda key: None, max_pending=1000, per_client=1000)
    record = deposit(2, start=900)
    assert pool.add_forwarded(record, T) == "new"
    assert pool.add_forwarded(record, T) == "pending"  # the same bytes again: no second check
    pool.remove(record.entry.leaf_hash())
    on_chain = set(deposit_code_keys(RULES.chain_id, record))
    monkeypatch.setattr(store, "codes_present", lambda keys: [k for k in keys if k in on_chain])
    checked = []
    monkeypatch.setattr(pool, "_check_one", lambda *a: checked.append(a))
    assert pool.add_forwarded(record, T) == "committed" and checked == [] and len(pool) == 0


def test_a_forward_that_fails_a_check_is_rejected():
    pool = _pool()
    forged = deposit(1, start=950, key="bureau")  # signed with another member's key
    assert pool.add_forwarded(forged, T) == "rejected" and len(pool) == 0


def test_a_forward_that_does_not_fit_is_refused_as_full():
    pool = DepositPool(RULES, MemoryStore(), lambda key: None, max_pending=3, per_client=1000)
    assert pool.add_forwarded(deposit(2, start=960), T) == "new"
    assert pool.add_forwarded(deposit(2, start=970), T) == "full" and len(pool) == 2


def test_an_outcome_names_the_codes_its_keys_stand_for():
    pool = _pool()
    record = deposit(3, start=800)
    (outcome,) = pool.admit([record], T)
    assert outcome.codes == deposit_codes(RULES.chain_id, record)
    assert [c.key for c in outcome.codes] == list(outcome.keys)


def test_a_record_forwarded_first_and_submitted_later_stays_not_local():
    """Already pending from a forward: whoever submitted it first answers for it."""
    pool = _pool()
    record = deposit(1, start=600)
    assert pool.add_forwarded(record, T) == "new"
    assert [o.state for o in pool.admit([record], T)] == ["pending"]
    assert pool.local_records() == []


@pytest.mark.parametrize("items", [1, 5])
def test_items_of_counts_deposit_items(items):
    assert forwarding.items_of([deposit(items, start=700)]) == items


def test_a_request_pending_too_long_since_it_left_is_sent_again_once_per_period():
    """A forward can be lost (a full peer queue, a primary restarting) while other blocks
    keep the progress timer quiet: the origin re-sends it (SmartBFT's forward timeout)."""
    clock = Clock()
    local = [deposit(2, start=800)]
    fwd, transport, resent = _forwarder("court-node", local, clock)
    _run(lambda: fwd.forward(local))
    assert len(transport.sent) == 1
    clock.now += 3999
    assert fwd.sweep() == 0 and len(transport.sent) == 1
    clock.now += 1
    assert fwd.sweep() == 2
    assert transport.records()[-1] == ("court-node", [local[0].entry.signature])
    clock.now += 1000
    assert fwd.sweep() == 0  # the period restarts when it leaves again
    clock.now += 3000
    assert fwd.sweep() == 2 and resent == [2, 2]


def test_committed_requests_are_forgotten_and_the_primary_resends_nothing():
    clock = Clock()
    local = [deposit(1, start=900)]
    fwd, transport, _ = _forwarder("court-node", local, clock)
    _run(lambda: fwd.forward(local))
    local.clear()  # committed: no longer pending here
    clock.now += 10_000
    assert fwd.sweep() == 0 and fwd._sent_at == {}
    primary, ptransport, _ = _forwarder(None, [deposit(1, start=950)], clock, primary=True)
    primary.sweep()
    clock.now += 10_000
    assert primary.sweep() == 0 and ptransport.sent == []


# --------------------------------------------------------------------------- the node's wiring of the memos


class _NodeStub:
    """What Node._delivered and Node._on_forwarded use of a node."""

    role = "validator"

    def __init__(self, pool):
        from runtime.metrics import Counter

        self.pool, self.chain_id, self.stepped = pool, RULES.chain_id, []
        self.m_dropped_requests = Counter("d", "d", ("reason",))
        self.m_commits, self.m_items = Counter("c", "c"), Counter("i", "i")
        self.app = type("App", (), {"forget_up_to": lambda self, height: None})()
        from runtime.commit_waiters import CommitWaiters

        self.waiters = CommitWaiters(10, 10)

    def now_ms(self):
        return T

    def step(self, event):
        self.stepped.append(event)


def _remembered(record):
    """The record as a peer's frame delivers it: read from its wire form, so remembered."""
    from ledger import model

    read = model.EntryRecord.from_wire(msgpack.unpackb(record.encode(), raw=False))
    assert model._RECORDS.get(read.entry.signature) is not None
    return read


def test_a_delivered_block_leaves_no_record_in_the_memos():
    from types import SimpleNamespace

    from ledger import derived, model
    from node import Node

    record = _remembered(deposit(2, start=1000))
    stub = _NodeStub(_pool())
    assert stub.pool.add_forwarded(record, T) == "new"  # checked: its codes and signature are remembered
    sig = record.entry.signature
    assert derived.VERIFIED.get(sig) is not None
    Node._delivered(stub, SimpleNamespace(header=SimpleNamespace(height=1), records=[record]), None)
    assert model._RECORDS.get(sig) is None and derived.VERIFIED.get(sig) is None
    assert derived.CODES.get((RULES.chain_id, sig, 2)) is None and len(stub.pool) == 0


def test_a_delivered_block_wakes_the_clients_waiting_for_its_codes():
    import asyncio
    from types import SimpleNamespace

    from ledger.state import deposit_code_keys
    from node import Node

    record = _remembered(deposit(2, start=2000))
    other = _remembered(deposit(1, start=3000))
    stub = _NodeStub(_pool())
    first, second = deposit_code_keys(RULES.chain_id, record)
    (elsewhere,) = deposit_code_keys(RULES.chain_id, other)

    async def scenario():
        waits = [asyncio.ensure_future(stub.waiters.wait(key, t)) for key, t in ((second, 5.0), (elsewhere, 0.3))]
        await asyncio.sleep(0)
        Node._delivered(stub, SimpleNamespace(header=SimpleNamespace(height=1), records=[record]), None)
        return await asyncio.gather(*waits)

    assert asyncio.run(scenario()) == [True, False]  # the block's second item woke; another deposit's did not
    assert first != second


def test_a_forward_arriving_after_its_block_is_forgotten_again(monkeypatch):
    from ledger import model
    from node import Node

    record = _remembered(deposit(1, start=1100))
    stub = _NodeStub(_pool())
    keys = set(deposit_code_keys(RULES.chain_id, record))
    monkeypatch.setattr(stub.pool.store, "codes_present", lambda asked: [k for k in asked if k in keys])
    Node._on_forwarded(stub, [record])
    assert stub.stepped == [] and stub.m_dropped_requests.values == {}
    assert model._RECORDS.get(record.entry.signature) is None


def test_a_new_forward_is_looked_up_through_the_filter_not_by_a_leveldb_read(tmp_path, monkeypatch):
    """The 'already committed?' question asked of every forward must not read LevelDB for
    an absent code: such reads drive LevelDB's seek compactions (ledger/code_filter.py)."""
    from ledger.leveldb_store import LevelDBStore

    store = LevelDBStore.open(tmp_path / "db")
    try:
        reads = []
        monkeypatch.setattr(store, "_read_location", lambda key: reads.append(key))
        pool = DepositPool(RULES, store, lambda key: None, max_pending=1000, per_client=1000)
        record = deposit(3, start=1200)
        assert pool.add_forwarded(record, T) == "new"
        assert reads == []
    finally:
        store.close()
