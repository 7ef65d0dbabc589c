"""Replay one simulator seed: ``python -m tests.sim.replay SEED [SEED...]``.

Prints the scenario, runs it with every invariant checked, and reports either the
violation or a summary (heads, views, steps, messages, largest structure sizes).
"""

from __future__ import annotations

import sys
import time

from .cluster import Violation
from .scenarios import random_scenario, run


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__)
        return 2
    status = 0
    for text in argv:
        seed = int(text)
        scenario = random_scenario(seed)
        print("seed %d: %s" % (seed, scenario.describe()))
        started = time.perf_counter()
        try:
            c = run(scenario, seed)
        except Violation as exc:
            print("VIOLATION:", exc)
            status = 1
            continue
        print("ok in %.2fs: height %d, %d entries, views %s, %d steps, %d messages, max sizes %s" % (
            time.perf_counter() - started, max(c.canon, default=0), len(c.canon_ids), c.views(), c.steps,
            c.messages, c.max_sizes))
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
