"""``evledger bench ledger``: what the ledger core costs on this machine.

Measures, with real signatures, real canonical encoding and a real LevelDB store
synced per block:

* Ed25519 signing and verification of a deposit entry (libsodium through PyNaCl):
  what every signed request and entry costs each process that checks it;
* Merkle root of 100,000 leaves;
* inclusion and consistency proofs per second (generated from stored nodes, and verified);
* appending 1,000-entry and 10,000-entry blocks (one single-item deposit per entry),
  entries/s with fsync, split into building (state checks, roots) and the append;
* lookups by deposit code per second in a store holding ``deposits`` deposits
  (filled with signed batches of 100 items, 10 batches per block);
* bytes on disk per deposit in both stores.

Results go to standard error as they come, then into the ``ledger`` section of
``docs/performance.md`` (between ``<!-- bench:ledger -->`` markers) with the
machine and the command, or as JSON with ``--json``.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from . import merkle
from .block import CommitCertificate, sign_commit
from .chain import LedgerApp
from .crypto import SecretKey
from .genesis import Member, Node, build_genesis
from .leveldb_store import LevelDBStore
from .model import DepositItem, make_deposit
from .state import Rules
from .store import BlockIndex

T0 = 1_760_000_000_000
VALIDATORS = ("bench-v1", "bench-v2", "bench-v3", "bench-v4")
MARK_START, MARK_END = "<!-- bench:ledger:start -->", "<!-- bench:ledger:end -->"


class _Progress:
    """A one-line progress indicator on standard error, only when it is a terminal."""

    def __init__(self, label: str, total: int):
        self.label, self.total, self.tty = label, total, sys.stderr.isatty()
        self.last = 0.0

    def update(self, done: int) -> None:
        now = time.monotonic()
        if self.tty and (now - self.last > 0.2 or done == self.total):
            self.last = now
            sys.stderr.write("\r  %s: %d/%d (%d%%)" % (self.label, done, self.total, 100 * done // max(1, self.total)))
            if done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else float("inf")


def _timed(func: Callable[[], object], repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


class _Chain:
    """A consortium of four validators and one depositor, and a LevelDB store to fill."""

    def __init__(self, folder: Path):
        self.keys = {n: SecretKey(hashlib.sha256(n.encode()).digest()) for n in VALIDATORS + ("bench-shop",)}
        members = [Member.make(n, ["validator"], self.keys[n].public,
                               node=Node("127.0.0.1:%d" % (7300 + i), "http://127.0.0.1:%d" % (7400 + i)))
                   for i, n in enumerate(VALIDATORS)]
        members.append(Member.make("bench-shop", ["depositor"], self.keys["bench-shop"].public))
        self.genesis = build_genesis("bench-chain", members, created_at=T0 - 10**9,
                                     limits={"max_items_per_deposit": 1000})
        self.store = LevelDBStore.open(folder)
        self.app = LedgerApp(Rules.from_genesis(self.genesis), self.store, self.genesis.validator_set().hash())
        self.tip = self.app.tip_of_store()
        self.counter = 0

    def deposits(self, count: int, items: int = 1) -> list:
        out = []
        key = self.keys["bench-shop"]
        for _ in range(count):
            batch = []
            for _ in range(items):
                self.counter += 1
                batch.append(DepositItem(digest=hashlib.sha256(b"bench %d" % self.counter).digest(), sm3=None,
                                         category="general", case=None, public_meta={}, private_commitment=None))
            out.append(make_deposit(batch, "bench-shop", T0 + self.counter % 1000, key, "bench-chain"))
        return out

    def append(self, records: list) -> tuple[float, float]:
        """Build, validate-free, certify and append one block; return (build s, append s)."""
        start = time.perf_counter()
        block, tip = self.app.build(self.tip, records, T0 + 1000 + self.tip.height, 0, VALIDATORS[0])
        sigs = tuple((n, sign_commit(self.keys[n], block.header)) for n in VALIDATORS[:3])
        index = BlockIndex.from_effects(block.header.height, tip.effects)
        built = time.perf_counter()
        self.store.append(block, CommitCertificate(block.header.hash(), sigs), index)
        done = time.perf_counter()
        if len(block.records) != len(records):
            raise RuntimeError("benchmark block lost records: %d of %d" % (len(block.records), len(records)))
        self.tip = tip
        return built - start, done - built

    def close(self) -> None:
        self.store.close()


def _disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def bench_merkle(results: dict) -> None:
    leaves = [hashlib.sha256(b"%d" % i).digest() for i in range(100_000)]
    results["merkle_root_100k_ms"] = _timed(lambda: merkle.root(leaves)) * 1000
    _say("  Merkle root of 100k leaves: %.1f ms" % results["merkle_root_100k_ms"])
    nodes = merkle.MemoryNodes()
    nodes.append(leaves)
    rng = random.Random(1)
    indexes = [rng.randrange(100_000) for _ in range(5000)]
    start = time.perf_counter()
    proofs = [merkle.inclusion_proof_from_nodes(i, 100_000, nodes.get) for i in indexes]
    results["inclusion_proofs_per_s"] = _rate(len(indexes), time.perf_counter() - start)
    root = merkle.root(leaves)
    start = time.perf_counter()
    for i, proof in zip(indexes, proofs):
        merkle.verify_inclusion(leaves[i], i, 100_000, proof, root)
    results["inclusion_verifies_per_s"] = _rate(len(indexes), time.perf_counter() - start)
    sizes = [rng.randrange(1, 100_000) for _ in range(2000)]
    start = time.perf_counter()
    cproofs = [merkle.consistency_proof_from_nodes(s, 100_000, nodes.get) for s in sizes]
    results["consistency_proofs_per_s"] = _rate(len(sizes), time.perf_counter() - start)
    roots = {s: merkle.root_from_nodes(s, nodes.get) for s in sizes}
    start = time.perf_counter()
    for s, proof in zip(sizes, cproofs):
        merkle.verify_consistency(s, 100_000, proof, roots[s], root)
    results["consistency_verifies_per_s"] = _rate(len(sizes), time.perf_counter() - start)
    _say("  proofs/s from stored nodes at 100k leaves: inclusion %.0f generated, %.0f verified; "
         "consistency %.0f generated, %.0f verified" % (results["inclusion_proofs_per_s"],
                                                         results["inclusion_verifies_per_s"],
                                                         results["consistency_proofs_per_s"],
                                                         results["consistency_verifies_per_s"]))


def bench_crypto(results: dict, rounds: int = 2000) -> None:
    """Microseconds per Ed25519 signature and per verification, over a deposit entry's body."""
    key = SecretKey(hashlib.sha256(b"bench-crypto").digest())
    record = make_deposit([DepositItem(hashlib.sha256(b"one").digest(), None, "general", None, {}, None)],
                          "bench-depositor", T0, key, "bench-chain")
    entry = record.entry
    body = entry.body_bytes()
    signature = key.sign(entry.context, "bench-chain", body)
    key.public.verify(entry.context, "bench-chain", body, signature)  # a wrong setup fails here, not in a figure

    def sign() -> None:
        for _ in range(rounds):
            key.sign(entry.context, "bench-chain", body)

    def verify() -> None:
        for _ in range(rounds):
            key.public.verify(entry.context, "bench-chain", body, signature)

    results["ed25519_sign_us"] = _timed(sign) / rounds * 1e6
    results["ed25519_verify_us"] = _timed(verify) / rounds * 1e6
    results["ed25519_body_bytes"] = len(body)
    _say("  Ed25519 over a %d-byte deposit body: sign %.1f us, verify %.1f us"
         % (len(body), results["ed25519_sign_us"], results["ed25519_verify_us"]))


