"""``evledger bench ledger|cluster``: the verb's arguments and how it calls the benchmarks."""

from __future__ import annotations

import argparse
import sys

from .cli_args import Parser, key_value, positive, seconds


def add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure performance and write the results into docs/performance.md",
        description="Benchmarks (not tests). Each writes a section of docs/performance.md "
        "with the machine, the command and the figures.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", parser_class=Parser)
    targets.required = True
    ledger = targets.add_parser(
        "ledger",
        help="Merkle trees, proofs, block append with fsync, lookups by code, bytes per deposit",
        description="Benchmark the ledger core on this machine: Merkle root of 100k leaves, "
        "inclusion/consistency proofs per second, append of 1,000- and 10,000-entry blocks "
        "(entries/s with fsync), lookups by code per second in a store of --deposits deposits, "
        "and bytes on disk per deposit.",
    )
    ledger.add_argument("--deposits", type=positive, default=1_000_000,
                        help="deposits in the lookup store (default 1,000,000)")
    ledger.add_argument("--dir", help="folder for the benchmark's LevelDB files (default: a temporary folder)")
    ledger.add_argument("--output", default="docs/performance.md",
                        help="Markdown file whose 'ledger' section is replaced (default docs/performance.md); "
                        "'-' prints the section only")
    ledger.add_argument("--json", action="store_true", help="print the figures as JSON on standard output")
    ledger.set_defaults(func=_run_bench_ledger)
    cluster = targets.add_parser(
        "cluster",
        help="a real consortium: digests/s single and batched, commit latency, failover, CPU and memory per node",
        description="Start a consortium (N validators, each its own process on 127.0.0.1) in a temporary "
        "folder and drive it from a separate load process: committed digests/s with one signed deposit per "
        "request and with signed batches, commit latency p50/p99 at idle and at half the maximum, time from "
        "killing the primary (SIGKILL) until commits resume, CPU use and resident memory per node.",
    )
    cluster.add_argument("--duration", type=seconds, default=60.0, metavar="S",
                         help="seconds shared by the load phases (default 60; 600 for the 10-minute memory run)")
    cluster.add_argument("--validators", type=positive, default=4, metavar="N", help="validators (default 4)")
    cluster.add_argument("--concurrency", type=positive, default=64, metavar="C",
                         help="single-deposit requests in flight (default 64)")
    cluster.add_argument("--batch", type=positive, default=1000, metavar="K", help="items per batch (default 1000)")
    cluster.add_argument("--batch-concurrency", type=positive, default=8, metavar="C",
                         help="batch requests in flight (default 8)")
    cluster.add_argument("--batch-max-bytes", type=positive, metavar="B",
                         help="set genesis consensus.batch_max_bytes (default: what 'cluster init' writes)")
    cluster.add_argument("--consensus", action="append", default=[], metavar="KEY=VALUE", type=key_value,
                         help="set another genesis consensus parameter, e.g. checkpoint_interval=16 (repeatable)")
    cluster.add_argument("--no-failover", action="store_true", help="skip killing the primary")
    cluster.add_argument("--dir", help="build the consortium in this folder and keep it (default: a temporary one)")
    cluster.add_argument("--output", default="docs/performance.md",
                         help="Markdown file whose 'cluster' section is replaced (default docs/performance.md); "
                         "'-' prints the section only")
    cluster.add_argument("--json", action="store_true", help="print the figures as JSON on standard output")
    cluster.set_defaults(func=_run_bench_cluster)


def _run_bench_ledger(args: argparse.Namespace) -> int:
    from ledger import bench

    return bench.main(deposits=args.deposits, folder=args.dir, output=args.output, as_json=args.json,
                      command=" ".join(["evledger"] + sys.argv[1:]))


def _run_bench_cluster(args: argparse.Namespace) -> int:
    from runtime import bench_cluster

    plan = bench_cluster.Plan(duration=args.duration, validators=args.validators, concurrency=args.concurrency,
                              batch_concurrency=args.batch_concurrency, batch=args.batch,
                              failover=not args.no_failover, batch_max_bytes=args.batch_max_bytes,
                              consensus=tuple(args.consensus))
    return bench_cluster.main(plan, output=args.output, as_json=args.json, folder=args.dir,
                              command=" ".join(["evledger"] + sys.argv[1:]))
