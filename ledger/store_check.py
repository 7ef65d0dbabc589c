"""Consistency check of a store (``Store.check``; the operator ``fsck`` builds on it).

Theory of operation
-------------------
The check walks the chain from height 1 to the head through the backend's read
primitives, so it sees exactly what a reader would be served, and it records every
disagreement as a line in ``CheckReport.problems`` instead of stopping at the
first one (a ``CorruptionError`` from one key is recorded and the walk goes on).

Shallow (``deep=False``), per height: the header and certificate load, the header
is at its height, links to its parent's hash on the same chain, its certificate
is for it, its history size grows by its entry count, and the stored history
nodes reproduce its history root (O(log n) reads).  Then: the head pointer
matches the last block, and no header, record or history node is stored beyond
the head (a sign of a torn or foreign write; the atomic batch makes it
impossible in a healthy store).

Deep (``deep=True``) adds, per block: every record loads, the level-0 history
nodes of the block's range equal the entries' leaf hashes, and their root is the
header's ``entries_root``; every stored interior node is the hash of its two
children; the code index maps each deposit item of the chain to exactly one
code and the entry-key index each other entry to exactly one key (no key names
anything else); every case link names a stored code.
Deep cost is linear in the stored data.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from . import merkle
from .block import ZERO_HASH
from .errors import CorruptionError
from .model import Deposit
from .store_types import CheckReport

if TYPE_CHECKING:  # pragma: no cover
    from .store import Store


class _Walk:
    """State carried from one height to the next."""

    def __init__(self) -> None:
        self.prev_hash: bytes | None = ZERO_HASH
        self.chain: str | None = None
        self.size: int | None = 0
        self.entries = 0
        self.deposit_items: set[tuple[int, int, int]] = set()
        self.other_entries: set[tuple[int, int]] = set()


def run_check(store: "Store", deep: bool) -> CheckReport:
    report = CheckReport(deep)
    head = store.head()
    walk = _Walk()
    last = None
    for height in range(1, head.height + 1):
        last = _check_height(store, height, walk, report)
        report.blocks += 1
    report.entries = walk.entries
    _check_head(head, last, walk, report)
    _check_stray(store, head, report)
    if deep:
        _check_nodes(store, head.history_size, report)
        codes = _check_keys(store, "codes", walk.deposit_items, report)
        report.entry_keys = len(_check_keys(store, "entry_keys", walk.other_entries, report))
        report.codes = len(codes)
        _check_cases(store, codes, report)
    return report


def _check_height(store: "Store", height: int, walk: _Walk, report: CheckReport):
    problem = report.problems.append
    try:
        header, cert = store._read_header_cert(height)
    except CorruptionError as exc:
        problem("height %d: %s" % (height, exc))
        walk.prev_hash = walk.size = None
        return None
    where = "height %d" % height
    if header.height != height:
        problem("%s: header claims height %d" % (where, header.height))
    if walk.prev_hash is not None and header.prev_hash != walk.prev_hash:
        problem("%s: prev_hash does not link to the previous header" % where)
    if walk.chain is not None and header.chain_id != walk.chain:
        problem("%s: chain id %r differs from %r" % (where, header.chain_id, walk.chain))
    if cert.header_hash != header.hash():
        problem("%s: certificate is for another header" % where)
    if walk.size is not None and header.history_size != walk.size + header.entry_count:
        problem("%s: history_size %d does not follow %d + %d" % (where, header.history_size, walk.size,
                                                                  header.entry_count))
    _guard(report, where, lambda: _check_root(store, header, where, report))
    if report.deep:
        _guard(report, where, lambda: _check_records(store, header, walk, report))
    walk.prev_hash, walk.chain, walk.size = header.hash(), header.chain_id, header.history_size
    walk.entries += header.entry_count
    return header


def _guard(report: CheckReport, where: str, step) -> None:
    try:
        step()
    except CorruptionError as exc:
        report.problems.append("%s: %s" % (where, exc))


def _check_root(store: "Store", header, where: str, report: CheckReport) -> None:
    if merkle.root_from_nodes(header.history_size, store._read_node) != header.history_root:
        report.problems.append("%s: stored history nodes do not give history_root" % where)


def _check_records(store: "Store", header, walk: _Walk, report: CheckReport) -> None:
    where = "height %d" % header.height
    records = store._read_records(header.height, header.entry_count)
    leaves = [r.entry.leaf_hash() for r in records]
    begin = header.history_size - header.entry_count
    if leaves != store._read_leaves(begin, header.history_size):
        report.problems.append("%s: stored leaf nodes differ from the entries' leaf hashes" % where)
    if merkle.root(leaves) != header.entries_root:
        report.problems.append("%s: entries do not give entries_root" % where)
    for e, record in enumerate(records):
        if isinstance(record.entry.body, Deposit):
            walk.deposit_items.update((header.height, e, i) for i in range(record.entry.body.item_count))
        else:
            walk.other_entries.add((header.height, e))


def _check_head(head, last, walk: _Walk, report: CheckReport) -> None:
    if head.height == 0 or last is None:
        return
    if head.header_hash != last.hash() or head.header != last:
        report.problems.append("head pointer does not match the block at height %d" % head.height)
    if head.history_size != last.history_size or head.history_root != last.history_root:
        report.problems.append("head pointer's history size/root differ from the last header")


def _check_stray(store: "Store", head, report: CheckReport) -> None:
    problem = report.problems.append
    counts = {"heights": 0, "records": 0, "nodes": 0}
    for kind in counts:
        for ident, value in store._scan(kind):
            counts[kind] += 1
            if isinstance(value, CorruptionError):
                problem(str(value))
            elif kind == "heights" and not 1 <= ident <= head.height:
                problem("header stored beyond the head at height %d" % ident)
            elif kind == "records" and not 1 <= ident[0] <= head.height:
                problem("record stored beyond the head at %d/%d" % ident)
            elif kind == "nodes" and (ident[1] + 1) << ident[0] > head.history_size:
                problem("history node (%d, %d) stored beyond the history size" % ident)
    expected_nodes = sum(head.history_size >> level for level in range(head.history_size.bit_length()))
    if counts["heights"] != head.height:
        problem("%d headers stored, head is at height %d" % (counts["heights"], head.height))
    if counts["records"] != report.entries:
        problem("%d records stored, headers announce %d" % (counts["records"], report.entries))
    if counts["nodes"] != expected_nodes:
        problem("%d history nodes stored, size %d needs %d" % (counts["nodes"], head.history_size, expected_nodes))
    report.nodes = counts["nodes"]


def _check_nodes(store: "Store", size: int, report: CheckReport) -> None:
    sha = hashlib.sha256
    for level in range(1, size.bit_length()):
        for index in range(size >> level):
            try:
                left = store._read_node(level - 1, 2 * index)
                right = store._read_node(level - 1, 2 * index + 1)
                if store._read_node(level, index) != sha(b"\x01" + left + right).digest():
                    report.problems.append("history node (%d, %d) is not the hash of its children" % (level, index))
            except CorruptionError as exc:
                report.problems.append(str(exc))


def _check_keys(store: "Store", kind: str, targets: set, report: CheckReport) -> set:
    """Index ``kind`` must map its keys one-to-one onto ``targets``; returns its keys."""
    problem = report.problems.append
    what = "deposit item" if kind == "codes" else "non-deposit entry"
    seen: set = set()
    keys: set = set()
    for key, target in store._scan(kind):
        if isinstance(target, CorruptionError):
            problem(str(target))
            continue
        keys.add(key)
        if tuple(target) not in targets:
            problem("%s key %r names %r, which is not a stored %s" % (kind, key, tuple(target), what))
        elif tuple(target) in seen:
            problem("%s key %r names %r, which already has a key" % (kind, key, tuple(target)))
        seen.add(tuple(target))
    for target in sorted(targets - seen)[:100]:
        problem("%s %r has no key in the %s index" % (what, target, kind))
    return keys


def _check_cases(store: "Store", codes: set, report: CheckReport) -> None:
    problem = report.problems.append
    for case, code in store._scan("cases"):
        report.case_links += 1
        if isinstance(code, CorruptionError):
            problem(str(code))
        elif code not in codes:
            problem("case %r links unknown code %r" % (case, code))