def bench_append(results: dict, folder: Path) -> None:
    chain = _Chain(folder / "append")
    try:
        for size, blocks in ((1000, 10), (10_000, 3)):
            builds, appends = [], []
            progress = _Progress("%d-entry blocks" % size, blocks)
            for i in range(blocks):
                b, a = chain.append(chain.deposits(size))
                builds.append(b)
                appends.append(a)
                progress.update(i + 1)
            entries = size * blocks
            results["append_%d" % size] = {
                "blocks": blocks,
                "build_entries_per_s": _rate(entries, sum(builds)),
                "append_entries_per_s": _rate(entries, sum(appends)),
                "total_entries_per_s": _rate(entries, sum(builds) + sum(appends)),
                "append_ms_per_block": 1000 * sum(appends) / blocks,
            }
            r = results["append_%d" % size]
            _say("  %d-entry blocks: append (encode + fsync'd write) %.0f entries/s (%.1f ms/block); "
                 "build (state checks incl. signature verification, roots) %.0f entries/s; together %.0f entries/s"
                 % (size, r["append_entries_per_s"], r["append_ms_per_block"], r["build_entries_per_s"],
                    r["total_entries_per_s"]))
        deposits = chain.store.head().history_size
    finally:
        chain.close()
    results["bytes_per_single_deposit"] = _disk_bytes(folder / "append") / deposits
    _say("  bytes on disk per single-item deposit entry: %.0f" % results["bytes_per_single_deposit"])


