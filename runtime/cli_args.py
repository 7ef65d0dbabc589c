"""Argument types and the parser class shared by ``cli.py`` and the verb modules.

Exit codes (CONTRACT section 4): 0 success or match; 1 verified and found NOT
matching or NOT valid; 2 bad usage or bad input; 3 node unreachable or failing.
"""

from __future__ import annotations

import argparse
import sys
from urllib.parse import urlsplit

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


def nonempty(text: str) -> str:
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    return text


def node_url(text: str) -> str:
    """A node's API base URL, checked as ``services.client.EvledgerClient`` will use it.

    ``http[s]://host[:port][/prefix]`` with no query or fragment; anything else is bad
    usage (exit 2) reported by argparse, before a client or a file is touched.
    """
    example = "a node API base URL looks like http://127.0.0.1:7401"
    if "://" not in text:
        raise argparse.ArgumentTypeError("%r is not a URL (no http://): %s" % (text, example))
    try:
        parts = urlsplit(text)
        parts.port  # reading it raises ValueError for a port that is not a number in 0..65535
    except ValueError as exc:
        raise argparse.ArgumentTypeError("%r is not a valid URL (%s): %s" % (text, exc, example)) from None
    if parts.scheme not in ("http", "https"):
        raise argparse.ArgumentTypeError("%r: the scheme must be http or https, not %r: %s"
                                         % (text, parts.scheme, example))
    if not parts.hostname:
        raise argparse.ArgumentTypeError("%r names no host: %s" % (text, example))
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError("%r has a ?query or #fragment, which a base URL may not have: %s"
                                         % (text, example))
    return text


def key_value(text: str) -> tuple[str, int]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value.replace("_", "").isascii() or not value.replace("_", "").isdigit():
        raise argparse.ArgumentTypeError("expected KEY=INTEGER, got %r" % text)
    return key, int(value.replace("_", ""))
