"""A consortium on disk: ``evledger cluster init``, ``up`` and ``down``.

Theory of operation
-------------------
A *cluster folder* holds a whole consortium for one machine (CONTRACT section 2)::

    DIR/genesis.json           public consortium file (ledger.genesis)
    DIR/nodes/NAME/node.toml   one node's configuration (runtime.config), paths relative to it
    DIR/nodes/NAME/node.key    that node's secret key, mode 0600
    DIR/clients/NAME.key       an institution client's secret key, mode 0600

and, while nodes run, ``DIR/nodes/NAME/node.pid`` (the process id, one line),
``DIR/nodes/NAME/node.log`` (the node's standard output and error, appended to) and
``DIR/nodes/NAME/data/`` (its LevelDB store, created by the node).

:func:`init` generates every key, builds the genesis with
:func:`ledger.genesis.build_genesis` (so it obeys the rules of a loaded one) and
writes the files above.  Nodes are numbered ``i = 1..N+M`` (validators first) and
listen on 127.0.0.1, peer port ``P+i`` and API port ``P+100+i``; at most
:data:`MAX_NODES` nodes keep the two ranges apart.

:func:`up` validates every node's configuration first (:func:`runtime.config.load_node`;
a bad file is an input error and nothing is started), refuses if a node of the
folder is already running, then starts each node as its own process
(``COMMAND... CONFIG``, by default ``python cli.py run CONFIG``) in a new session,
so that closing the terminal or ``Ctrl-C`` in it does not reach the nodes, with
standard output and error appended to ``node.log``.  It then polls every node's
``GET /v1/status`` (on the API address genesis gives it, without any HTTP proxy)
until each answers 200 with its own member name.  If a node exits first, or the
deadline passes, it stops every process it started and raises :class:`StartError`
naming the node with the tail of its log.

:func:`down` reads the pid files; a recorded process is signalled only if it is
alive *and* its command line (``/proc/PID/cmdline``) contains the node's
``node.toml`` path, so a pid reused by an unrelated process is never touched.  It
sends SIGTERM, waits up to a deadline, sends SIGKILL to stragglers and removes the
pid files.  Stale pid files are removed.  Paths are resolved with ``realpath`` so a
folder reached through a symbolic link is still recognised.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ledger.crypto import NAME_RE, SecretKey, write_key_file
from ledger.errors import GenesisError, InputError
from ledger.block import MAX_VALIDATORS
from ledger.genesis import NODE_ROLES, Genesis, Member, Node, build_genesis, load_genesis

from .config import KEYS, ConfigError, load_node

__all__ = [
    "API_OFFSET",
    "CLIENTS",
    "DEFAULT_BASE_PORT",
    "DEFAULT_VALIDATORS",
    "MAX_NODES",
    "ClientEntry",
    "Cluster",
    "ClusterError",
    "Institution",
    "NodeEntry",
    "StartError",
    "StopReport",
    "default_command",
    "down",
    "init",
    "plan",
    "read",
    "up",
]

DEFAULT_VALIDATORS = 4
DEFAULT_BASE_PORT = 7300
API_OFFSET = 100
MAX_NODES = API_OFFSET - 1
HOST = "127.0.0.1"
CONFIG_FILE = "node.toml"
NODE_KEY_FILE = "node.key"
PID_FILE = "node.pid"
LOG_FILE = "node.log"
LOG_TAIL_LINES = 20
_LOG_MARK = "==== evledger cluster up: starting "


class ClusterError(InputError):
    """The cluster folder or a request about it is not acceptable (bad input: exit 2)."""

    reason = "bad_cluster"


class StartError(Exception):
    """A node did not come up; every process ``up`` had started has been stopped (exit 3)."""

    def __init__(self, node: str, problem: str, log: Path, tail: Sequence[str]):
        super().__init__("%s did not start: %s" % (node, problem))
        self.node, self.problem, self.log, self.tail = node, problem, log, tuple(tail)


# --------------------------------------------------------------------------- who is in a consortium


@dataclass(frozen=True, slots=True)
class Institution:
    """A member to create: name, Chinese display name, institution id, roles."""

    name: str
    display_name: str
    institution: str
    roles: tuple[str, ...]


VALIDATORS: tuple[Institution, ...] = (
    Institution("court-node", "北京互联网法院 验证节点", "internet-court", ("validator",)),
    Institution("notary-node", "公证处 验证节点", "notary-office", ("validator",)),
    Institution("carrier-node", "电信运营商 验证节点", "telecom-carrier", ("validator",)),
    Institution("bank-node", "商业银行 验证节点", "commercial-bank", ("validator",)),
)
FIRST_OBSERVER = Institution("observer-1", "司法鉴定中心 观察节点", "forensic-center", ("observer",))
# Node keys hold only a node role (ledger.genesis), so an institution that runs a node
# and also acts as a client (the court, the notary, the bank, the carrier) has a
# separate client member.
CLIENTS: tuple[Institution, ...] = (
    Institution("ecommerce", "电商平台", "ecommerce-platform", ("depositor",)),
    Institution("copyright", "版权登记平台", "copyright-platform", ("depositor",)),
    Institution("arbitration", "仲裁委员会", "arbitration-commission", ("arbitration",)),
    Institution("court", "北京互联网法院", "internet-court", ("court", "credit-source")),
    Institution("notary", "公证处", "notary-office", ("notary",)),
    Institution("credit-bank", "商业银行 信用数据源", "commercial-bank", ("credit-source",)),
    Institution("credit-carrier", "电信运营商 信用数据源", "telecom-carrier", ("credit-source",)),
)


def _validator(i: int) -> Institution:
    return VALIDATORS[i - 1] if i <= len(VALIDATORS) else \
        Institution("validator-%d" % i, "验证节点 %d" % i, "validator-%d" % i, ("validator",))


def _observer(i: int) -> Institution:
    return FIRST_OBSERVER if i == 1 else Institution("observer-%d" % i, "观察节点 %d" % i, "observer-%d" % i,
                                                      ("observer",))


def plan(validators: int = DEFAULT_VALIDATORS, observers: int = 0,
         base_port: int = DEFAULT_BASE_PORT) -> list[tuple[Institution, Node | None]]:
    """The members :func:`init` creates, in genesis order, with their node addresses.

    Validators ``1..validators`` then observers get peer port ``base_port + i`` and
    API port ``base_port + 100 + i`` on 127.0.0.1; clients have no node.
    """
    for what, value, lo in (("validators", validators, 1), ("observers", observers, 0), ("base port", base_port, 1)):
        if type(value) is not int or value < lo:
            raise ClusterError("%s must be an integer >= %d, got %r" % (what, lo, value))
    if validators > MAX_VALIDATORS:
        raise ClusterError("validators: %d exceed the limit of %d" % (validators, MAX_VALIDATORS))
    if validators + observers > MAX_NODES:
        raise ClusterError("%d nodes: one cluster folder holds at most %d (peer ports P+1.., API ports P+%d..)"
                           % (validators + observers, MAX_NODES, API_OFFSET + 1))
    top = base_port + API_OFFSET + validators + observers
    if top > 65535:
        raise ClusterError("base port %d is too high: the last API port would be %d (> 65535)" % (base_port, top))
    nodes = [_validator(i) for i in range(1, validators + 1)] + [_observer(i) for i in range(1, observers + 1)]
    out: list[tuple[Institution, Node | None]] = []
    for i, who in enumerate(nodes, start=1):
        out.append((who, Node("%s:%d" % (HOST, base_port + i), "http://%s:%d" % (HOST, base_port + API_OFFSET + i))))
    out.extend((who, None) for who in CLIENTS)
    return out


# --------------------------------------------------------------------------- a folder's contents


@dataclass(frozen=True, slots=True)
class NodeEntry:
    name: str
    role: str  # "validator" or "observer"
    api: str  # base URL, http://127.0.0.1:7401
    peer: str  # host:port
    config: Path
    pid: int | None = None

    def to_doc(self) -> dict:
        """The contracted ``cluster up --json`` node object."""
        return {"name": self.name, "role": self.role, "api": self.api, "pid": self.pid, "config": str(self.config)}


@dataclass(frozen=True, slots=True)
class ClientEntry:
    name: str
    roles: tuple[str, ...]
    key: Path

    def to_doc(self) -> dict:
        return {"name": self.name, "roles": list(self.roles), "key": str(self.key)}


@dataclass(frozen=True, slots=True)
class Cluster:
    dir: Path
    genesis: Genesis
    nodes: tuple[NodeEntry, ...]
    clients: tuple[ClientEntry, ...]

    def to_doc(self) -> dict:
        """``{"nodes": [...], "clients": [...]}``: exactly the ``cluster up --json`` document."""
        return {"nodes": [n.to_doc() for n in self.nodes], "clients": [c.to_doc() for c in self.clients]}


def _folder(directory: str | os.PathLike) -> Path:
    return Path(os.path.realpath(directory))


def read(directory: str | os.PathLike) -> Cluster:
    """The consortium in ``directory``: its genesis, the nodes that have a ``node.toml``
    there and the clients that have a key file there (genesis order)."""
    root = _folder(directory)
    if not root.is_dir():
        raise ClusterError("%s is not a folder" % root)
    genesis_path = root / "genesis.json"
    if not genesis_path.exists():
        raise ClusterError("%s holds no genesis.json: not a cluster folder (create one with: evledger cluster init %s)"
                           % (root, root))
    try:
        genesis = load_genesis(genesis_path)
    except GenesisError as exc:
        raise ClusterError(str(exc), reason=exc.reason) from None
    nodes, clients = [], []
    for m in genesis.members:
        if NODE_ROLES & set(m.roles):
            config = root / "nodes" / m.name / CONFIG_FILE
            if config.is_file():
                nodes.append(NodeEntry(m.name, m.roles[0], m.node.api, m.node.peer, config))
        else:
            key = root / "clients" / (m.name + ".key")
            if key.is_file():
                clients.append(ClientEntry(m.name, m.roles, key))
    return Cluster(root, genesis, tuple(nodes), tuple(clients))


# --------------------------------------------------------------------------- init


def _toml_str(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)  # a JSON string is a valid TOML basic string


def node_toml(who: Institution, node: Node) -> str:
    """The ``node.toml`` :func:`init` writes: required keys set, the others shown with their defaults."""
    values = {"node.name": who.name, "node.genesis": "../../genesis.json", "node.key": NODE_KEY_FILE,
              "node.data_dir": "data", "api.listen": node.api.split("://", 1)[1], "peer.listen": node.peer}
    lines = ["# evledger node configuration of %s (%s), written by `evledger cluster init`." % (who.name,
             who.display_name),
             "# Paths are relative to this file. Every key is documented in config/node.example.toml;",
             "# commented-out keys show their defaults."]
    section = None
    for s in KEYS:
        if s.section != section:
            section = s.section
            lines += ["", "[%s]" % section]
        if s.path in values:
            lines.append("%s = %s" % (s.name, _toml_str(values[s.path])))
        else:
            default = s.default
            text = _toml_str(default) if isinstance(default, str) else str(default).lower() \
                if isinstance(default, bool) else "{:_}".format(default)
            lines.append("# %s = %s" % (s.name, text))
    return "\n".join(lines) + "\n"


def init(directory: str | os.PathLike, *, validators: int = DEFAULT_VALIDATORS, observers: int = 0,
         base_port: int = DEFAULT_BASE_PORT, chain_id: str | None = None, force: bool = False,
         now_ms: int | None = None) -> Cluster:
    """Create a consortium in ``directory`` (created if missing) and return it.

    A non-empty folder is refused unless ``force``; with ``force``, ``genesis.json``,
    ``nodes/`` and ``clients/`` (with any node data) are replaced and other files are
    left alone, but never while a node of the folder is running.  ``chain_id``
    defaults to ``evledger-`` and 8 random hex digits; ``now_ms`` (genesis
    ``created_at``) to the current time.
    """
    root = _folder(directory)
    members_plan = plan(validators, observers, base_port)
    chain_id = chain_id if chain_id is not None else "evledger-" + secrets.token_hex(4)
    if not isinstance(chain_id, str) or not NAME_RE.fullmatch(chain_id):
        raise ClusterError("chain id %r is not valid: lowercase letters, digits and hyphens, 1-64 characters, "
                           "not starting or ending with a hyphen" % (chain_id,))
    _prepare(root, force)
    keys = {who.name: SecretKey.generate() for who, _ in members_plan}
    members = [Member.make(who.name, who.roles, keys[who.name].public, display_name=who.display_name,
                           institution=who.institution, node=node) for who, node in members_plan]
    try:
        genesis = build_genesis(chain_id, members, created_at=now_ms if now_ms is not None else int(time.time() * 1000),
                                display_name="本地电子证据联盟链 / evledger local consortium %s" % chain_id)
    except GenesisError as exc:  # the plan is built to be valid; this names the rule it broke
        raise ClusterError(str(exc), reason=exc.reason) from None
    _write_text(root / "genesis.json", genesis.to_json(), 0o644)
    (root / "clients").mkdir(mode=0o700)
    for who, node in members_plan:
        if node is None:
            write_key_file(root / "clients" / (who.name + ".key"), who.name, keys[who.name])
            continue
        folder = root / "nodes" / who.name
        folder.mkdir(mode=0o700, parents=True)
        write_key_file(folder / NODE_KEY_FILE, who.name, keys[who.name])
        _write_text(folder / CONFIG_FILE, node_toml(who, node), 0o644)
    return read(root)


def _prepare(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise ClusterError("%s exists and is not a folder" % root)
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise ClusterError("%s is not empty; choose an empty or new folder, or pass --force to replace its "
                               "consortium (genesis.json, nodes/, clients/ and all node data)" % root)
        running = _running(root)
        if running:
            raise ClusterError("cannot replace %s while its nodes run: %s (stop them with: evledger cluster down %s)"
                               % (root, ", ".join("%s (pid %d)" % r for r in running), root))
        for name in ("genesis.json", "nodes", "clients"):
            target = root / name
            if target.is_dir() and not target.is_symlink():
                shutil.rmtree(target)
            elif target.exists() or target.is_symlink():
                target.unlink()
    root.mkdir(parents=True, exist_ok=True)


def _write_text(path: Path, text: str, mode: int) -> None:
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.write(fd, text.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


# --------------------------------------------------------------------------- processes


def _cmdline(pid: int) -> list[str] | None:
    """The process's arguments, or ``None`` if it cannot be read (gone, or not ours to read)."""
    try:
        raw = Path("/proc/%d/cmdline" % pid).read_bytes()
    except OSError:
        return None
    return raw.decode("utf-8", "surrogateescape").split("\x00")


