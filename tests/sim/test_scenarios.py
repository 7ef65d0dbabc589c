"""Seeded random fault schedules (1,000 in CI) and hypothesis-drawn schedules.

Every scenario checks agreement, durable prefix, validity, certificates and bounded
memory on every step, then liveness and catch-up after the network heals
(``scenarios.run``).  A failure names the seed; replay it with
``python -m tests.sim.replay SEED``.  The soak run (``pytest tests/sim -m soak``)
plays ``SOAK_SEEDS`` more seeds (default 20,000) from ``SOAK_FROM`` (default 1,000).
"""

from __future__ import annotations

import multiprocessing
import os
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.sim.cluster import Violation
from tests.sim.scenarios import BYZ_KINDS, Scenario, run, run_seed

CHUNK = 100
CI_SEEDS = 1000


def _one(seed: int) -> str | None:
    try:
        run_seed(seed)
    except Violation as exc:
        return str(exc)
    except Exception:  # noqa: BLE001 - a crash inside the replica is a failure too
        return "seed %d crashed: %s replay: python -m tests.sim.replay %d" % (seed, traceback.format_exc(), seed)
    return None


def _run_seeds(seeds: range) -> list[str]:
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        return [r for r in pool.imap_unordered(_one, seeds, chunksize=4) if r]


@pytest.mark.parametrize("chunk", range(CI_SEEDS // CHUNK))
def test_seeded_scenarios(chunk):
    failures = _run_seeds(range(chunk * CHUNK, (chunk + 1) * CHUNK))
    assert not failures, "\n".join(failures)


@pytest.mark.soak
def test_soak():
    start = int(os.environ.get("SOAK_FROM", "1000"))
    count = int(os.environ.get("SOAK_SEEDS", "20000"))
    failures = _run_seeds(range(start, start + count))
    assert not failures, "%d failing seeds:\n%s" % (len(failures), "\n".join(failures[:20]))


# ---------------------------------------------------------------- hypothesis

def _op(n: int):
    node = st.integers(0, n - 1)
    return st.one_of(
        st.tuples(st.just("crash"), st.tuples(node)),
        st.tuples(st.just("crash_mid"), st.tuples(node)),
        st.tuples(st.just("power_cut"), st.tuples(node)),
        st.tuples(st.just("restart"), st.tuples(node)),
        st.tuples(st.just("partition"), st.lists(node, min_size=1, max_size=n - 1, unique=True).map(
            lambda g: (tuple(sorted(g)), tuple(i for i in range(n) if i not in g)))),
        st.tuples(st.just("cut"), st.tuples(node, node)),
        st.tuples(st.just("heal"), st.just(())),
        st.tuples(st.just("net"), st.tuples(st.sampled_from([0.0, 0.1, 0.3]), st.sampled_from([0.0, 0.2]),
                                            st.sampled_from([5, 50, 150]))),
        st.tuples(st.just("clock"), st.tuples(node, st.integers(-300, 300))),
    )


@st.composite
def schedules(draw):
    n = draw(st.sampled_from([4, 4, 7]))
    f = (n - 1) // 3
    byz = draw(st.dictionaries(st.integers(0, n - 1), st.sampled_from(BYZ_KINDS), max_size=f))
    heal_at = draw(st.integers(500, 2500))
    faults = draw(st.lists(st.tuples(st.integers(0, heal_at), _op(n)), max_size=8))
    ops = [(t, "submit", (2,)) for t in range(0, heal_at + 400, 200)]
    ops += [(t, op, args) for t, (op, args) in faults]
    ops.sort(key=lambda o: o[0])
    return Scenario(n=n, byzantine=byz, ops=ops, heal_at=heal_at)


# Reference: TOCS'02 §4 (safety under any schedule, liveness after GST).
@settings(max_examples=int(os.environ.get("SIM_HYPOTHESIS_EXAMPLES", "40")), deadline=None,
          suppress_health_check=list(HealthCheck), derandomize=True)
@given(schedules(), st.integers(0, 2**16))
def test_hypothesis_schedules(scenario, seed):
    # On failure hypothesis prints the shrunk (scenario, seed); rerun it with
    # tests.sim.scenarios.run(scenario, seed).
    run(scenario, seed, label="hypothesis")
