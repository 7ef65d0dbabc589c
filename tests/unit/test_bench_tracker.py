"""The benchmark's latency tracker (runtime.bench_load._Tracker): each sampled deposit
is timed on its own, so one slow deposit, or one slow answer, does not make the
others look slow."""

import asyncio
import time

from runtime.bench_load import _Tracker


class _Chain:
    """Stands in for the nodes' ``GET /v1/deposits/{code}``: a code is committed from its
    time on; ``slow`` codes take that long to answer."""

    def __init__(self, commit_at: dict[str, float], slow: dict[str, float] | None = None, waits: bool = True):
        self.commit_at = commit_at
        self.slow = slow or {}
        self.waits = waits  # honours wait_ms (a node that does not answers at once)
        self.polls: dict[str, int] = {}

    async def height_of(self, api: str, code: str, wait_ms: int = 0):
        self.polls[code] = self.polls.get(code, 0) + 1
        await asyncio.sleep(self.slow.get(code, 0))
        if code == "gone":
            raise ConnectionError("node down")
        if self.waits and wait_ms:
            left = min(self.commit_at[code] - time.monotonic(), wait_ms / 1000)
            if left > 0:
                await asyncio.sleep(left)
        return 7 if time.monotonic() >= self.commit_at[code] else None


async def _follow(tracker: _Tracker, codes, start: float, settle: float = 10.0) -> None:
    """What a phase does: add samples, let the tracker run until they are in, then stop it."""
    running = asyncio.ensure_future(tracker.run())
    for code in codes:
        tracker.add("http://node", code, start)
    deadline = time.monotonic() + settle
    while tracker.outstanding and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    tracker.done = True
    await running


def _track(delays: dict[str, float], in_order: bool, slow: dict[str, float] | None = None, settle: float = 10.0,
           waits: bool = True):
    async def go():
        start = time.monotonic()
        chain = _Chain({code: start + d for code, d in delays.items()}, slow, waits)
        tracker = _Tracker(chain, 0.005, in_order)
        await _follow(tracker, delays, start, settle)
        return tracker, chain

    return asyncio.run(go())


def test_a_slow_sample_does_not_delay_the_ones_behind_it():
    tracker, _ = _track({"slow": 0.4, "fast": 0.02}, in_order=False)
    latency = dict(zip(("fast", "slow"), sorted(tracker.latencies)))
    assert latency["fast"] < 0.2
    assert latency["slow"] >= 0.4


def test_a_slow_answer_does_not_delay_the_others():
    # The node holding "busy" takes 0.5 s to answer each poll; "fast" commits after 10 ms.
    tracker, _ = _track({"busy": 0.0, "fast": 0.01}, in_order=False, slow={"busy": 0.5})
    assert len(tracker.latencies) == 2
    assert min(tracker.latencies) < 0.2
    assert max(tracker.latencies) >= 0.5


def test_in_order_polling_waits_for_the_oldest_first():
    # The failover phase's mode: only the oldest outstanding sample is polled.
    tracker, chain = _track({"slow": 0.3, "fast": 0.02}, in_order=True)
    assert min(tracker.latencies) >= 0.3
    assert chain.polls["fast"] == 1


def test_a_sample_is_asked_for_once_and_stamped_when_the_node_answers_the_commit():
    tracker, chain = _track({"late": 0.6}, in_order=False)
    assert chain.polls["late"] == 1
    assert 0.6 <= tracker.latencies[0] < 1.5


def test_a_node_that_answers_at_once_is_asked_again():
    tracker, chain = _track({"late": 0.3}, in_order=False, waits=False)
    assert chain.polls["late"] > 5
    assert tracker.latencies[0] >= 0.3


def test_a_node_that_does_not_answer_is_polled_until_the_phase_ends():
    tracker, chain = _track({"gone": 0.0, "ok": 0.0}, in_order=False, settle=0.2)
    assert len(tracker.latencies) == 1
    assert chain.polls["gone"] > 2
    assert [s[1] for s in tracker.outstanding] == ["gone"]
