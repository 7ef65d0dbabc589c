"""Consensus benchmark on the simulator: blocks/s and entries/s with real Ed25519.

All n replicas run in this one Python thread over the virtual-time network (no
sockets, no disk), so the figures are the *cluster's* CPU cost of ordering: one
block/s here costs every replica its share of signing, verifying, encoding and
hashing.  ``profile=True`` attributes time to signing / verifying / encoding /
hashing / the rest with cProfile (which slows the run; the rates are measured
without it).

Usage: ``python -m tests.sim.consensus_bench [--n 4 7 13] [--entries 4000] [--batch 200]``
(reusable from ``evledger bench consensus`` via :func:`bench`).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import time

from .app import make_record
from .cluster import Cluster, sim_params

CATEGORIES = (
    ("sign", ("crypto_sign'", "crypto_sign>", "signing.py:", "sign_commit")),
    ("verify", ("crypto_sign_open",)),
    ("encode/decode", ("codec.py", "msgpack", "wire.py", "messages.py", "model.py", "block.py")),
    ("hash", ("sha256", "hashlib", "merkle.py", "digest")),
)


def _cluster(n: int, entries: int, batch: int) -> Cluster:
    params = sim_params(batch_max_entries=batch, batch_delay_ms=2, max_in_flight=8, checkpoint_interval=16,
                        watermark_window=64, view_change_timeout_ms=5000, max_view_change_timeout_ms=60_000,
                        retransmit_ms=2000, max_pending_requests=entries + 10)
    c = Cluster(n, seed=1, real_crypto=True, params=params, label="bench")
    c.delay = (1, 2)
    c.checks = False
    records = [make_record("bench-%d" % (i % 8), i) for i in range(entries)]
    for rec in records:
        c.submitted[rec.entry.leaf_hash()] = rec
        for nm in c.names:
            c._push(0, "request", nm, rec)
    return c


def _committed(c: Cluster) -> int:
    return sum(len(b.records) for b, _ in c.nodes[c.names[0]].store)


def _run(c: Cluster) -> None:
    while _committed(c) < len(c.submitted):
        c.run_until(c.now + 50)
        if c.now > 600_000:
            raise RuntimeError("benchmark did not finish")


def bench(n: int, entries: int = 4000, batch: int = 200, profile: bool = False) -> dict:
    c = _cluster(n, entries, batch)
    started = time.perf_counter()
    _run(c)
    wall = time.perf_counter() - started
    blocks = c.nodes[c.names[0]].head
    result = {"n": n, "entries": entries, "batch": batch, "blocks": blocks, "seconds": round(wall, 3),
              "blocks_per_s": round(blocks / wall, 1), "entries_per_s": round(entries / wall, 1),
              "ms_per_block": round(1000 * wall / blocks, 3), "messages": c.messages}
    if profile:
        result["cpu_share"] = _profile(n, entries, batch)
    return result


def _profile(n: int, entries: int, batch: int) -> dict:
    c = _cluster(n, entries, batch)
    prof = cProfile.Profile()
    prof.enable()
    _run(c)
    prof.disable()
    stats = pstats.Stats(prof).stats
    total = sum(v[2] for v in stats.values())
    shares = {name: 0.0 for name, _ in CATEGORIES}
    for (filename, _, func), (_, _, tottime, _, _) in stats.items():
        key = "%s:%s'" % (filename, func)
        for name, needles in CATEGORIES:
            if any(needle in key for needle in needles):
                shares[name] += tottime
                break
    shares["other (protocol logic, simulator)"] = total - sum(shares.values())
    return {k: round(100 * v / total, 1) for k, v in shares.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[4, 7, 13])
    parser.add_argument("--entries", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)
    for n in args.n:
        print(json.dumps(bench(n, args.entries, args.batch, args.profile)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
