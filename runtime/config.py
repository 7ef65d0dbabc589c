"""Node configuration: one frozen, validated object loaded from ``node.toml``.

Theory of operation
-------------------
A node is started with one file, ``node.toml`` (TOML, read with ``tomllib``).  It
says which genesis member this node is, where its genesis, key and data live, where
it listens and how much it may buffer.  :func:`load_node` is the one call the node
makes: it reads the file, checks every key, loads the genesis and the secret key and
checks that they belong together, and returns a :class:`NodeSetup`.  Anything wrong
stops the node before it opens a socket or a database, with a
:class:`ConfigError` whose message starts with the file and the TOML path of the
offending value (``node.toml: api.listen: '127.0.0.1' is not of the form
host:port``) and, for an unknown section or key, lists the valid ones.  A typo must
never fall back silently to a default.

Paths are relative to the folder that holds ``node.toml`` (``~`` is expanded) and
are stored absolute.  The loader reads files but never the clock, the network or the
environment.

Keys (``*`` = required; ranges are inclusive)::

    [node]
    name*        member name in genesis; that member must be a validator or observer
    genesis*     path of genesis.json
    key*         path of this node's key file: mode 0600, its "name" must equal
                 node.name and its public key must be that member's key in genesis
    data_dir*    path of the node's data folder; the LevelDB store lives in
                 data_dir/chain (the node creates both)

    [api]        the HTTP API (CONTRACT section 5)
    listen*              "host:port" to bind, e.g. "127.0.0.1:7401"; IPv6 as "[::1]:7401"
    public_rate_per_s    requests per second per client address on the public
                         endpoints; default 50, range 0 < r <= 1,000,000 (integer or float)
    max_body_bytes       largest request body accepted; default 8 MiB (8,388,608),
                         range 1 KiB .. 256 MiB
    trusted_proxies      IP addresses of reverse proxies whose X-Forwarded-For names
                         the client (runtime/client_address.py); default [] (none),
                         at most 64

    [peer]       consensus traffic between nodes
    listen*              "host:port" to bind, e.g. "127.0.0.1:7301"

    [pool]       deposits admitted but not yet committed (all counts of items)
    max_pending          items pending on this node in total; default 200,000,
                         range 1 .. 100,000,000
    per_client_pending   items pending for one client; default 50,000,
                         range 1 .. max_pending
    replay_capacity      request nonces remembered against replay (runtime/auth.py);
                         default 2,000,000, range 1,000 .. 100,000,000, and at least
                         the number of genesis members (each member gets a share)

    [log]
    level                "debug", "info", "warning" or "error"; default "info"
    json                 true: one JSON object per line; default false

Sections ``[node]``, ``[api]`` and ``[peer]`` are required, ``[pool]`` and ``[log]``
optional.  ``config/node.example.toml`` is a commented example; the table of keys
below (:data:`KEYS`) is the single source of the defaults and ranges above, and a
unit test checks that this docstring and the example agree with it.
"""

from __future__ import annotations

import dataclasses
import math
import os
import stat
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

from ledger.crypto import SecretKey, load_key_file
from ledger.errors import GenesisError, InputError, KeyFileError
from ledger.genesis import NODE_ROLES, Genesis, Member, load_genesis
from ledger.jsondoc import _PEER_RE, DocError, _address, _name, _short

from .client_address import normalise

__all__ = [
    "KEYS",
    "LOG_LEVELS",
    "MAX_CONFIG_BYTES",
    "Address",
    "ApiConfig",
    "ConfigError",
    "LogConfig",
    "NodeConfig",
    "NodeSetup",
    "PeerConfig",
    "PoolConfig",
    "Setting",
    "load_config",
    "load_node",
    "parse_config",
]

MAX_CONFIG_BYTES = 64 * 1024
LOG_LEVELS = ("debug", "info", "warning", "error")
_KiB = 1024
_MiB = 1024 * 1024
MAX_TRUSTED_PROXIES = 64


class ConfigError(InputError):
    """``node.toml`` is missing, malformed or inconsistent; ``field`` is the TOML path."""

    reason = "bad_config"


# --------------------------------------------------------------------------- the table of keys

_REQUIRED = object()


@dataclass(frozen=True, slots=True)
class Setting:
    """One key of ``node.toml``: its kind, default (or required) and range."""

    section: str
    name: str
    kind: str  # "name" | "path" | "address" | "int" | "number" | "level" | "bool" | "ips"
    default: Any = _REQUIRED
    lo: float | None = None
    hi: float | None = None

    @property
    def path(self) -> str:
        return "%s.%s" % (self.section, self.name)

    @property
    def required(self) -> bool:
        return self.default is _REQUIRED


