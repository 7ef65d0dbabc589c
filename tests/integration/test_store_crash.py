"""Crash test: SIGKILL a writer at random moments; every block must be whole or absent.

A subprocess (``crash_writer.py``) appends blocks in a loop and prints each
committed height.  The test waits, with a deadline, until the writer has reported
a random number of new commits, lets a random jitter pass (to spread the kill
over building, writing and fsyncing), then kills it with SIGKILL.  After each
kill the store is reopened and must hold contiguous heights 1..H, with
H >= the last height the writer reported (acknowledged appends are durable) and
H <= that + 1 (at most the block that was in flight), and ``check(deep=True)``
must find nothing wrong.  The next round restarts the writer on the same store.

This covers process death (the OS keeps what LevelDB wrote); power loss is the
province of ``sync=True`` (fsync per block), which a test cannot cut.
"""

from __future__ import annotations

import os
import queue
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger.leveldb_store import LevelDBStore

ROOT = Path(__file__).resolve().parents[2]
WRITER = Path(__file__).with_name("crash_writer.py")
ROUNDS = 12
SOAK_ROUNDS = 100
LINE_TIMEOUT = 15.0


class Writer:
    """The writer subprocess with a thread that turns its stdout into a queue of lines."""

    def __init__(self, path: Path, seed: int):
        env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen([sys.executable, str(WRITER), str(path), str(seed)], stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env, text=True)
        self.lines: queue.Queue = queue.Queue()
        self.reported = -1
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self.lines.put(line.strip())
        self.lines.put(None)

    def _take(self, line: str | None) -> None:
        if line is None:
            raise AssertionError("writer exited: %s" % self.proc.stderr.read())
        word, height = line.split()
        assert word in ("ready", "committed"), line
        self.reported = int(height)

    def wait_for(self, height: int) -> None:
        """Block until the writer reports ``height`` (deadline LINE_TIMEOUT per line)."""
        while self.reported < height:
            try:
                self._take(self.lines.get(timeout=LINE_TIMEOUT))
            except queue.Empty:
                raise AssertionError("writer reported nothing for %.0f s" % LINE_TIMEOUT) from None

    def kill(self) -> int:
        """SIGKILL, then return the last height the writer reported before dying."""
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=LINE_TIMEOUT)
        while True:
            line = self.lines.get(timeout=LINE_TIMEOUT)
            if line is None:
                break
            self._take(line)
        self.proc.stdout.close()
        self.proc.stderr.close()
        return self.reported


def verify(path: Path, reported: int) -> int:
    """Reopen after a kill and check the store; return its height."""
    # A writer killed before it reported "ready" may have died while LevelDB was
    # creating its files; only then may reopening create the store afresh.
    with LevelDBStore.open(path, create=reported < 0) as store:
        head = store.head()
        assert max(reported, 0) <= head.height <= max(reported, 0) + 1, (reported, head.height)
        report = store.check(deep=True)
        assert report.ok, report.problems
        assert report.blocks == head.height
        prev = None
        for height in range(1, head.height + 1):
            block = store.block(height)
            assert block.header.height == height
            assert prev is None or block.header.prev_hash == prev.hash()
            assert store.certificate(height).header_hash == block.header.hash()
            prev = block.header
        if head.height:
            assert head.header == prev and head.header_hash == prev.hash()
        return head.height


@pytest.mark.integration
def test_sigkill_leaves_only_whole_blocks(tmp_path):
    run_rounds(tmp_path / "db", ROUNDS)


@pytest.mark.soak
@pytest.mark.integration
def test_sigkill_soak(tmp_path):
    for i in range(SOAK_ROUNDS // 20):  # fresh stores keep each deep check short
        run_rounds(tmp_path / ("db%d" % i), 20)


def run_rounds(path: Path, rounds: int) -> None:
    """Kill the writer ``rounds`` times (set EVLEDGER_CRASH_SEED to reuse the seed of a failing run)."""
    seed = int(os.environ.get("EVLEDGER_CRASH_SEED", random.randrange(2**32)))
    print("crash test seed %d" % seed)
    rng = random.Random(seed)
    height = 0
    for round_no in range(rounds):
        writer = Writer(path, rng.getrandbits(32))
        try:
            if round_no == 0:
                time.sleep(rng.uniform(0, 0.2))  # may kill before, during or after the store is created
            else:
                writer.wait_for(height + rng.randint(1, 4))
                time.sleep(rng.uniform(0, 0.05))
            reported = writer.kill()
        finally:
            if writer.proc.poll() is None:
                writer.proc.kill()
        if path.exists():
            height = verify(path, reported)
        assert height >= reported, "seed %d: acknowledged block %d lost" % (seed, reported)
    assert height >= rounds - 1, "seed %d: the writer made too little progress" % seed
