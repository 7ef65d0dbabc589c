"""Genesis: the public consortium file every node and every offline verifier starts from.

Theory of operation
-------------------
A consortium is fixed by one JSON document, ``genesis.json``, distributed to every
member.  It names the chain, its members (name, institution, roles, Ed25519 public
key, node addresses), the consensus parameters, the evidence categories and the
entry limits.  Everything that decides whether an entry is valid
(``ledger.state``) or whether a block certificate is genuine (``ledger.block``) is
derived from it, so parsing is deliberately strict: an unknown key anywhere, a wrong
type, a value out of range, a duplicate or a missing required field is refused with
a :class:`~ledger.errors.GenesisError` whose ``field`` is the JSON path of the
offending value (``members[2].roles[0]``) and whose message lists the valid choices.
A typo must stop a node at start-up, never silently fall back to a default.

Document (``"format": "evledger-genesis/1"``)::

    {"format", "chain_id", "display_name", "created_at", "members": [...],
     "consensus": {...}, "categories": [...], "limits": {...}}

* ``chain_id``: lowercase ``[a-z0-9-]``, 1-64 characters (signing domain of every
  signature on the chain).  ``display_name``: any text, 1-128 characters.
* ``created_at``: RFC 3339 UTC, ``YYYY-MM-DDTHH:MM:SS[.f{1,3}]Z``; kept as
  milliseconds since the Unix epoch.
* ``members[]``: ``name`` (``[a-z0-9-]``, unique), ``display_name`` (text <= 128,
  e.g. the institution's Chinese name), ``institution`` (``[a-z0-9-]`` id of the
  institution that holds the key; several members may share one), ``roles``
  (non-empty, unique, from ``ledger.model.ROLES``), ``public_key`` (64 lowercase
  hex, unique), ``node`` (``{"peer": "host:port", "api": "http[s]://host[:port]"}``
  or ``null``).
  *Node keys are node keys only*: a ``validator`` or ``observer`` holds exactly that
  one role and has a ``node``; every other member has ``"node": null``.  A server
  key therefore can never deposit, report credit events or read case files; an
  institution that both runs a node and acts as a client has two members.
  At least one validator; at most 256 (``ledger.block.MAX_VALIDATORS``).
* ``consensus``: :data:`CONSENSUS_PARAMS`; ``limits``: :data:`LIMIT_PARAMS`.  Both
  objects are required, every key in them is optional (documented default) and
  integral; cross rules: ``watermark_window >= 2 * checkpoint_interval`` (the
  ordering window must hold the next checkpoint interval while the previous
  checkpoint becomes stable, or ordering stalls at every checkpoint), and
  ``client_time_window_ms >= max_clock_skew_ms`` (an honest client whose clock is
  within the trusted bound must never be refused as stale).
* ``categories[]``: ``{"id", "display_name", "display_name_en"}``; ids are
  ``[a-z0-9-]`` and unique, order is kept (display order), and every id of
  :data:`REQUIRED_CATEGORY_IDS` must be present (``general`` is the default every
  client may rely on, see CONTRACT section 4).

Text fields refuse control characters, bidirectional overrides (they can make a
display name read differently from its bytes) and lone surrogates.  The file is
at most :data:`MAX_GENESIS_BYTES`, UTF-8, with no duplicate object keys and no
NaN/Infinity.

Fingerprint
-----------
``fingerprint() = hex(SHA-256(ledger.codec.encode(wire)))`` where ``wire`` is::

    ["evledger-genesis", 1, chain_id, display_name, created_at_ms,
     [[name, display_name, institution, [role, ...], public_key, node], ...],
     {consensus parameter name: int, ...},          # every parameter, defaults filled
     [[id, display_name, display_name_en], ...],
     {limit name: int, ...}]                        # every limit, defaults filled

``roles`` are sorted (UTF-8 byte order), ``public_key`` is msgpack *bin* (32 bytes),
``node`` is ``nil`` or ``[peer, api]``, members and categories keep document order,
maps are encoded with sorted keys as ``ledger.codec`` always does.  Two documents
that parse to the same :class:`Genesis` (e.g. ``...:00Z`` vs ``...:00.000Z``, keys in
another order, defaults omitted vs written) have the same fingerprint.

The keys in ``config/genesis.example.json`` are examples generated once for the
documentation; their secret keys were discarded.  Never run a real consortium on them.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Iterable, Mapping

from .block import MAX_VALIDATORS, quorum
from .crypto import PublicKey
from .errors import GenesisError
from .jsondoc import (  # noqa: F401  (re-exported: parse_time, format_time)
    DocError,
    _join,
    _jtype,
    _short,
    _object,
    _list,
    _int,
    _text,
    _name,
    parse_time,
    format_time,
    _address,
    _PEER_RE,
    _API_RE,
    _MAX_TIME_MS,
)
from .genesis_types import (  # the types, re-exported: import them from here
    CONSENSUS_PARAMS,
    DEFAULT_CATEGORIES,
    FORMAT,
    LIMIT_PARAMS,
    MAX_CATEGORIES,
    MAX_GENESIS_BYTES,
    MAX_MEMBERS,
    NODE_ROLES,
    REQUIRED_CATEGORY_IDS,
    VIEW_CHANGE_BUDGET,
    Category,
    ConsensusParams,
    EntryLimits,
    Genesis,
    Member,
    Node,
    Param,
)
from .model import ROLES

__all__ = [
    "CONSENSUS_PARAMS",
    "DEFAULT_CATEGORIES",
    "FORMAT",
    "LIMIT_PARAMS",
    "MAX_GENESIS_BYTES",
    "NODE_ROLES",
    "REQUIRED_CATEGORY_IDS",
    "Category",
    "ConsensusParams",
    "EntryLimits",
    "Genesis",
    "Member",
    "Node",
    "Param",
    "build_genesis",
    "load_genesis",
    "parse_genesis",
    "parse_genesis_bytes",
]

def _err(where: str, message: str, reason: str | None = None) -> GenesisError:
    return GenesisError("%s: %s" % (where, message), field=where, reason=reason)


def _node(value: Any, where: str) -> Node | None:
    if value is None:
        return None
    doc = _object(value, where, ("peer", "api"))
    return Node(
        peer=_address(doc["peer"], _join(where, "peer"), _PEER_RE, "host:port (e.g. 127.0.0.1:7301)"),
        api=_address(doc["api"], _join(where, "api"), _API_RE, "http://host:port (e.g. http://127.0.0.1:7401)"),
    )


# --------------------------------------------------------------------------- sections

_MEMBER_KEYS = ("name", "display_name", "institution", "roles", "public_key", "node")


def _roles(value: Any, where: str) -> tuple[str, ...]:
    items = _list(value, where, len(ROLES), 1)
    seen: set[str] = set()
    for i, role in enumerate(items):
        at = "%s[%d]" % (where, i)
        if not isinstance(role, str):
            raise _err(at, "expected a role name string, got %s" % _jtype(role))
        if role not in ROLES:
            raise _err(at, "unknown role %r (valid: %s)" % (_short(role), ", ".join(sorted(ROLES))),
                       reason="unknown_role")
        if role in seen:
            raise _err(at, "role %r is listed twice" % role)
        seen.add(role)
    node_roles = seen & NODE_ROLES
    if node_roles and len(seen) > 1:
        raise _err(where, "a %s key is a node key and holds no other role; give the institution a separate "
                   "client member for %s" % (min(node_roles), ", ".join(sorted(seen - node_roles))))
    return tuple(sorted(seen))


def _member(value: Any, where: str) -> Member:
    doc = _object(value, where, _MEMBER_KEYS)
    name = _name(doc["name"], _join(where, "name"))
    display_name = _text(doc["display_name"], _join(where, "display_name"))
    institution = _name(doc["institution"], _join(where, "institution"))
    roles = _roles(doc["roles"], _join(where, "roles"))
    key_text = doc["public_key"]
    try:
        key = PublicKey.from_hex(key_text)
    except ValueError:
        raise _err(_join(where, "public_key"), "expected 64 lowercase hex characters (an Ed25519 public key), got %s"
                   % (repr(_short(key_text)) if isinstance(key_text, str) else _jtype(key_text))) from None
    node = _node(doc["node"], _join(where, "node"))
    runs_node = bool(NODE_ROLES & set(roles))
    if runs_node and node is None:
        raise _err(_join(where, "node"), "a %s must give its node addresses {\"peer\", \"api\"}" % roles[0])
    if not runs_node and node is not None:
        raise _err(_join(where, "node"), "only validators and observers run nodes; must be null for roles %s"
                   % ", ".join(roles))
    return Member(name, display_name, institution, roles, key, node)


def _members(value: Any, where: str) -> tuple[Member, ...]:
    items = _list(value, where, MAX_MEMBERS, 1)
    members = []
    names: dict[str, int] = {}
    keys: dict[bytes, int] = {}
    addresses: dict[str, int] = {}
    for i, item in enumerate(items):
        at = "%s[%d]" % (where, i)
        member = _member(item, at)
        if member.name in names:
            raise _err(_join(at, "name"), "name %r is already used by members[%d]" % (member.name, names[member.name]),
                       reason="duplicate")
        names[member.name] = i
        if member.public_key.raw in keys:
            raise _err(_join(at, "public_key"), "key already belongs to members[%d]" % keys[member.public_key.raw],
                       reason="duplicate")
        keys[member.public_key.raw] = i
        if member.node is not None:
            for part, addr in (("peer", member.node.peer), ("api", member.node.api)):
                if addr.lower() in addresses:
                    raise _err("%s.node.%s" % (at, part), "address %r is already used by members[%d]"
                               % (addr, addresses[addr.lower()]), reason="duplicate")
                addresses[addr.lower()] = i
        members.append(member)
    validators = sum(1 for m in members if "validator" in m.roles)
    if validators == 0:
        raise _err(where, "at least one member must have the role 'validator'")
    if validators > MAX_VALIDATORS:
        raise _err(where, "%d validators exceed the limit of %d" % (validators, MAX_VALIDATORS))
    return tuple(members)


def _params(value: Any, where: str, table: tuple[Param, ...]) -> dict[str, int]:
    doc = _object(value, where, (), tuple(p.name for p in table))
    return {p.name: _int(doc.get(p.name, p.default), _join(where, p.name), p.lo, p.hi) for p in table}


def _consensus(value: Any, where: str) -> ConsensusParams:
    params = ConsensusParams(**_params(value, where, CONSENSUS_PARAMS))
    if params.watermark_window < 2 * params.checkpoint_interval:
        raise _err(_join(where, "watermark_window"), "%d is less than 2 * checkpoint_interval (%d)"
                   % (params.watermark_window, 2 * params.checkpoint_interval))
    if params.watermark_window % params.checkpoint_interval:
        raise _err(_join(where, "watermark_window"), "%d is not a multiple of checkpoint_interval (%d)"
                   % (params.watermark_window, params.checkpoint_interval))
    return params


def view_change_bytes(validators: int, params: ConsensusParams) -> int:
    """Bytes of blocks the largest view-change message may carry.

    A VIEW-CHANGE carries every prepared block above the stable checkpoint (at most
    ``watermark_window`` blocks of ``batch_max_bytes``); a NEW-VIEW carries a quorum
    of VIEW-CHANGEs plus the blocks it re-proposes.
    """
    return (quorum(validators) + 1) * params.watermark_window * params.batch_max_bytes


def _check_view_change_size(members: tuple, params: ConsensusParams) -> None:
    validators = sum(1 for m in members if "validator" in m.roles)
    size = view_change_bytes(validators, params)
    if size > VIEW_CHANGE_BUDGET:
        raise _err("consensus.batch_max_bytes", "(quorum + 1) * watermark_window * batch_max_bytes = %d bytes "
                   "exceeds %d: a new-view message, which carries a quorum of view changes with every prepared "
                   "block of the window, would be too large to send; lower batch_max_bytes or watermark_window"
                   % (size, VIEW_CHANGE_BUDGET))


def _limits(value: Any, where: str, consensus: ConsensusParams) -> EntryLimits:
    limits = EntryLimits(**_params(value, where, LIMIT_PARAMS))
    if limits.client_time_window_ms < consensus.max_clock_skew_ms:
        raise _err(_join(where, "client_time_window_ms"), "%d is less than consensus.max_clock_skew_ms (%d)"
                   % (limits.client_time_window_ms, consensus.max_clock_skew_ms))
    return limits


def _categories(value: Any, where: str) -> tuple[Category, ...]:
    items = _list(value, where, MAX_CATEGORIES, 1)
    out = []
    seen: dict[str, int] = {}
    for i, item in enumerate(items):
        at = "%s[%d]" % (where, i)
        doc = _object(item, at, ("id", "display_name", "display_name_en"))
        cid = _name(doc["id"], _join(at, "id"))
        if cid in seen:
            raise _err(_join(at, "id"), "category %r is already defined at %s[%d]" % (cid, where, seen[cid]),
                       reason="duplicate")
        seen[cid] = i
        out.append(Category(cid, _text(doc["display_name"], _join(at, "display_name")),
                            _text(doc["display_name_en"], _join(at, "display_name_en"))))
    missing = [cid for cid in REQUIRED_CATEGORY_IDS if cid not in seen]
    if missing:
        raise _err(where, "missing required categor%s %s (every genesis defines: %s)"
                   % ("y" if len(missing) == 1 else "ies", ", ".join(missing), ", ".join(REQUIRED_CATEGORY_IDS)))
    return tuple(out)


_TOP_KEYS = ("format", "chain_id", "display_name", "created_at", "members", "consensus", "categories", "limits")


def parse_genesis(doc: Any) -> Genesis:
    """Validate a decoded JSON document and build the :class:`Genesis`.

    Raises :class:`GenesisError` (``field`` = JSON path) for every invalid input,
    never another exception.
    """
    try:
        return _parse_genesis(doc)
    except DocError as exc:
        reason = None if exc.reason == DocError.reason else exc.reason
        raise GenesisError(str(exc), field=exc.field, reason=reason) from None


def _parse_genesis(doc: Any) -> Genesis:
    doc = _object(doc, "$", _TOP_KEYS)
    fmt = doc["format"]
    if fmt != FORMAT:
        raise _err("format", "unsupported format %r (this software reads %r)"
                   % (_short(fmt) if isinstance(fmt, str) else _jtype(fmt), FORMAT), reason="unsupported_version")
    chain_id = _name(doc["chain_id"], "chain_id")
    display_name = _text(doc["display_name"], "display_name")
    created_at = parse_time(doc["created_at"], "created_at")
    members = _members(doc["members"], "members")
    consensus = _consensus(doc["consensus"], "consensus")
    categories = _categories(doc["categories"], "categories")
    limits = _limits(doc["limits"], "limits", consensus)
    _check_view_change_size(members, consensus)
    return Genesis(chain_id, display_name, created_at, members, consensus, categories, limits)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict:
    out: dict = {}
    for key, value in pairs:
        if key in out:
            raise GenesisError("$: duplicate key %r in a JSON object" % _short(key), field="$", reason="duplicate")
        out[key] = value
    return out


def _refuse_constant(name: str) -> Any:
    raise GenesisError("$: %s is not allowed in a genesis file" % name, field="$")


def parse_genesis_bytes(data: bytes, source: str = "genesis") -> Genesis:
    """Parse the bytes of a genesis file (UTF-8 JSON, at most :data:`MAX_GENESIS_BYTES`)."""
    if len(data) > MAX_GENESIS_BYTES:
        raise GenesisError("%s: %d bytes exceed the limit of %d bytes" % (source, len(data), MAX_GENESIS_BYTES),
                           field="$", reason="too_large")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise GenesisError("%s: not UTF-8 text (byte %d)" % (source, exc.start), field="$") from None
    try:
        doc = json.loads(text, object_pairs_hook=_no_duplicate_keys, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise GenesisError("%s: invalid JSON at line %d, column %d: %s" % (source, exc.lineno, exc.colno, exc.msg),
                           field="$", reason="invalid_json") from None
    except RecursionError:
        raise GenesisError("%s: JSON nested too deeply" % source, field="$", reason="invalid_json") from None
    return parse_genesis(doc)


def load_genesis(path: str | os.PathLike) -> Genesis:
    """Read and parse a genesis file; the size is bounded before anything is parsed."""
    try:
        st = os.stat(path)
        if not stat.S_ISREG(st.st_mode):
            raise GenesisError("genesis file %s is not a regular file" % path, field="$")
        if st.st_size > MAX_GENESIS_BYTES:
            raise GenesisError("genesis file %s is %d bytes, more than the limit of %d"
                               % (path, st.st_size, MAX_GENESIS_BYTES), field="$", reason="too_large")
        with open(path, "rb") as fh:
            data = fh.read(MAX_GENESIS_BYTES + 1)
    except FileNotFoundError:
        raise GenesisError("genesis file %s does not exist" % path, field="$", reason="not_found") from None
    except OSError as exc:
        raise GenesisError("cannot read genesis file %s: %s" % (path, exc.strerror or exc), field="$") from None
    return parse_genesis_bytes(data, source=str(path))


def _created_at_text(value: Any) -> Any:
    if type(value) is not int:
        return value  # text (or garbage) is checked by parse_genesis
    if not 0 <= value <= _MAX_TIME_MS:
        raise _err("created_at", "%d ms is outside 1970-01-01 .. 9999-12-31" % value)
    return format_time(value)


def build_genesis(
    chain_id: str,
    members: Iterable[Member],
    *,
    created_at: int | str,
    display_name: str | None = None,
    consensus: Mapping[str, int] | ConsensusParams | None = None,
    categories: Iterable[Category] = DEFAULT_CATEGORIES,
    limits: Mapping[str, int] | EntryLimits | None = None,
) -> Genesis:
    """Build a genesis from member specs (used by ``evledger cluster init``).

    The document is assembled and then run through :func:`parse_genesis`, so a built
    genesis obeys exactly the rules of a loaded one; invalid specs raise
    :class:`GenesisError`.  ``created_at`` is ms since the epoch or RFC 3339 text
    (the caller reads the clock; this module never does).
    """
    def params_doc(value: Any) -> dict:
        if value is None:
            return {}
        return value.to_doc() if hasattr(value, "to_doc") else dict(value)

    doc = {
        "format": FORMAT,
        "chain_id": chain_id,
        "display_name": display_name or chain_id,
        "created_at": _created_at_text(created_at),
        "members": [m.to_doc() for m in members],
        "consensus": params_doc(consensus),
        "categories": [c.to_doc() for c in categories],
        "limits": params_doc(limits),
    }
    return parse_genesis(doc)