KEYS: tuple[Setting, ...] = (
    Setting("node", "name", "name"),
    Setting("node", "genesis", "path"),
    Setting("node", "key", "path"),
    Setting("node", "data_dir", "path"),
    Setting("api", "listen", "address"),
    Setting("api", "public_rate_per_s", "number", 50, 0, 1_000_000),
    Setting("api", "max_body_bytes", "int", 8 * _MiB, _KiB, 256 * _MiB),
    Setting("api", "trusted_proxies", "ips", [], 0, MAX_TRUSTED_PROXIES),
    Setting("peer", "listen", "address"),
    Setting("pool", "max_pending", "int", 200_000, 1, 100_000_000),
    Setting("pool", "per_client_pending", "int", 50_000, 1, 100_000_000),
    Setting("pool", "replay_capacity", "int", 2_000_000, 1000, 100_000_000),
    Setting("log", "level", "level", "info"),
    Setting("log", "json", "bool", False),
)
SECTIONS: tuple[str, ...] = tuple(dict.fromkeys(s.section for s in KEYS))
REQUIRED_SECTIONS = frozenset(s.section for s in KEYS if s.required)


# --------------------------------------------------------------------------- the frozen objects


@dataclass(frozen=True, slots=True)
class Address:
    """A listening address: ``host`` without IPv6 brackets, ``port`` 1-65535."""

    host: str
    port: int

    def __str__(self) -> str:
        return "[%s]:%d" % (self.host, self.port) if ":" in self.host else "%s:%d" % (self.host, self.port)


@dataclass(frozen=True, slots=True)
class ApiConfig:
    listen: Address
    public_rate_per_s: float = 50.0
    max_body_bytes: int = 8 * _MiB
    trusted_proxies: frozenset[str] = frozenset()  # canonical IP texts


@dataclass(frozen=True, slots=True)
class PeerConfig:
    listen: Address


@dataclass(frozen=True, slots=True)
class PoolConfig:
    max_pending: int = 200_000
    per_client_pending: int = 50_000
    replay_capacity: int = 2_000_000


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: str = "info"
    json: bool = False


@dataclass(frozen=True, slots=True)
class NodeConfig:
    """A validated ``node.toml``; every path is absolute."""

    path: Path  # the node.toml itself
    name: str
    genesis: Path
    key: Path
    data_dir: Path
    api: ApiConfig
    peer: PeerConfig
    pool: PoolConfig = PoolConfig()
    log: LogConfig = LogConfig()

    @property
    def chain_dir(self) -> Path:
        """Where the LevelDB store lives: ``data_dir/chain``."""
        return self.data_dir / "chain"


@dataclass(frozen=True, slots=True)
class NodeSetup:
    """Everything a node starts from: its configuration, the genesis, its member and key."""

    config: NodeConfig
    genesis: Genesis
    member: Member
    key: SecretKey


# --------------------------------------------------------------------------- checks


def _err(where: str, message: str, reason: str | None = None) -> ConfigError:
    return ConfigError("%s: %s" % (where, message), field=where, reason=reason)


def _ttype(value: Any) -> str:
    """The TOML name of a value's type, for messages."""
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "table"
    return "date/time" if hasattr(value, "isoformat") else type(value).__name__


def _num_text(value: float) -> str:
    return "{:,}".format(int(value)) if float(value).is_integer() else repr(value)


