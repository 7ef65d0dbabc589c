"""Admission as a whole request, forwarded quotas, and what the node says of pending
deposits and of its view (runtime/pool.py, runtime/service.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from consensus import io
from ledger.codec import encode
from ledger.memory_store import MemoryStore
from ledger.state import Rules, deposit_code_keys
from runtime.http_api import ApiFailure
from runtime.pool import DepositPool, PoolFull
from runtime.service import NodeService
from tests.unit.test_state import GENESIS, KEYS, T, WINDOW, deposit

RULES = Rules.from_genesis(GENESIS)


def _pool(per_client: int = 1000, max_pending: int = 1000) -> DepositPool:
    return DepositPool(RULES, MemoryStore(), lambda key: None, max_pending=max_pending, per_client=per_client)


def test_a_request_with_one_rejected_record_admits_none_of_it():
    pool = _pool()
    good, forged = deposit(2, start=10), deposit(1, start=20, key="bureau")  # signed with another member's key
    outcomes = pool.admit([good, forged], T)
    assert [o.state for o in outcomes] == ["new", "rejected"]
    assert len(pool) == 0 and pool.local_records() == []
    assert all(pool.state_of(k) is None for k in deposit_code_keys(RULES.chain_id, good))
    assert [o.state for o in pool.admit([good], T)] == ["new"] and len(pool) == 2  # alone, it is admitted


def test_forwards_are_held_to_the_pool_not_to_their_clients_quota():
    """The node that took a record applied the quota; refusing its forward here would leave
    the records other validators hold unordered (their timers would change the view)."""
    pool = _pool(per_client=3, max_pending=6)
    assert pool.add_forwarded(deposit(2, start=100), T) == "new"
    assert pool.add_forwarded(deposit(2, start=200), T) == "new"  # 4 > 3 for the same client: still taken
    assert pool.add_forwarded(deposit(2, start=300, signer="studio"), T) == "new"  # 6: the pool is full
    assert pool.add_forwarded(deposit(1, start=400, signer="studio"), T) == "full"
    assert pool.client_items == {"shop": 4, "studio": 2}


class _Committed(MemoryStore):
    """A store that holds some deposits' codes (what the pool asks of it)."""

    def __init__(self, *records):
        super().__init__()
        self.stored = {k: 5 for r in records for k in deposit_code_keys(RULES.chain_id, r)}

    def has_code(self, key: bytes) -> bool:
        return key in self.stored

    def codes_present(self, keys):
        return [k for k in keys if k in self.stored]


def test_a_committed_deposit_resubmitted_after_its_time_window_is_still_committed():
    old = deposit(2, start=1100)
    store = _Committed(old)
    pool = DepositPool(RULES, store, store.stored.get, max_pending=1000, per_client=1000)
    late = T + 10 * WINDOW  # far outside the client-time window
    new = deposit(1, start=1200, client_time=late)
    outcomes = pool.admit([old, new], late)
    assert [o.state for o in outcomes] == ["committed", "new"] and outcomes[0].heights == [5, 5]
    assert len(pool) == 1  # the new record is admitted beside the old one
    forged = deposit(2, start=1100, key="studio", signer="shop")  # not the signature on chain: other codes
    assert pool.admit([forged], late)[0].state == "rejected"


def test_a_stale_deposit_that_is_not_on_chain_is_refused_as_stale():
    pool = _pool()
    stale = deposit(1, start=1300)
    (outcome,) = pool.admit([stale], T + 10 * WINDOW)
    assert outcome.state == "rejected" and outcome.error.reason == "stale_timestamp" and len(pool) == 0


def test_a_request_mixing_pending_and_new_records_admits_the_new_ones():
    pool = _pool()
    first = deposit(1, start=1400)
    pool.admit([first], T)
    second = deposit(1, start=1500)
    assert [o.state for o in pool.admit([first, second], T)] == ["pending", "new"] and len(pool) == 2


def test_the_pool_names_a_pending_items_record():
    pool = _pool()
    record = deposit(3, start=500)
    pool.admit([record], T)
    keys = deposit_code_keys(RULES.chain_id, record)
    assert pool.pending_item(keys[2]) == (record, 2)
    assert pool.pending_item(b"X" * len(keys[0])) is None
    pool.remove(record.entry.leaf_hash())
    assert pool.pending_item(keys[0]) is None


class _Node(SimpleNamespace):
    def now_ms(self) -> int:
        return T

    def step(self, event) -> None:
        self.steps.append(event)

    def forward(self, records) -> None:
        self.forwarded.extend(records)


