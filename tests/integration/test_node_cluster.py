"""Real consortia: node processes on 127.0.0.1, real LevelDB, real signatures, the real CLI.

Every wait is for a condition with a deadline, never a fixed sleep.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ledger.crypto import load_key_file
from runtime import cluster
from services.client import ClientError, EvledgerClient, build_deposits

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "cli.py")]

pytestmark = pytest.mark.integration


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (ClientError, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError("timed out after %g s waiting for %s (last: %r)" % (timeout, what, last))


def status(api: str) -> dict:
    with EvledgerClient(api, timeout=5) as client:
        return client.status()


@pytest.fixture
def consortium(tmp_path):
    folder = tmp_path / "consortium"
    result = run_cli("cluster", "init", str(folder), "--validators", "4", "--observers", "1",
                     "--base-port", str(cluster.free_base_port()))
    assert result.returncode == 0, result.stderr
    up = run_cli("cluster", "up", str(folder), "--json")
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    yield folder, doc
    down = run_cli("cluster", "down", str(folder))
    assert down.returncode == 0, down.stderr
    for node in (folder / "nodes").iterdir():
        log = (node / "node.log").read_text(errors="replace")
        assert "Traceback" not in log, "%s logged a traceback:\n%s" % (node.name, log[-3000:])


def client_key(doc: dict, role: str) -> str:
    return next(c["key"] for c in doc["clients"] if role in c["roles"])


def api_of(doc: dict, name: str) -> str:
    return next(n["api"] for n in doc["nodes"] if n["name"] == name)


def _garbage_to_every_peer_port(folder: Path) -> None:
    """Connect to each node's peer port and send what no member would."""
    from runtime.config import load_config

    for config_path in sorted((folder / "nodes").glob("*/node.toml")):
        listen = load_config(config_path).peer.listen
        for payload in (b"\xff" * 64, b"\x00\x00\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n", os.urandom(4096)):
            with socket.create_connection((listen.host, listen.port), timeout=5) as conn:
                conn.sendall(payload)


def test_deposits_through_any_node_commit_and_verify_on_every_node(consortium, tmp_path):
    folder, doc = consortium
    key = client_key(doc, "depositor")
    _garbage_to_every_peer_port(folder)
    validators = {n["name"] for n in doc["nodes"] if n["role"] == "validator"}
    for node in doc["nodes"]:  # every member link survived (the deposits below commit on every node too)
        wait_for(lambda: validators - {node["name"]} <= set(status(node["api"])["peers_connected"]), 10,
                 "%s to keep its links to the validators" % node["name"])
    files = []
    for i in range(len(doc["nodes"])):
        path = tmp_path / ("evidence-%d.txt" % i)
        path.write_text("证据 %d\n" % i, encoding="utf-8")
        files.append(path)
    codes = []
    for node, path in zip(doc["nodes"], files):  # one deposit through each node, the observer included
        result = run_cli("deposit", str(path), "--node", node["api"], "--key", key, "--category", "e-contract",
                         "--wait", "--json")
        assert result.returncode == 0, result.stderr
        (item,) = json.loads(result.stdout)
        assert item["digest"] == hashlib.sha256(path.read_bytes()).hexdigest() and item["height"] >= 1
        codes.append(item["code"])
    for node in doc["nodes"]:  # every node, the observer included, answers for every deposit
        for code, path in zip(codes, files):
            wait_for(lambda: run_cli("verify", code, str(path), "--node", node["api"]).returncode == 0, 20,
                     "%s to know %s" % (node["name"], code))
    tampered = tmp_path / "tampered.txt"
    tampered.write_text("证据 0 (改)\n", encoding="utf-8")
    assert run_cli("verify", codes[0], str(tampered), "--node", doc["nodes"][0]["api"]).returncode == 1
    typo = codes[0][:-1] + ("0" if codes[0][-1] != "0" else "1")
    result = run_cli("verify", typo, "--node", doc["nodes"][0]["api"], "--json")
    assert result.returncode == 2 and json.loads(result.stdout)["verdict"] == "malformed_code"
    heads = {(s["height"], s["last_block_hash"]) for s in (status(n["api"]) for n in doc["nodes"])}
    assert len(heads) == 1


