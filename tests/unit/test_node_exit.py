"""`evledger run`'s exit codes when the node cannot start or stops on a failed write
(CONTRACT: 3 is a node unreachable or failing, never 1)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import plyvel

import node as node_module
from runtime import cluster
from runtime.config import load_node

ROOT = Path(__file__).resolve().parents[2]


def test_a_store_in_use_by_another_process_exits_3_without_a_traceback(tmp_path):
    folder = tmp_path / "c"
    cluster.init(folder, base_port=cluster.free_base_port())
    config = next((folder / "nodes").glob("*/node.toml"))
    chain = load_node(config).config.data_dir / "chain"
    chain.mkdir(parents=True)
    held = plyvel.DB(str(chain), create_if_missing=True)  # LevelDB's lock file: this process holds it
    try:
        done = subprocess.run([sys.executable, str(ROOT / "cli.py"), "run", str(config)], capture_output=True,
                              text=True, timeout=60)
    finally:
        held.close()
    assert done.returncode == 3, done.stderr
    assert "stopped: cannot open store" in done.stderr and "Traceback" not in done.stderr


class _StoppedByAFailedWrite:
    def __init__(self, setup):
        self.actions = None

    async def start(self) -> None:
        self.actions = SimpleNamespace(failed=True)  # what _write_failed leaves before its SIGTERM
        asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    async def stop(self) -> None:
        pass


def test_a_node_stopped_by_a_failed_write_exits_3(monkeypatch):
    monkeypatch.setattr(node_module, "Node", _StoppedByAFailedWrite)
    assert asyncio.run(node_module.serve(SimpleNamespace())) == 3


def test_a_node_stopped_by_the_operator_exits_0(monkeypatch):
    class Stopped(_StoppedByAFailedWrite):
        async def start(self) -> None:
            self.actions = SimpleNamespace(failed=False)
            asyncio.get_running_loop().call_soon(os.kill, os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(node_module, "Node", Stopped)
    assert asyncio.run(node_module.serve(SimpleNamespace())) == 0
