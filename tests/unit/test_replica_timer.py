"""The replica timer's grace period after an event-loop stall (runtime/replica_timer.py).

Real asyncio loop, real stalls (a blocking sleep inside a callback).  Only the order
of events is asserted, never how long anything took.
"""

from __future__ import annotations

import asyncio
import time

from runtime.replica_timer import ReplicaTimer


def _run(body):
    return asyncio.run(body())


def test_an_on_time_timer_fires_once_without_deferral():
    async def body():
        fired = []
        timer = ReplicaTimer(lambda: fired.append("timer"), stall_s=10.0)
        timer.set(0.01)
        await asyncio.sleep(0.1)
        return fired, timer.deferred

    assert _run(body) == (["timer"], 0)


def test_after_a_stall_what_arrived_meanwhile_runs_before_the_timer():
    async def body():
        loop = asyncio.get_running_loop()
        events = []
        timer = ReplicaTimer(lambda: events.append("timer"), stall_s=0.05, grace_s=0.05)
        timer.set(0.01)

        def stall():
            time.sleep(0.2)  # the loop is stuck past the timer's deadline
            loop.call_soon(events.append, "frame read")  # a peer frame handled on the next turn

        loop.call_soon(stall)
        await asyncio.sleep(0.5)
        return events, timer.deferred

    assert _run(body) == (["frame read", "timer"], 1)


def test_a_deferred_timer_replaced_by_a_new_deadline_fires_only_once():
    async def body():
        loop = asyncio.get_running_loop()
        events = []
        timer = ReplicaTimer(lambda: events.append("timer"), stall_s=0.05, grace_s=0.1)
        timer.set(0.01)
        loop.call_soon(time.sleep, 0.2)
        await asyncio.sleep(0.25)  # the timer is deferred now
        timer.set(0.0)  # the replica, stepped by a frame, asks again
        await asyncio.sleep(0.3)
        timer.set(None)
        return events

    assert _run(body) == ["timer"]


def test_cancel_and_none_stop_the_timer():
    async def body():
        fired = []
        timer = ReplicaTimer(lambda: fired.append(1))
        timer.set(0.01)
        timer.cancel()
        timer.set(0.01)
        timer.set(None)
        await asyncio.sleep(0.1)
        return fired

    assert _run(body) == []
