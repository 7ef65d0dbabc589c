"""Consensus benchmark entry point: ``python bench/consensus_bench.py [--n 4 7 13] [--profile]``.

Thin wrapper over ``tests.sim.consensus_bench`` (see its docstring)."""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.sim.consensus_bench import main  # noqa: E402

if __name__ == "__main__":
    raise SystemExit(main())