def _stream(api: str, key_path: str, count: int, tag: str) -> list[str]:
    identity = load_key_file(key_path)
    codes = []
    with EvledgerClient(api, key_file=identity, timeout=10) as client:
        for i in range(count):
            digest = hashlib.sha256(("%s-%d" % (tag, i)).encode()).digest()
            records = build_deposits([digest], identity.name, identity.key, client.chain_id)
            codes.append(client.deposit(records)[0]["code"])
    return codes


def _kill(folder: Path, name: str, sig: int) -> int:
    pid = int((folder / "nodes" / name / "node.pid").read_text())
    os.kill(pid, sig)
    wait_for(lambda: not _alive(pid), 15, "%s to exit" % name)
    return pid


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path("/proc/%d/stat" % pid)
    return not (stat.exists() and stat.read_text().split()[2] == "Z")


def _restart(folder: Path, name: str) -> subprocess.Popen:
    config = folder / "nodes" / name / "node.toml"
    log = open(folder / "nodes" / name / "node.log", "ab")
    proc = subprocess.Popen(CLI + ["run", str(config)], stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    (folder / "nodes" / name / "node.pid").write_text(str(proc.pid))
    return proc


class _Stream(threading.Thread):
    """Single deposits to one node, one after another, until stopped; keeps every accepted code."""

    def __init__(self, api: str, key_path: str, tag: str):
        super().__init__(daemon=True)
        self.api, self.identity, self.tag = api, load_key_file(key_path), tag
        self.codes: list[str] = []
        self.refused: list[str] = []  # e.g. 503 while the view changes: the client would retry
        self.stop = threading.Event()

    def run(self) -> None:
        with EvledgerClient(self.api, key_file=self.identity, timeout=10) as client:
            i = 0
            while not self.stop.is_set():
                i += 1
                digest = hashlib.sha256(("%s-%d" % (self.tag, i)).encode()).digest()
                records = build_deposits([digest], self.identity.name, self.identity.key, client.chain_id)
                try:
                    self.codes.append(client.deposit(records)[0]["code"])
                except ClientError as exc:
                    self.refused.append(str(exc))
                self.stop.wait(0.02)


def test_primary_killed_during_a_stream_others_change_view_and_it_catches_up(consortium):
    folder, doc = consortium
    key = client_key(doc, "depositor")
    backup_api = api_of(doc, "court-node")
    primary = status(backup_api)["primary"]
    other = next(n["api"] for n in doc["nodes"] if n["name"] not in (primary,) and n["role"] == "validator")
    stream = _Stream(other, key, "stream")
    stream.start()
    try:
        wait_for(lambda: len(stream.codes) >= 20 and status(other)["height"] >= 1, 30, "the stream's first commits")
        at_kill = len(stream.codes)
        _kill(folder, primary, signal.SIGKILL)  # mid-stream: some deposits are in flight to the primary
        wait_for(lambda: len(stream.codes) >= at_kill + 20, 30, "deposits accepted after the kill")
    finally:
        stream.stop.set()
        stream.join(15)
    with EvledgerClient(other) as client:  # every deposit the node accepted, before and after the kill
        heights = client.wait_committed(stream.codes, timeout=60)
    assert len(heights) == len(stream.codes)
    new_status = status(other)
    assert new_status["view"] >= 1 and new_status["primary"] != primary
    proc = _restart(folder, primary)
    try:
        head = lambda api: (status(api)["height"], status(api)["last_block_hash"])  # noqa: E731
        wait_for(lambda: head(api_of(doc, primary)) == head(other), 60, "the restarted primary to reach the same head")
        with EvledgerClient(api_of(doc, primary)) as client:
            assert client.get_deposit(stream.codes[-1])["state"] == "committed"
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def test_backup_restarted_and_wiped_node_resynchronise(consortium):
    folder, doc = consortium
    key = client_key(doc, "depositor")
    primary = status(api_of(doc, "court-node"))["primary"]
    backup = next(n["name"] for n in doc["nodes"] if n["role"] == "validator" and n["name"] != primary)
    entry_api = next(n["api"] for n in doc["nodes"] if n["name"] not in (backup,) and n["role"] == "validator")
    first = _stream(entry_api, key, 5, "one")
    with EvledgerClient(entry_api) as client:
        client.wait_committed(first, timeout=30)
    _kill(folder, backup, signal.SIGTERM)  # clean stop
    second = _stream(entry_api, key, 5, "two")
    with EvledgerClient(entry_api) as client:
        client.wait_committed(second, timeout=30)
    procs = [_restart(folder, backup)]
    try:
        head = status(entry_api)
        wait_for(lambda: status(api_of(doc, backup))["last_block_hash"] == head["last_block_hash"], 60,
                 "restarted backup to reach the same head")
        # Wipe a validator's data folder, then the observer's: each must resynchronise from its peers.
        for name in (backup, "observer-1"):
            _kill(folder, name, signal.SIGTERM)
            shutil.rmtree(folder / "nodes" / name / "data")
            procs.append(_restart(folder, name))
            wait_for(lambda: status(api_of(doc, name))["last_block_hash"] == status(entry_api)["last_block_hash"],
                     60, "wiped %s to resynchronise" % name)
            with EvledgerClient(api_of(doc, name)) as client:
                assert all(client.get_deposit(c)["state"] == "committed" for c in first + second)
        third = _stream(entry_api, key, 5, "three")  # and the wiped validator follows what comes next
        with EvledgerClient(api_of(doc, backup)) as client:
            client.wait_committed(third, timeout=30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
                proc.wait(15)


def test_receipt_from_one_node_verifies_offline_and_names_a_tamper(consortium, tmp_path):
    folder, doc = consortium
    evidence = tmp_path / "合同.txt"
    evidence.write_text("电子合同 第1版\n", encoding="utf-8")
    result = run_cli("deposit", str(evidence), "--node", doc["nodes"][0]["api"], "--key", client_key(doc, "depositor"),
                     "--category", "e-contract", "--wait", "--json")
    assert result.returncode == 0, result.stderr
    code = json.loads(result.stdout)[0]["code"]
    receipt = tmp_path / "receipt.json"
    observer = api_of(doc, "observer-1")
    wait_for(lambda: run_cli("receipt", code, "--node", observer, "-o", str(receipt)).returncode == 0, 20,
             "the observer to serve the receipt")
    genesis = str(folder / "genesis.json")
    ok = run_cli("verify-receipt", str(receipt), "--genesis", genesis, "--file", str(evidence), "--json")
    assert ok.returncode == 0 and json.loads(ok.stdout)["verdict"] == "match", ok.stdout + ok.stderr
    other = tmp_path / "other.txt"
    other.write_text("电子合同 第2版\n", encoding="utf-8")
    bad = run_cli("verify-receipt", str(receipt), "--genesis", genesis, "--file", str(other), "--json")
    assert bad.returncode == 1 and json.loads(bad.stdout)["verdict"] == "mismatch"
    tampered = json.loads(receipt.read_text())
    tampered["header"]["timestamp"] -= 86_400_000  # backdate the block by a day
    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps(tampered))
    result = run_cli("verify-receipt", str(forged), "--genesis", genesis, "--json")
    verdict = json.loads(result.stdout)
    assert result.returncode == 1 and verdict["verdict"] == "invalid" and verdict["failed_check"]
    assert run_cli("receipt", code[:-1] + "#", "--node", observer, "-o", "-").returncode == 2
    assert run_cli("verify-receipt", str(tmp_path / "missing.json"), "--genesis", genesis).returncode == 2
