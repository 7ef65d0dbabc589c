"""The ``evledger`` command line: parse, load, call, map errors to exit codes.

Exit codes (CONTRACT section 4): 0 success or match; 1 verified and found NOT
matching or NOT valid; 2 bad usage or bad input; 3 node unreachable or failing.
With ``--json`` standard output carries only the JSON document; messages and
progress go to standard error, and progress bars appear only on a terminal.
"""

from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

EXIT_OK = 0
EXIT_NOT_VALID = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3

__version__ = "0.1.0"


class _Parser(argparse.ArgumentParser):
    """argparse with the contracted exit code 2 and a hint to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser(
        "bench",
        help="measure performance and write the results into docs/performance.md",
        description="Benchmarks (not tests). Each writes a section of docs/performance.md "
        "with the machine, the command and the figures.",
    )
    targets = bench.add_subparsers(dest="target", metavar="TARGET", parser_class=_Parser)
    targets.required = True
    ledger = targets.add_parser(
        "ledger",
        help="Merkle trees, proofs, block append with fsync, lookups by code, bytes per deposit",
        description="Benchmark the ledger core on this machine: Merkle root of 100k leaves, "
        "inclusion/consistency proofs per second, append of 1,000- and 10,000-entry blocks "
        "(entries/s with fsync), lookups by code per second in a store of --deposits deposits, "
        "and bytes on disk per deposit.",
    )
    ledger.add_argument("--deposits", type=_positive, default=1_000_000,
                        help="deposits in the lookup store (default 1,000,000)")
    ledger.add_argument("--dir", help="folder for the benchmark's LevelDB files (default: a temporary folder)")
    ledger.add_argument("--output", default="docs/performance.md",
                        help="Markdown file whose 'ledger' section is replaced (default docs/performance.md); "
                        "'-' prints the section only")
    ledger.add_argument("--json", action="store_true", help="print the figures as JSON on standard output")
    ledger.set_defaults(func=_run_bench_ledger)


def _positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def _run_bench_ledger(args: argparse.Namespace) -> int:
    from ledger import bench

    return bench.main(deposits=args.deposits, folder=args.dir, output=args.output, as_json=args.json,
                      command=" ".join(["evledger"] + sys.argv[1:]))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="evledger",
        description="evledger: a permissioned-blockchain evidence ledger. "
        "Institutions deposit SHA-256 evidence digests; anyone verifies them by deposit code.",
        epilog="Exit codes: 0 success/match, 1 not matching or not valid, 2 bad usage or input, "
        "3 node unreachable or failing.",
    )
    parser.add_argument("--version", action="version", version="evledger " + __version__)
    sub = parser.add_subparsers(dest="verb", metavar="VERB", parser_class=_Parser)
    sub.required = True
    _add_bench(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