def _value(setting: Setting, value: Any, base_dir: Path) -> Any:
    where = setting.path
    kind = setting.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise _err(where, "expected true or false, got %s" % _ttype(value))
        return value
    if kind == "int":
        if type(value) is not int:
            raise _err(where, "expected an integer, got %s" % _ttype(value))
        if not setting.lo <= value <= setting.hi:
            raise _err(where, "%s is outside the allowed range %s .. %s"
                       % (_num_text(value), _num_text(setting.lo), _num_text(setting.hi)))
        return value
    if kind == "number":
        if type(value) not in (int, float) or not math.isfinite(value):
            raise _err(where, "expected a number, got %s" % _ttype(value))
        if not setting.lo < value <= setting.hi:
            raise _err(where, "%s is outside the allowed range (%s, %s]"
                       % (_num_text(value), _num_text(setting.lo), _num_text(setting.hi)))
        return float(value)
    if kind == "level":
        if not isinstance(value, str):
            raise _err(where, "expected a string, got %s" % _ttype(value))
        if value not in LOG_LEVELS:
            raise _err(where, "unknown level %r (valid: %s)" % (_short(value), ", ".join(LOG_LEVELS)))
        return value
    if kind == "ips":
        return _ips(setting, value)
    if kind == "name":
        return _name(value, where)
    if kind == "address":
        text = _address(value, where, _PEER_RE, "host:port (e.g. 127.0.0.1:7401)")
        host, _, port = text.rpartition(":")
        return Address(host[1:-1] if host.startswith("[") else host, int(port))
    if kind == "path":
        if not isinstance(value, str):
            raise _err(where, "expected a path string, got %s" % _ttype(value))
        if not value.strip() or "\x00" in value:
            raise _err(where, "must be a non-empty path")
        path = Path(value).expanduser()
        return Path(os.path.abspath(path if path.is_absolute() else base_dir / path))
    raise AssertionError("unknown setting kind %r" % kind)


def _ips(setting: Setting, value: Any) -> frozenset[str]:
    """A list of IP addresses, as their canonical texts."""
    if not isinstance(value, (list, tuple)):
        raise _err(setting.path, "expected a list of IP addresses, got %s" % _ttype(value))
    if len(value) > setting.hi:
        raise _err(setting.path, "%d addresses exceed the limit of %d" % (len(value), setting.hi))
    out = set()
    for i, text in enumerate(value):
        address = normalise(text) if isinstance(text, str) else None
        if address is None:
            raise _err("%s[%d]" % (setting.path, i), "%r is not an IP address (e.g. 127.0.0.1 or ::1)"
                       % (_short(text) if isinstance(text, str) else text))
        out.add(address)
    return frozenset(out)


def _section(doc: Mapping[str, Any], section: str) -> dict[str, Any]:
    settings = [s for s in KEYS if s.section == section]
    table = doc.get(section)
    if table is None:
        if section in REQUIRED_SECTIONS:
            raise _err("[%s]" % section, "missing required section (it holds %s)"
                       % ", ".join(s.name for s in settings), reason="missing_key")
        table = {}
    if not isinstance(table, dict):
        raise _err(section, "expected a table [%s], got %s" % (section, _ttype(table)))
    valid = sorted(s.name for s in settings)
    for key in table:
        if key not in valid:
            raise _err("%s.%s" % (section, _short(key)), "unknown key (valid keys in [%s]: %s)"
                       % (section, ", ".join(valid)), reason="unknown_key")
    for s in settings:
        if s.required and s.name not in table:
            raise _err(s.path, "missing required key", reason="missing_key")
    return table


def parse_config(doc: Mapping[str, Any], base_dir: str | os.PathLike) -> NodeConfig:
    """Validate a decoded TOML document; relative paths are taken from ``base_dir``.

    Pure: no file is opened (:func:`load_config` checks that the files exist).  The
    returned ``NodeConfig.path`` is ``base_dir/node.toml``.  Raises
    :class:`ConfigError` for every invalid input, never another exception.
    """
    base = Path(os.path.abspath(base_dir))
    try:
        return _parse(doc, base)
    except DocError as exc:  # from the shared name/address checks
        raise ConfigError(str(exc), field=exc.field) from None


def _parse(doc: Mapping[str, Any], base: Path) -> NodeConfig:
    for key, value in doc.items():
        if key not in SECTIONS:
            if isinstance(value, dict):
                raise _err("[%s]" % _short(key), "unknown section (valid sections: %s)" % ", ".join(sorted(SECTIONS)),
                           reason="unknown_key")
            raise _err(_short(key), "unknown top-level key: every key belongs in a section (%s)"
                       % ", ".join("[%s]" % s for s in SECTIONS), reason="unknown_key")
    values: dict[str, dict[str, Any]] = {}
    for section in SECTIONS:
        table = _section(doc, section)
        values[section] = {s.name: _value(s, table.get(s.name, s.default), base)
                           for s in KEYS if s.section == section}
    pool = PoolConfig(**values["pool"])
    if pool.per_client_pending > pool.max_pending:
        raise _err("pool.per_client_pending", "%s is more than pool.max_pending (%s)"
                   % (_num_text(pool.per_client_pending), _num_text(pool.max_pending)))
    api = ApiConfig(**values["api"])
    peer = PeerConfig(**values["peer"])
    if api.listen == peer.listen:
        raise _err("peer.listen", "%s is also api.listen: the API and the peer port must differ" % peer.listen)
    node = values["node"]
    return NodeConfig(path=base / "node.toml", name=node["name"], genesis=node["genesis"], key=node["key"],
                      data_dir=node["data_dir"], api=api, peer=peer, pool=pool, log=LogConfig(**values["log"]))


