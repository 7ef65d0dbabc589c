"""Argument types and the parser class shared by ``cli.py`` and the verb modules.

Exit codes (CONTRACT section 4): 0 success or match; 1 verified and found NOT
matching or NOT valid; 2 bad usage or bad input; 3 node unreachable or failing.
"""

from __future__ import annotations

import argparse
import sys

EXIT_OK = 0
EXIT_NOT_VALID = 1
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3


class Parser(argparse.ArgumentParser):
    """argparse with the contracted exit code 2 and a hint to --help."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, "%s: error: %s (see %s --help)\n" % (self.prog, message, self.prog))


def positive(text: str) -> int:
    try:
        value = int(text.replace("_", "").replace(",", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return value


def count(text: str) -> int:
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not an integer" % text) from None
    if value < 0:
        raise argparse.ArgumentTypeError("must not be negative")
    return value


def seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError("%r is not a number of seconds" % text) from None
    if not 0 < value <= 86_400:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 86400 seconds")
    return value


def key_value(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value.replace("_", "").isascii() or not value.replace("_", "").isdigit():
        raise argparse.ArgumentTypeError("expected KEY=INTEGER, got %r" % text)
    return key, int(value.replace("_", ""))
