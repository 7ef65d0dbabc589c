"""Clients waiting for a deposit code to commit: woken by the block, or not at all."""

from __future__ import annotations

import asyncio

import pytest

from runtime.commit_waiters import CommitWaiters, TooManyWaiters


def run(coro):
    return asyncio.run(coro)


def test_a_waiter_is_woken_by_the_block_holding_its_code_and_not_by_another():
    async def scenario():
        waiters = CommitWaiters(limit=10, per_source=10)
        mine = asyncio.ensure_future(waiters.wait(b"code-a", 5.0))
        other = asyncio.ensure_future(waiters.wait(b"code-b", 0.2))
        await asyncio.sleep(0)
        assert len(waiters) == 2 and waiters.wanted()
        waiters.committed([b"code-x", b"code-a"])
        assert await mine is True
        assert await other is False  # never committed: the wait ran out
        assert len(waiters) == 0 and not waiters.wanted()
        assert waiters._waiting == {}

    run(scenario())


def test_every_waiter_on_one_code_is_woken():
    async def scenario():
        waiters = CommitWaiters(limit=10, per_source=10)
        tasks = [asyncio.ensure_future(waiters.wait(b"same", 5.0)) for _ in range(3)]
        await asyncio.sleep(0)
        waiters.committed([b"same"])
        assert await asyncio.gather(*tasks) == [True, True, True]
        assert len(waiters) == 0

    run(scenario())


def test_one_waiter_more_than_the_limit_is_refused_and_the_others_still_wait():
    async def scenario():
        waiters = CommitWaiters(limit=2, per_source=2)
        first = asyncio.ensure_future(waiters.wait(b"a", 5.0))
        second = asyncio.ensure_future(waiters.wait(b"b", 5.0))
        await asyncio.sleep(0)
        with pytest.raises(TooManyWaiters):
            await waiters.wait(b"c", 5.0)
        waiters.committed([b"a", b"b"])
        assert await first and await second
        assert await waiters.wait(b"d", 0.01) is False  # room again once they are answered

    run(scenario())


def test_a_waiter_whose_request_is_cancelled_leaves_nothing_behind():
    async def scenario():
        waiters = CommitWaiters(limit=2, per_source=2)
        task = asyncio.ensure_future(waiters.wait(b"gone", 5.0))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(waiters) == 0 and waiters._waiting == {}
        waiters.committed([b"gone"])  # nothing to wake, nothing raised

    run(scenario())


def test_one_address_cannot_take_every_place():
    async def scenario():
        waiters = CommitWaiters(limit=10, per_source=2)
        mine = [asyncio.ensure_future(waiters.wait(b"k%d" % i, 5.0, "10.0.0.1")) for i in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(TooManyWaiters):
            await waiters.wait(b"k9", 5.0, "10.0.0.1")
        assert await waiters.wait(b"k8", 0.01, "10.0.0.2") is False  # another address still waits
        waiters.committed([b"k0", b"k1"])
        assert await asyncio.gather(*mine) == [True, True]
        assert waiters._by_source == {}

    run(scenario())


def test_close_answers_the_parked_waiters_at_once_and_every_later_one():
    async def scenario():
        waiters = CommitWaiters(limit=10, per_source=10)
        parked = asyncio.ensure_future(waiters.wait(b"a", 30.0))
        await asyncio.sleep(0)
        loop = asyncio.get_running_loop()
        began = loop.time()
        waiters.close()
        assert await parked is False and loop.time() - began < 1.0
        assert await waiters.wait(b"b", 30.0) is False and loop.time() - began < 1.0
        assert len(waiters) == 0

    run(scenario())


def test_the_service_answers_503_busy_when_the_address_has_no_place_left_and_skips_codes_not_pending_here():
    from types import SimpleNamespace

    from runtime.http_api import ApiFailure
    from runtime.service import NodeService

    pending = {b"mine"}
    stub = SimpleNamespace(pool=SimpleNamespace(state_of=lambda key: "pending" if key in pending else None),
                           node=SimpleNamespace(waiters=CommitWaiters(limit=10, per_source=1)))

    async def scenario():
        loop = asyncio.get_running_loop()
        began = loop.time()
        await NodeService.wait_committed(stub, b"elsewhere", 30.0, "10.0.0.1")  # not pending here: at once
        assert loop.time() - began < 1.0 and len(stub.node.waiters) == 0
        parked = asyncio.ensure_future(NodeService.wait_committed(stub, b"mine", 5.0, "10.0.0.1"))
        await asyncio.sleep(0)
        with pytest.raises(ApiFailure) as refused:
            await NodeService.wait_committed(stub, b"mine", 5.0, "10.0.0.1")
        assert (refused.value.status, refused.value.code, refused.value.retry_after) == (503, "busy", 1)
        stub.node.waiters.committed([b"mine"])
        await parked

    run(scenario())
