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
a bad file is an input error and nothing is started) and refuses if a node of the
folder is already running; :func:`down` checks that the folder is a cluster folder.
Both then hand the node folders to ``runtime/processes.py``, which starts each node
as its own process and waits until it answers (stopping everything it started if
one does not), or stops the recorded processes, recognising them by their pid
files *and* their command lines.  Paths are resolved with ``realpath`` so a folder
reached through a symbolic link is still recognised.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence

from ledger.crypto import NAME_RE, SecretKey, write_key_file
from ledger.errors import GenesisError, InputError
from ledger.block import MAX_VALIDATORS
from ledger.genesis import NODE_ROLES, Genesis, Member, Node, build_genesis, load_genesis

from . import processes
from .config import KEYS, ConfigError, load_node
from .processes import StartError, StopReport, default_command, log_tail, write_text

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
    "log_tail",
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
# A node's process files, and the mark before each start in its log, are runtime.processes' business.
PID_FILE, LOG_FILE, LOG_TAIL_LINES, _LOG_MARK = (processes.PID_FILE, processes.LOG_FILE, processes.LOG_TAIL_LINES,
                                                 processes._LOG_MARK)


class ClusterError(InputError):
    """The cluster folder or a request about it is not acceptable (bad input: exit 2)."""

    reason = "bad_cluster"


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
            lines.append("# %s = %s" % (s.name, _toml_default(s.default)))
    return "\n".join(lines) + "\n"


def _toml_default(default) -> str:
    if isinstance(default, str):
        return _toml_str(default)
    if isinstance(default, bool):
        return str(default).lower()
    if isinstance(default, list):
        return "[%s]" % ", ".join(_toml_str(v) for v in default)
    return "{:_}".format(default)


# What ``cluster init`` writes into genesis beside the format's defaults.  A 25 ms batch
# delay (the format's default is 10): at 480 single deposits/s on the benchmark machine,
# five alternating pairs of 40 s runs gave p50 43-64 ms against 98-194 ms (p99 265-484
# against 371-1,018), with closed-loop throughput unchanged within noise
# (docs/performance.md, session 8).  An idle cluster still cuts a lone request at once.
INIT_CONSENSUS = {"batch_delay_ms": 25}


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
                                consensus=INIT_CONSENSUS, display_name="本地电子证据联盟链 / evledger local consortium %s" % chain_id)
    except GenesisError as exc:  # the plan is built to be valid; this names the rule it broke
        raise ClusterError(str(exc), reason=exc.reason) from None
    write_text(root / "genesis.json", genesis.to_json(), 0o644)
    (root / "clients").mkdir(mode=0o700)
    for who, node in members_plan:
        if node is None:
            write_key_file(root / "clients" / (who.name + ".key"), who.name, keys[who.name])
            continue
        folder = root / "nodes" / who.name
        folder.mkdir(mode=0o700, parents=True)
        write_key_file(folder / NODE_KEY_FILE, who.name, keys[who.name])
        write_text(folder / CONFIG_FILE, node_toml(who, node), 0o644)
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


# --------------------------------------------------------------------------- up and down


def _node_dirs(root: Path) -> list[Path]:
    nodes = root / "nodes"
    return sorted(p for p in nodes.iterdir() if p.is_dir()) if nodes.is_dir() else []


def _configs(root: Path) -> list[Path]:
    """Where the ``node.toml`` of each node folder of ``root`` is (or would be)."""
    return [folder / CONFIG_FILE for folder in _node_dirs(root)]


def _running(root: Path) -> list[tuple[str, int]]:
    """(name, pid) of every node of ``root`` whose pid file names a live process of ours."""
    return processes.running(_configs(root))


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
    pids = processes.start(cluster.nodes, command, timeout, say)
    nodes = tuple(replace(entry, pid=pid) for entry, pid in zip(cluster.nodes, pids))
    return replace(cluster, nodes=nodes)


def down(directory: str | os.PathLike, *, timeout: float = 15.0) -> StopReport:
    """Stop the nodes of ``directory`` recorded in pid files (SIGTERM, then SIGKILL after ``timeout`` s)."""
    root = _folder(directory)
    if not root.is_dir():
        raise ClusterError("%s is not a folder" % root)
    if not (root / "nodes").is_dir():
        raise ClusterError("%s has no nodes/ folder: not a cluster folder" % root)
    return processes.stop(_configs(root), timeout)


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