def _alive(pid: int) -> bool:
    """Whether ``pid`` is a live process; reaps it first if it is our exited child."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    except ChildProcessError:
        pass
    try:
        stat_text = Path("/proc/%d/stat" % pid).read_text()
        if stat_text.rpartition(")")[2].split()[0] in ("Z", "X"):
            return False  # a zombie: exited, waiting for its parent to reap it
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _ours(pid: int, config: Path) -> bool:
    """Whether ``pid`` is alive and is the node started with ``config`` (its command line names it)."""
    if not _alive(pid):
        return False
    if not Path("/proc/self/cmdline").exists():  # no /proc (not Linux): trust the pid file
        return True
    args = _cmdline(pid)
    return args is not None and str(config) in args


def _read_pid(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    except OSError:
        return -1
    return int(text) if text.isdigit() and 0 < int(text) < 2 ** 31 else -1


def _node_dirs(root: Path) -> list[Path]:
    nodes = root / "nodes"
    return sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []


def _running(root: Path) -> list[tuple[str, int]]:
    """(name, pid) of every node of ``root`` whose pid file names a live process of ours."""
    out = []
    for folder in _node_dirs(root):
        pid = _read_pid(folder / PID_FILE)
        if pid and pid > 0 and _ours(pid, folder / CONFIG_FILE):
            out.append((folder.name, pid))
    return out


@dataclass
class _Started:
    entry: NodeEntry
    proc: subprocess.Popen
    log: Path


def default_command() -> list[str]:
    """How a node process is started, without its CONFIG argument: ``python .../cli.py run``.

    The path of ``cli.py`` is used rather than the ``evledger`` console script (which
    may not be on ``PATH``) or ``-m cli`` (which depends on the working directory).
    """
    spec = importlib.util.find_spec("cli")
    if spec is not None and spec.origin:
        return [sys.executable, spec.origin, "run"]
    return [sys.executable, "-m", "cli", "run"]


def up(directory: str | os.PathLike, *, command: Sequence[str] | None = None, timeout: float = 30.0,
       progress: Callable[[str], None] | None = None) -> Cluster:
    """Start every node of ``directory`` and wait until each answers ``GET /v1/status``.

    Returns the cluster with each node's ``pid``.  Raises :class:`ConfigError` or
    :class:`ClusterError` (nothing started) for bad input or nodes already running,
    :class:`StartError` when a node exits or does not answer within ``timeout``
    seconds (everything started is stopped again).
    """
    say = progress or (lambda message: None)
    cluster = read(directory)
    if not cluster.nodes:
        raise ClusterError("%s has no node configurations (nodes/NAME/node.toml)" % cluster.dir)
    for entry in cluster.nodes:
        setup = load_node(entry.config)  # ConfigError: a bad file stops everything before any process starts
        if setup.config.name != entry.name:
            raise ConfigError("%s: node.name: %r, but the file is in the folder of node %r"
                              % (entry.config, setup.config.name, entry.name), field="node.name")
    running = _running(cluster.dir)
    if running:
        raise ClusterError("already running: %s; stop them first with: evledger cluster down %s"
                           % (", ".join("%s (pid %d)" % r for r in running), cluster.dir), reason="already_running")
    argv = list(command) if command is not None else default_command()
    started: list[_Started] = []
    try:
        for entry in cluster.nodes:
            started.append(_spawn(entry, argv))
            say("started %s (pid %d), log %s" % (entry.name, started[-1].proc.pid, started[-1].log))
        say("waiting up to %g s for %d node%s to answer" % (timeout, len(started), "" if len(started) == 1 else "s"))
        _wait_ready(started, time.monotonic() + timeout, timeout)
    except BaseException:
        _stop([(s.entry.config.parent, s.proc.pid, s.proc) for s in started], 10.0)
        raise
    nodes = tuple(replace(s.entry, pid=s.proc.pid) for s in started)
    return replace(cluster, nodes=nodes)


def _spawn(entry: NodeEntry, argv: list[str]) -> _Started:
    folder = entry.config.parent
    log = folder / LOG_FILE
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    args = argv + [str(entry.config)]
    with open(log, "ab") as out:
        out.write(("\n%s%s at %s: %s ====\n" % (_LOG_MARK, entry.name, time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                                 " ".join(args))).encode())
        out.flush()
        try:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=folder,
                                    env=env, start_new_session=True, close_fds=True)
        except OSError as exc:
            raise StartError(entry.name, "cannot run %s: %s" % (args[0], exc.strerror or exc), log, []) from None
    _write_text(folder / PID_FILE, "%d\n" % proc.pid, 0o644)
    return _Started(entry, proc, log)


def _status_ok(url: str, name: str) -> bool:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # never through an HTTP proxy
    try:
        with opener.open(url, timeout=1.0) as resp:
            if resp.status != 200:
                return False
            doc = json.loads(resp.read(65536))
    except (OSError, ValueError, urllib.error.URLError):
        return False
    return isinstance(doc, dict) and doc.get("node") == name


def _wait_ready(started: list[_Started], deadline: float, timeout: float) -> None:
    waiting = list(started)
    while waiting:
        for s in list(waiting):
            url = s.entry.api.rstrip("/") + "/v1/status"
            code = s.proc.poll()
            if code is not None:
                raise StartError(s.entry.name, "the process exited with code %d before answering on %s"
                                 % (code, url), s.log, log_tail(s.log))
            if _status_ok(url, s.entry.name):
                waiting.remove(s)
        if not waiting:
            return
        if time.monotonic() > deadline:
            s = waiting[0]
            raise StartError(s.entry.name, "no answer from %s within %g s" % (s.entry.api.rstrip("/") + "/v1/status",
                             timeout), s.log, log_tail(s.log))
        time.sleep(0.1)


def log_tail(log: Path, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last ``lines`` lines of ``log`` written since the last start by :func:`up`."""
    try:
        with open(log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return []
    mark = text.rfind(_LOG_MARK)
    if mark >= 0:
        text = text[mark:].split("\n", 1)[1] if "\n" in text[mark:] else ""
    return [line for line in text.splitlines() if line.strip()][-lines:]


# --------------------------------------------------------------------------- down


@dataclass
class StopReport:
    """What :func:`down` did, by node name."""

    stopped: list[str]  # exited after SIGTERM
    killed: list[str]  # needed SIGKILL
    not_running: list[str]  # no pid file, or a stale one (removed)
    survivors: list[str]  # still alive after SIGKILL (pid file kept)

    def to_doc(self) -> dict:
        return {"stopped": self.stopped, "killed": self.killed, "not_running": self.not_running,
                "survivors": self.survivors}


def down(directory: str | os.PathLike, *, timeout: float = 15.0) -> StopReport:
    """Stop the nodes of ``directory`` recorded in pid files (SIGTERM, then SIGKILL after ``timeout`` s)."""
    root = _folder(directory)
    if not root.is_dir():
        raise ClusterError("%s is not a folder" % root)
    if not (root / "nodes").is_dir():
        raise ClusterError("%s has no nodes/ folder: not a cluster folder" % root)
    targets, idle = [], []
    for folder in _node_dirs(root):
        pid = _read_pid(folder / PID_FILE)
        if pid is not None and pid > 0 and _ours(pid, folder / CONFIG_FILE):
            targets.append((folder, pid, None))
            continue
        if pid is not None:
            (folder / PID_FILE).unlink(missing_ok=True)  # stale: the process is gone or is someone else's
        if (folder / CONFIG_FILE).exists():
            idle.append(folder.name)
    stopped, killed, survivors = _stop(targets, timeout)
    return StopReport(stopped, killed, idle, survivors)


def _stop(targets: list[tuple[Path, int, subprocess.Popen | None]],
          timeout: float) -> tuple[list[str], list[str], list[str]]:
    """SIGTERM every target, wait until ``timeout``, SIGKILL the rest; remove the pid files of the dead."""
    def alive(pid: int, proc: subprocess.Popen | None) -> bool:
        return proc.poll() is None if proc is not None else _alive(pid)

    def signal_all(group: list, sig: int) -> None:
        for _, pid, proc in group:
            if alive(pid, proc):
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass

    def wait(group: list, until: float) -> list:
        while True:
            group = [t for t in group if alive(t[1], t[2])]
            if not group or time.monotonic() > until:
                return group
            time.sleep(0.05)

    signal_all(targets, signal.SIGTERM)
    left = wait(targets, time.monotonic() + timeout)
    signal_all(left, signal.SIGKILL)
    survivors = wait(left, time.monotonic() + 5.0)
    still_alive = {folder for folder, _, _ in survivors}
    for folder, _, _ in targets:
        if folder not in still_alive:
            (folder / PID_FILE).unlink(missing_ok=True)
    needed_kill = {folder for folder, _, _ in left}
    stopped = [folder.name for folder, _, _ in targets if folder not in needed_kill]
    killed = [folder.name for folder, _, _ in left if folder not in still_alive]
    return stopped, killed, [folder.name for folder in sorted(still_alive)]


def free_base_port() -> int:
    """A base port P such that P..P+9 and P+100..P+109 are free on 127.0.0.1 (for demos and tests)."""
    for base in [7300] + list(range(17300, 60000, 211)):
        try:
            socks = []
            for port in list(range(base, base + 10)) + list(range(base + 100, base + 110)):
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                socks.append(s)
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free range of ports on 127.0.0.1")