def bench_lookup(results: dict, folder: Path, deposits: int) -> None:
    chain = _Chain(folder / "lookup")
    per_block, per_batch = 10, 100
    blocks = max(1, deposits // (per_block * per_batch))
    sample: list[bytes] = []
    rng = random.Random(2)
    progress = _Progress("filling the store", blocks)
    start = time.perf_counter()
    try:
        for i in range(blocks):
            chain.append(chain.deposits(per_block, items=per_batch))
            codes = list(chain.tip.effects.codes)
            sample.extend(rng.sample(codes, 10))
            progress.update(i + 1)
        results["fill_seconds"] = time.perf_counter() - start
        stored = blocks * per_block * per_batch
        results["lookup_store_deposits"] = stored
        rng.shuffle(sample)
        probe = (sample * (1 + 50_000 // max(1, len(sample))))[:50_000]
        start = time.perf_counter()
        for code in probe:
            if chain.store.locate(code) is None:
                raise RuntimeError("a stored code was not found")
        results["lookups_per_s"] = _rate(len(probe), time.perf_counter() - start)
        misses = [hashlib.sha256(b"miss %d" % i).hexdigest()[:25].upper().encode() for i in range(20_000)]
        start = time.perf_counter()
        for code in misses:
            chain.store.locate(code)
        results["missing_lookups_per_s"] = _rate(len(misses), time.perf_counter() - start)
    finally:
        chain.close()
    results["bytes_per_batched_deposit"] = _disk_bytes(folder / "lookup") / stored
    _say("  lookups by code in a store of %d deposits: %.0f/s found, %.0f/s not found; "
         "%.0f bytes on disk per deposit (batches of %d)" % (stored, results["lookups_per_s"],
                                                               results["missing_lookups_per_s"],
                                                               results["bytes_per_batched_deposit"], per_batch))


def machine() -> dict:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                          if line.startswith("MemTotal")))
        memory = "%.0f GiB" % (mem_kb / 2**20)
    except (OSError, StopIteration, ValueError):
        memory = "unknown"
    from importlib.metadata import PackageNotFoundError, version

    try:
        plyvel_version = version("plyvel")
    except PackageNotFoundError:
        plyvel_version = "?"
    return {"cpu": cpu, "cores": os.cpu_count(), "memory": memory, "python": platform.python_version(),
            "system": platform.platform(), "plyvel": plyvel_version,
            "date": time.strftime("%Y-%m-%d", time.gmtime()),
            "load": "%.1f" % os.getloadavg()[0]}


def render(results: dict, info: dict, command: str) -> str:
    a1, a10 = results["append_1000"], results["append_10000"]
    rows = [
        ("Ed25519 over a single deposit's %d-byte body: sign / verify" % results["ed25519_body_bytes"],
         "%.1f µs / %.1f µs" % (results["ed25519_sign_us"], results["ed25519_verify_us"])),
        ("Merkle root of 100,000 leaves", "%.1f ms" % results["merkle_root_100k_ms"]),
        ("inclusion proofs generated from stored nodes (tree of 100k)", "%.0f /s" % results["inclusion_proofs_per_s"]),
        ("inclusion proofs verified", "%.0f /s" % results["inclusion_verifies_per_s"]),
        ("consistency proofs generated / verified", "%.0f /s / %.0f /s" % (results["consistency_proofs_per_s"],
                                                                          results["consistency_verifies_per_s"])),
        ("append 1,000-entry blocks, fsync per block (encode + write)",
         "%.0f entries/s (%.1f ms/block)" % (a1["append_entries_per_s"], a1["append_ms_per_block"])),
        ("append 10,000-entry blocks, fsync per block (encode + write)",
         "%.0f entries/s (%.1f ms/block)" % (a10["append_entries_per_s"], a10["append_ms_per_block"])),
        ("build a block: state checks incl. one Ed25519 verification per entry, roots",
         "%.0f entries/s (1,000-entry) / %.0f entries/s (10,000-entry)" % (a1["build_entries_per_s"],
                                                                          a10["build_entries_per_s"])),
        ("lookups by code, %s deposits stored" % format(results["lookup_store_deposits"], ","),
         "%.0f /s found, %.0f /s not found" % (results["lookups_per_s"], results["missing_lookups_per_s"])),
        ("bytes on disk per deposit (single-item deposits)", "%.0f" % results["bytes_per_single_deposit"]),
        ("bytes on disk per deposit (signed batches of 100)", "%.0f" % results["bytes_per_batched_deposit"]),
    ]
    lines = [MARK_START, "## Ledger core (`evledger bench ledger`)", "",
             "Command: `%s`  " % command,
             "Machine: %s, %s cores, %s RAM, Python %s, plyvel %s, %s; measured %s "
             "(1-minute load average %s when the run ended: other work on the machine slows every figure)." % (
                 info["cpu"], info["cores"], info["memory"], info["python"], info["plyvel"], info["system"],
                 info["date"], info.get("load", "?")), "",
             "| what | result |", "|---|---|"]
    lines += ["| %s | %s |" % row for row in rows]
    lines += ["", "Entries are signed deposits (real Ed25519, canonical msgpack); every block is one synced "
              "LevelDB WriteBatch. Filling the lookup store took %.0f s." % results["fill_seconds"], MARK_END]
    return "\n".join(lines) + "\n"


def write_section(path: Path, section: str, marks: tuple[str, str] = (MARK_START, MARK_END)) -> None:
    """Put ``section`` between ``marks`` in ``path`` (appended when they are absent); the rest stays."""
    start, end = marks
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\nMeasured figures, each with its machine and command.\n\n"
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1].lstrip("\n")
        text = before + section + ("\n" + after if after else "")
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text, encoding="utf-8")


def main(deposits: int, folder: str | None, output: str, as_json: bool, command: str) -> int:
    base = Path(folder) if folder else Path(tempfile.mkdtemp(prefix="evledger-bench-"))
    base.mkdir(parents=True, exist_ok=True)
    results: dict = {}
    try:
        _say("evledger bench ledger: Ed25519")
        bench_crypto(results)
        _say("Merkle trees and proofs")
        bench_merkle(results)
        _say("block append (real signatures, LevelDB with fsync per block)")
        bench_append(results, base)
        _say("lookups by code")
        bench_lookup(results, base, deposits)
    finally:
        if not folder:
            shutil.rmtree(base, ignore_errors=True)
    info = machine()
    if as_json:
        print(json.dumps({"machine": info, "command": command, "results": results}, indent=2))
    section = render(results, info, command)
    if output == "-":
        if not as_json:
            sys.stdout.write(section)
    else:
        write_section(Path(output), section)
        _say("wrote %s" % output)
    return 0
