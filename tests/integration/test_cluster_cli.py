"""``evledger cluster init/up/down`` and ``run`` through the real command line.

The CLI runs as a separate process from a working directory outside the source tree
(as an operator would run it), on folders under ``tmp_path``.  Ports are picked free
(``free_base_port``); every wait is for a condition with a deadline.

``up`` is tested for what does not need a working node (refusals, pid files, the
failure path that stops everything and shows the log's tail) and, when the node
runtime (``node.py``) is importable, end to end: every node answers, a second ``up``
is refused, ``down`` stops them all.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
import re
import signal
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
from ledger.crypto import NAME_RE, load_key_file
from ledger.genesis import load_genesis
from runtime import cluster
from runtime.config import load_node

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "cli.py"
EXAMPLE_GENESIS = ROOT / "config" / "genesis.example.json"
DEFAULT_VALIDATORS = ["court-node", "notary-node", "carrier-node", "bank-node"]
CLIENTS = ["ecommerce", "copyright", "arbitration", "court", "notary", "credit-bank", "credit-carrier"]


def run_cli(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(CLI), *map(str, args)], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=timeout)


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port(nodes: int) -> int:
    """A base port P with P+1..P+nodes and P+101..P+100+nodes all free right now."""
    for _ in range(200):
        base = random.randrange(20_000, 60_000, 10)
        ports = [base + i for i in range(1, nodes + 1)] + [base + 100 + i for i in range(1, nodes + 1)]
        if all(port_free(p) for p in ports):
            return base
    raise RuntimeError("no free port range found")


def layout(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


def expected_layout(nodes: list[str], clients: list[str]) -> set[str]:
    files = {"genesis.json"}
    for name in nodes:
        files |= {"nodes/%s/node.toml" % name, "nodes/%s/node.key" % name}
    files |= {"clients/%s.key" % name for name in clients}
    return files


def processes_naming(text: str) -> list[int]:
    """Pids of live (non-zombie) processes whose command line contains ``text``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace")
            state = (entry / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if text in args and state not in ("Z", "X"):
            found.append(int(entry.name))
    return found


def wait_until(predicate, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + what)
        time.sleep(0.05)


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The CLI's working directory: outside the source tree."""
    path = tmp_path / "cwd"
    path.mkdir()
    return path


# --------------------------------------------------------------------------- init


def test_init_writes_exactly_the_contracted_layout(tmp_path, workdir):
    root = tmp_path / "consortium"
    result = run_cli("cluster", "init", root, cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "court-node" in result.stdout and "evledger cluster up" in result.stdout

    assert layout(root) == expected_layout(DEFAULT_VALIDATORS, CLIENTS)
    for path in list(root.glob("nodes/*/node.key")) + list(root.glob("clients/*.key")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path

    genesis = load_genesis(root / "genesis.json")
    assert NAME_RE.fullmatch(genesis.chain_id) and genesis.chain_id.startswith("evledger-")
    assert len(genesis.chain_id) == len("evledger-") + 8
    assert [m.name for m in genesis.members] == DEFAULT_VALIDATORS + CLIENTS
    assert all(NAME_RE.fullmatch(m.name) and NAME_RE.fullmatch(m.institution) for m in genesis.members)
    for i, name in enumerate(DEFAULT_VALIDATORS, start=1):
        node = genesis.member(name).node
        assert (node.peer, node.api) == ("127.0.0.1:%d" % (7300 + i), "http://127.0.0.1:%d" % (7400 + i))

    # The same institutions, display names and roles as the documented example consortium.
    example = {m["name"]: m for m in json.loads(EXAMPLE_GENESIS.read_text(encoding="utf-8"))["members"]}
    for m in genesis.members:
        want = example[m.name]
        assert (m.display_name, m.institution, list(m.roles)) == (want["display_name"], want["institution"],
                                                                 sorted(want["roles"])), m.name

    for name in DEFAULT_VALIDATORS:
        setup = load_node(root / "nodes" / name / "node.toml")
        assert setup.member.name == name and setup.genesis.fingerprint() == genesis.fingerprint()
        assert setup.config.data_dir == root / "nodes" / name / "data"
        assert str(setup.config.api.listen) == genesis.member(name).node.api.split("://")[1]
        assert str(setup.config.peer.listen) == genesis.member(name).node.peer
    for name in CLIENTS:
        key = load_key_file(root / "clients" / (name + ".key"))
        assert key.name == name and key.key.public == genesis.member(name).public_key


def test_init_with_more_validators_observers_and_another_base_port(tmp_path, workdir):
    root = tmp_path / "big"
    result = run_cli("cluster", "init", root, "--validators", "7", "--observers", "2", "--base-port", "9000",
                     "--chain-id", "test-chain", "--json", cwd=workdir)
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    nodes = DEFAULT_VALIDATORS + ["validator-5", "validator-6", "validator-7", "observer-1", "observer-2"]
    assert [n["name"] for n in doc["nodes"]] == nodes
    assert [n["role"] for n in doc["nodes"]] == ["validator"] * 7 + ["observer"] * 2
    assert [n["peer"] for n in doc["nodes"]] == ["127.0.0.1:%d" % (9000 + i) for i in range(1, 10)]
    assert [n["api"] for n in doc["nodes"]] == ["http://127.0.0.1:%d" % (9100 + i) for i in range(1, 10)]
    assert [c["name"] for c in doc["clients"]] == CLIENTS
    assert doc["chain_id"] == "test-chain" and doc["dir"] == str(root)
    assert layout(root) == expected_layout(nodes, CLIENTS)
    genesis = load_genesis(root / "genesis.json")
    assert doc["fingerprint"] == genesis.fingerprint()
    assert len(genesis.members_with_role("validator")) == 7
    assert [m.name for m in genesis.members_with_role("observer")] == ["observer-1", "observer-2"]
    for name in nodes:
        assert load_node(Path(doc["nodes"][nodes.index(name)]["config"])).member.name == name


def test_init_with_fewer_validators_takes_the_first(tmp_path, workdir):
    root = tmp_path / "small"
    assert run_cli("cluster", "init", root, "--validators", "2", cwd=workdir).returncode == 0
    genesis = load_genesis(root / "genesis.json")
    assert [m.name for m in genesis.members_with_role("validator")] == ["court-node", "notary-node"]
    assert layout(root) == expected_layout(["court-node", "notary-node"], CLIENTS)


def test_each_init_makes_a_fresh_chain_and_fresh_keys(tmp_path, workdir):
    a, b = cluster.init(tmp_path / "a"), cluster.init(tmp_path / "b")
    assert a.genesis.chain_id != b.genesis.chain_id
    assert {m.public_key for m in a.genesis.members}.isdisjoint({m.public_key for m in b.genesis.members})


def test_a_non_empty_folder_is_refused_unless_forced(tmp_path, workdir):
    root = tmp_path / "used"
    root.mkdir()
    (root / "notes.txt").write_text("mine")
    result = run_cli("cluster", "init", root, cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE
    assert "not empty" in result.stderr and "--force" in result.stderr
    assert layout(root) == {"notes.txt"}

    assert run_cli("cluster", "init", root, "--validators", "5", cwd=workdir).returncode == cli.EXIT_USAGE
    first = run_cli("cluster", "init", root, "--validators", "5", "--force", "--json", cwd=workdir)
    assert first.returncode == 0, first.stderr
    (root / "nodes" / "validator-5" / "data").mkdir()  # node data of the old chain goes with it
    second = run_cli("cluster", "init", root, "--force", "--json", cwd=workdir)
    assert second.returncode == 0, second.stderr
    assert json.loads(first.stdout)["chain_id"] != json.loads(second.stdout)["chain_id"]
    assert layout(root) == expected_layout(DEFAULT_VALIDATORS, CLIENTS) | {"notes.txt"}
    assert not (root / "nodes" / "validator-5").exists()


def test_a_file_in_place_of_the_folder_is_refused(tmp_path, workdir):
    (tmp_path / "file").write_text("x")
    result = run_cli("cluster", "init", tmp_path / "file", cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE and "not a folder" in result.stderr


@pytest.mark.parametrize("args, message", [
    (["--validators", "0"], "must be positive"),
    (["--validators", "many"], "not an integer"),
    (["--observers", "-1"], "must not be negative"),
    (["--validators", "90", "--observers", "10"], "at most 99"),
    (["--base-port", "65500"], "too high"),
    (["--chain-id", "Bad_Chain"], "not valid"),
    (["--chain-id", "-x"], "expected one argument"),
])
def test_init_refuses_bad_options_with_exit_2(tmp_path, workdir, args, message):
    result = run_cli("cluster", "init", tmp_path / "x", *args, cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE, result.stderr
    assert message in result.stderr
    assert not (tmp_path / "x" / "genesis.json").exists()


# --------------------------------------------------------------------------- help and usage


@pytest.mark.parametrize("verb", [["cluster"], ["cluster", "init"], ["cluster", "up"], ["cluster", "down"], ["run"]])
def test_help_on_every_verb(workdir, verb):
    result = run_cli(*verb, "--help", cwd=workdir)
    assert result.returncode == 0, result.stderr
    assert "usage: evledger " + " ".join(verb) in result.stdout


@pytest.mark.parametrize("args", [["cluster"], ["cluster", "start"], ["cluster", "init"], ["cluster", "up"],
                                  ["cluster", "down", "d", "--timeout", "0"], ["run"]])
def test_bad_usage_exits_2(workdir, args):
    result = run_cli(*args, cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE
    assert "error:" in result.stderr and "--help" in result.stderr


def test_run_with_a_bad_configuration_exits_2_naming_the_key(tmp_path, workdir):
    root = cluster.init(tmp_path / "c").dir
    config = root / "nodes" / "court-node" / "node.toml"
    config.write_text(config.read_text().replace('listen = "127.0.0.1:7401"', 'listen = "127.0.0.1"'))
    result = run_cli("run", config, cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE
    assert "api.listen" in result.stderr and "host:port" in result.stderr


# --------------------------------------------------------------------------- up and down without a working node


def test_up_and_down_refuse_a_folder_that_is_not_a_consortium(tmp_path, workdir):
    (tmp_path / "empty").mkdir()
    for verb in ("up", "down"):
        result = run_cli("cluster", verb, tmp_path / "empty", cwd=workdir)
        assert result.returncode == cli.EXIT_USAGE, result.stderr
        assert "cluster folder" in result.stderr or "cluster init" in result.stderr
    result = run_cli("cluster", "up", tmp_path / "missing", cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE and "not a folder" in result.stderr


def test_up_with_a_broken_configuration_starts_nothing(tmp_path, workdir):
    root = cluster.init(tmp_path / "c", base_port=free_base_port(4)).dir
    config = root / "nodes" / "bank-node" / "node.toml"
    config.write_text(config.read_text() + "\n[extra]\nx = 1\n")
    result = run_cli("cluster", "up", root, cwd=workdir)
    assert result.returncode == cli.EXIT_USAGE
    assert "[extra]" in result.stderr and "unknown section" in result.stderr and str(config) in result.stderr
    assert not list(root.glob("nodes/*/node.pid")) and not list(root.glob("nodes/*/node.log"))
    assert not processes_naming(str(root))


def test_down_with_nothing_running_says_so(tmp_path, workdir):
    root = cluster.init(tmp_path / "c").dir
    result = run_cli("cluster", "down", root, cwd=workdir)
    assert result.returncode == 0 and "no node" in result.stdout and "running" in result.stdout
    result = run_cli("cluster", "down", root, "--json", cwd=workdir)
    assert json.loads(result.stdout) == {"stopped": [], "killed": [], "not_running": sorted(DEFAULT_VALIDATORS),
                                         "survivors": []}


def stand_in(config: Path, ignore_sigterm: bool = False) -> subprocess.Popen:
    """A process whose command line names ``config``, as a node's does: what pid files and ``down`` act on."""
    code = "import signal, time\n"
    if ignore_sigterm:
        code += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    code += "print('ready', flush=True)\ntime.sleep(120)\n"
    proc = subprocess.Popen([sys.executable, "-c", code, str(config)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"  # the signal disposition is in place
    return proc


def test_pid_files_guard_up_init_and_drive_down(tmp_path, workdir):
    root = cluster.init(tmp_path / "c", base_port=free_base_port(4)).dir
    court, bank = root / "nodes" / "court-node", root / "nodes" / "bank-node"
    polite, stubborn = stand_in(court / "node.toml"), stand_in(bank / "node.toml", ignore_sigterm=True)
    unrelated = stand_in(tmp_path / "something-else.toml")
    try:
        (court / "node.pid").write_text("%d\n" % polite.pid)
        (bank / "node.pid").write_text("%d\n" % stubborn.pid)
        (root / "nodes" / "notary-node" / "node.pid").write_text("%d\n" % unrelated.pid)  # a reused pid
        (root / "nodes" / "carrier-node" / "node.pid").write_text("garbage\n")

        result = run_cli("cluster", "up", root, cwd=workdir)
        assert result.returncode == cli.EXIT_USAGE
        assert "already running" in result.stderr and "court-node (pid %d)" % polite.pid in result.stderr
        assert "notary-node" not in result.stderr  # its pid is not one of our nodes
        result = run_cli("cluster", "init", root, "--force", cwd=workdir)
        assert result.returncode == cli.EXIT_USAGE and "while its nodes run" in result.stderr

        result = run_cli("cluster", "down", root, "--timeout", "1", "--json", cwd=workdir)
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        assert report == {"stopped": ["court-node"], "killed": ["bank-node"],
                          "not_running": ["carrier-node", "notary-node"], "survivors": []}
        assert polite.wait(10) == -signal.SIGTERM and stubborn.wait(10) == -signal.SIGKILL
        assert unrelated.poll() is None  # never signalled: its command line does not name a node of ours
        assert not list(root.glob("nodes/*/node.pid"))
    finally:
        for proc in (polite, stubborn, unrelated):
            proc.kill()
            proc.wait()


def test_up_stops_everything_and_shows_the_log_when_a_node_cannot_start(tmp_path, workdir):
    """A node whose API port is taken cannot start: exit 3, its log's tail, nothing left running."""
    base = free_base_port(4)
    root = cluster.init(tmp_path / "c", base_port=base).dir
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", base + 102))  # notary-node's API port
        blocker.listen()
        result = run_cli("cluster", "up", root, "--timeout", "60", cwd=workdir)
    assert result.returncode == cli.EXIT_UNAVAILABLE, result.stderr
    assert "did not start" in result.stderr and "last lines of" in result.stderr
    assert "every node this command started has been stopped" in result.stderr
    failed = re.search(r"evledger cluster up: (\S+) did not start", result.stderr)
    assert failed and failed.group(1) in DEFAULT_VALIDATORS, result.stderr
    assert "node.log" in result.stderr
    wait_until(lambda: not processes_naming(str(root)), "the started nodes to exit")
    assert not list(root.glob("nodes/*/node.pid"))
    assert all((root / "nodes" / n / "node.log").exists() for n in DEFAULT_VALIDATORS)


def test_log_tail_shows_only_the_last_start(tmp_path):
    log = tmp_path / "node.log"
    log.write_text("old run\n%scourt-node ====\nfirst\n\n%scourt-node ====\nsecond\nthird\n"
                   % (cluster._LOG_MARK, cluster._LOG_MARK))
    assert cluster.log_tail(log) == ["second", "third"]
    assert cluster.log_tail(log, lines=1) == ["third"]
    assert cluster.log_tail(tmp_path / "missing.log") == []


# --------------------------------------------------------------------------- up and down with the real node


@pytest.mark.skipif(importlib.util.find_spec("node") is None, reason="the node runtime (node.py) is not present")
def test_up_starts_every_node_and_down_stops_them(tmp_path, workdir):
    base = free_base_port(5)
    root = cluster.init(tmp_path / "c", observers=1, base_port=base).dir
    try:
        result = run_cli("cluster", "up", root, "--json", "--timeout", "60", cwd=workdir)
        assert result.returncode == 0, result.stderr
        doc = json.loads(result.stdout)
        assert set(doc) == {"nodes", "clients"}
        names = DEFAULT_VALIDATORS + ["observer-1"]
        assert [n["name"] for n in doc["nodes"]] == names
        for i, node in enumerate(doc["nodes"], start=1):
            assert set(node) == {"name", "role", "api", "pid", "config"}
            assert node["role"] == ("observer" if node["name"] == "observer-1" else "validator")
            assert node["api"] == "http://127.0.0.1:%d" % (base + 100 + i)
            assert node["config"] == str(root / "nodes" / node["name"] / "node.toml")
            assert (root / "nodes" / node["name"] / "node.pid").read_text().strip() == str(node["pid"])
            assert node["pid"] in processes_naming(node["config"])
        assert [c["name"] for c in doc["clients"]] == CLIENTS
        assert all(set(c) == {"name", "roles", "key"} and Path(c["key"]).is_file() for c in doc["clients"])
        assert next(c for c in doc["clients"] if c["name"] == "court")["roles"] == ["court", "credit-source"]

        again = run_cli("cluster", "up", root, cwd=workdir)
        assert again.returncode == cli.EXIT_USAGE and "already running" in again.stderr

        result = run_cli("cluster", "down", root, "--json", cwd=workdir)
        assert result.returncode == 0, result.stderr
        assert sorted(json.loads(result.stdout)["stopped"]) == sorted(names)
        assert not processes_naming(str(root)) and not list(root.glob("nodes/*/node.pid"))
    finally:
        run_cli("cluster", "down", root, "--timeout", "5", cwd=workdir)
