"""``--help`` on every verb and action exits 0 with a usage line (parsing needs no node)."""

from __future__ import annotations

import argparse

import pytest

import cli

# CONTRACT sections 2-4, and the verbs beyond it that docs/cli.md describes.
CONTRACTED = [
    ["demo"], ["deposit"], ["verify"], ["receipt"], ["verify-receipt"], ["status"], ["query"], ["run"],
    ["cluster"], ["cluster", "init"], ["cluster", "up"], ["cluster", "down"],
    ["bench"], ["bench", "ledger"], ["bench", "cluster"],
    ["key"], ["key", "generate"], ["key", "show"], ["genesis"], ["genesis", "check"],
]


def every_command(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every verb path the parser knows, e.g. ``["cluster", "init"]``."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append([*prefix, name])
                found.extend(every_command(sub, (*prefix, name)))
    return found


def test_the_list_covers_every_verb_the_parser_has():
    assert sorted(every_command(cli.build_parser())) == sorted(CONTRACTED)


@pytest.mark.parametrize("verb", [[]] + CONTRACTED, ids=lambda v: " ".join(v) or "evledger")
def test_help_exits_0_with_a_usage_line(capsys, verb):
    with pytest.raises(SystemExit) as exit_:
        cli.main([*verb, "--help"])
    out, err = capsys.readouterr()
    assert exit_.value.code == 0, err
    assert out.startswith(" ".join(["usage: evledger", *verb]).rstrip() + " ")
    assert err == ""