# --------------------------------------------------------------------------- loading


def load_config(path: str | os.PathLike) -> NodeConfig:
    """Read and validate ``node.toml``; check that its genesis and key files exist.

    Raises :class:`ConfigError` whose message starts with the file's path.
    """
    path = Path(os.path.abspath(path))
    try:
        config = _load_config(path)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (path, exc), field=exc.field, reason=exc.reason) from None
    return config


def _load_config(path: Path) -> NodeConfig:
    data = _read(path)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError("not UTF-8 text (byte %d)" % exc.start) from None
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("invalid TOML: %s" % exc, reason="invalid_toml") from None
    config = dataclasses.replace(parse_config(doc, path.parent), path=path)
    for where, file in (("node.genesis", config.genesis), ("node.key", config.key)):
        if not file.exists():
            raise _err(where, "%s does not exist" % file, reason="not_found")
        if not file.is_file():
            raise _err(where, "%s is not a regular file" % file)
    if config.data_dir.exists() and not config.data_dir.is_dir():
        raise _err("node.data_dir", "%s exists and is not a folder" % config.data_dir)
    return config


def _read(path: Path) -> bytes:
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise ConfigError("not a regular file")
        if st.st_size > MAX_CONFIG_BYTES:
            raise ConfigError("%d bytes, more than the limit of %d for a configuration file"
                              % (st.st_size, MAX_CONFIG_BYTES))
        with open(path, "rb") as fh:
            return fh.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError("configuration file does not exist", reason="not_found") from None
    except OSError as exc:
        raise ConfigError("cannot read: %s" % (exc.strerror or exc)) from None


def load_node(path: str | os.PathLike) -> NodeSetup:
    """Load ``node.toml``, its genesis and its key, and check that they belong together.

    * ``node.name`` is a member of the genesis and holds the role ``validator`` or
      ``observer`` (client members run no node: their keys are not node keys);
    * the key file is safe (mode 0600), names that member and holds its public key;
    * ``pool.replay_capacity`` gives every genesis member at least one nonce.

    Raises :class:`ConfigError` (message starting with the file's path) for all of it.
    """
    config = load_config(path)
    try:
        genesis, member, key = _load_parts(config)
    except ConfigError as exc:
        raise ConfigError("%s: %s" % (config.path, exc), field=exc.field, reason=exc.reason) from None
    return NodeSetup(config, genesis, member, key)


def _load_parts(config: NodeConfig) -> tuple[Genesis, Member, SecretKey]:
    try:
        genesis = load_genesis(config.genesis)
    except GenesisError as exc:
        raise _err("node.genesis", str(exc), reason=exc.reason) from None
    member = genesis.member(config.name)
    nodes = [m.name for m in genesis.members if NODE_ROLES & set(m.roles)]
    if member is None:
        raise _err("node.name", "no member %r in genesis %s (its nodes: %s)"
                   % (config.name, config.genesis, ", ".join(nodes)), reason="unknown_member")
    if not NODE_ROLES & set(member.roles):
        raise _err("node.name", "member %r is a client (%s), not a validator or observer: only node members run a "
                   "node (its nodes: %s)" % (config.name, ", ".join(member.roles), ", ".join(nodes)),
                   reason="not_a_node")
    try:
        key_file = load_key_file(config.key)
    except KeyFileError as exc:
        raise _err("node.key", str(exc), reason=exc.reason) from None
    if key_file.name != config.name:
        raise _err("node.key", "key file %s belongs to member %r, but node.name is %r"
                   % (config.key, key_file.name, config.name), reason="wrong_key")
    if key_file.key.public != member.public_key:
        raise _err("node.key", "key file %s holds public key %s, but genesis gives member %r the key %s"
                   % (config.key, key_file.key.public.fingerprint(), config.name, member.public_key.fingerprint()),
                   reason="wrong_key")
    if config.pool.replay_capacity < len(genesis.members):
        raise _err("pool.replay_capacity", "%d is less than the %d genesis members (each needs a share)"
                   % (config.pool.replay_capacity, len(genesis.members)))
    return genesis, member, key_file.key