def _service(pool=None, role="validator", store=None, view=0, primary="v1") -> tuple[NodeService, _Node]:
    replica = SimpleNamespace(view=view, primary=lambda: primary)
    transport = SimpleNamespace(connected=lambda: set())
    node = _Node(chain_id=RULES.chain_id, genesis=GENESIS, name="v2", role=role, verifier=None, registry=None,
                 store=store if store is not None else MemoryStore(), pool=pool if pool is not None else _pool(),
                 replica=replica, transport=transport,
                 setup=None, version="test", steps=[], forwarded=[])
    return NodeService(node), node


def test_a_rejected_record_in_a_request_leaves_nothing_pending_or_forwarded():
    service, node = _service()
    good, forged = deposit(2, start=600), deposit(1, start=700, key="bureau")
    body = encode(["deposit-request", 1, [good.wire(), forged.wire()]])
    with pytest.raises(ApiFailure) as err:
        service.submit_deposits(body, "application/msgpack", "shop")
    assert err.value.status == 400 and err.value.code == "bad_signature"
    assert len(node.pool) == 0 and node.steps == [] and node.forwarded == []


def test_a_pending_deposit_has_the_public_views_fields():
    service, node = _service()
    record = deposit(2, start=800)
    node.pool.admit([record], T)
    key = deposit_code_keys(RULES.chain_id, record)[1]
    view = service.deposit_view(key)
    assert view["state"] == "pending" and view["height"] is None and view["deposited_at"] is None
    assert view["digest"] == record.items[1].digest.hex() and view["category"] == record.items[1].category
    assert view["depositor"] == "shop" and "depositor_name" in view
    committed_fields = {"code", "state", "digest", "sm3", "category", "case", "deposited_at", "deposited_at_ms",
                        "height", "depositor", "depositor_name", "public_meta"}
    assert set(view) == committed_fields


def test_an_observer_reports_the_view_of_its_last_block():
    header = SimpleNamespace(view=3, proposer="v4")
    store = SimpleNamespace(head=lambda: SimpleNamespace(height=7, header_hash=b"\x01" * 32, history_size=9),
                            header=lambda height: header if height == 7 else None)
    observer, _ = _service(role="observer", store=store, view=0, primary="v1")
    status = observer.status()
    assert (status["view"], status["primary"]) == (3, "v4")
    validator, _ = _service(role="validator", store=store, view=5, primary="v2")
    assert (validator.status()["view"], validator.status()["primary"]) == (5, "v2")


def test_an_access_that_cannot_be_pooled_is_busy_not_an_internal_error(monkeypatch):
    service, node = _service()
    node.setup = SimpleNamespace(key=KEYS["v2"])

    def full(records, now_ms):
        raise PoolFull("the node has 5 items pending (limit 5)", per_client=False, retry_after_s=2)

    monkeypatch.setattr(node.pool, "admit", full)
    code = deposit_code_keys(RULES.chain_id, deposit(1, start=950))[0]
    with pytest.raises(ApiFailure) as err:
        service._record_access("court", None, [code], "deposit lookup")
    assert (err.value.status, err.value.code, err.value.retry_after) == (503, "busy", 2)


def test_client_request_steps_only_for_admitted_requests():
    service, node = _service()
    record = deposit(1, start=900)
    status, answer = service.submit_deposits(encode(["deposit-request", 1, [record.wire()]]), "application/msgpack",
                                             "shop")
    assert status == 202 and answer["deposits"][0]["state"] == "pending"
    assert [type(e) for e in node.steps] == [io.ClientRequest] and node.forwarded == [record]


@pytest.mark.parametrize("limits, status, code", [({"per_client": 1}, 429, "rate_limited"),
                                                   ({"max_pending": 1}, 503, "busy")])
def test_a_full_pool_answers_with_retry_after_and_admits_nothing(limits, status, code):
    service, node = _service(pool=_pool(**limits))
    body = encode(["deposit-request", 1, [deposit(2, start=1000).wire()]])
    with pytest.raises(ApiFailure) as err:
        service.submit_deposits(body, "application/msgpack", "shop")
    assert (err.value.status, err.value.code) == (status, code) and err.value.retry_after >= 1
    assert len(node.pool) == 0 and node.steps == [] and node.forwarded == []


def test_a_request_without_records_is_refused():
    service, node = _service()
    with pytest.raises(ApiFailure) as err:
        service.submit_deposits(encode(["deposit-request", 1, []]), "application/msgpack", "shop")
    assert (err.value.status, err.value.code) == (400, "malformed_request")


def test_a_refusal_for_another_reason_reads_no_store():
    store = _Committed()
    reads = []
    store.codes_present = lambda keys: reads.append(keys) or []
    pool = DepositPool(RULES, store, store.stored.get, max_pending=1000, per_client=1000)
    forged = deposit(1, start=1600, key="studio")  # bad_signature
    assert pool.admit([forged], T)[0].state == "rejected" and reads == []
