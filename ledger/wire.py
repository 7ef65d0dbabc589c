"""Declarative field specs shared by every typed object on the wire.

A typed object is a frozen dataclass with ``TAG``, ``VERSION`` and ``SPEC``: an
ordered tuple of ``(field_name, kind)``.  Its wire form is the array
``[TAG, VERSION, field...]`` in SPEC order, encoded with ``ledger.codec``.  Kinds
are listed in :data:`KINDS`; each has one check used both when an object is built
locally (misuse raises ``ValueError``/``TypeError`` via ``DecodeError``, which is a
``ValueError``) and when one is decoded from untrusted bytes (``DecodeError`` naming
``object.field``).  Keeping the checks in one table means a locally built object and
a decoded one obey exactly the same rules.
"""

from __future__ import annotations

import re
from dataclasses import fields as dc_fields
from typing import Any, Callable

from .codec import Fields, check_bytes, check_str, decode, Limits, DEFAULT_LIMITS
from .errors import DecodeError

NAME_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,62}[a-z0-9])?")
META_KEY_RE = re.compile(r"[a-z0-9_][a-z0-9_.-]{0,63}")
# Printable text without control characters (case numbers, categories, purposes).
TEXT_RE = re.compile(r"[^\x00-\x1f\x7f]*")
CODE_RE = re.compile(r"[0-9A-HJKMNP-TV-Z]{25}")

MAX_META_KEYS = 32
MAX_META_VALUE = 1024
MAX_CODES = 1000
INT63 = 2**63 - 1
INT64_MIN = -(2**63)


def _meta(value: Any, where: str) -> tuple[tuple[str, Any], ...]:
    if isinstance(value, tuple):
        value = dict(value)
    if not isinstance(value, dict):
        raise DecodeError("%s: expected a map" % where)
    if len(value) > MAX_META_KEYS:
        raise DecodeError("%s: %d keys exceed the limit of %d" % (where, len(value), MAX_META_KEYS), reason="too_large")
    out = []
    for key in sorted(value, key=lambda k: k.encode("utf-8") if isinstance(k, str) else b""):
        check_str(key, "%s key" % where, 64, META_KEY_RE)
        item = value[key]
        if type(item) is int:
            if not INT64_MIN <= item <= INT63:
                raise DecodeError("%s.%s: integer out of range" % (where, key))
        else:
            check_str(item, "%s.%s" % (where, key), MAX_META_VALUE, TEXT_RE)
        out.append((key, item))
    return tuple(out)


def _codes(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, (list, tuple)):
        raise DecodeError("%s: expected an array" % where)
    if len(value) > MAX_CODES:
        raise DecodeError("%s: %d codes exceed the limit of %d" % (where, len(value), MAX_CODES), reason="too_large")
    return tuple(check_str(c, "%s[%d]" % (where, i), 25, CODE_RE) for i, c in enumerate(value))


def _opt(check: Callable[[Any, str], Any]) -> Callable[[Any, str], Any]:
    return lambda v, w: None if v is None else check(v, w)


def _int(lo: int, hi: int) -> Callable[[Any, str], int]:
    def check(value: Any, where: str) -> int:
        if type(value) is not int:
            raise DecodeError("%s: expected an integer" % where)
        if not lo <= value <= hi:
            raise DecodeError("%s: %d is outside [%d, %d]" % (where, value, lo, hi))
        return value

    return check


def _text(max_len: int, pattern: re.Pattern = TEXT_RE) -> Callable[[Any, str], str]:
    def check(value: Any, where: str) -> str:
        check_str(value, where, max_len, pattern)
        if not value:
            raise DecodeError("%s: must not be empty" % where)
        return value

    return check


def _bytes(size: int) -> Callable[[Any, str], bytes]:
    return lambda v, w: check_bytes(v, w, size, size)


# kind name -> check(value, where) returning the normalised Python value
KINDS: dict[str, Callable[[Any, str], Any]] = {
    "hash": _bytes(32),
    "opt_hash": _opt(_bytes(32)),
    "salt": _bytes(16),
    "signature": _bytes(64),
    "name": _text(64, NAME_RE),
    "chain_id": _text(64, NAME_RE),
    "text": _text(256),
    "opt_text": _opt(_text(256)),
    "case": _text(128),
    "opt_case": _opt(_text(128)),
    "uint": _int(0, INT63),
    "int": _int(INT64_MIN, INT63),
    "time_ms": _int(0, INT63),
    "count": _int(1, 1_000_000),
    "meta": _meta,
    "codes": _codes,
}


def normalise(obj: Any) -> None:
    """Check and normalise every field of a freshly built typed object in place.

    Called from ``__post_init__``: frozen dataclasses are set with
    ``object.__setattr__``.  Raises ``DecodeError`` (a ``ValueError``) naming the field.
    """
    what = obj.TAG
    for name, kind in obj.SPEC:
        value = KINDS[kind](getattr(obj, name), "%s.%s" % (what, name))
        object.__setattr__(obj, name, value)


def to_wire(obj: Any) -> list:
    """The ``[TAG, VERSION, field...]`` array of a typed object."""
    out: list = [obj.TAG, obj.VERSION]
    for name, kind in obj.SPEC:
        value = getattr(obj, name)
        if kind == "meta":
            value = dict(value)
        elif kind == "codes":
            value = list(value)
        out.append(value)
    return out


def from_wire(cls: Any, items: Any) -> Any:
    """Build ``cls`` from its wire array, naming the field in every error."""
    reader = Fields(cls.TAG, items, 2 + len(cls.SPEC))
    reader.header(cls.TAG, cls.VERSION)
    # Values are checked here, so skip __post_init__'s second pass (hot path: every
    # entry of every block is decoded by every replica).
    obj = object.__new__(cls)
    for name, kind in cls.SPEC:
        value, where = reader.raw(name)
        if kind == "meta" and type(value) is dict and len(value) > 1:
            _check_key_order(value, where)
        object.__setattr__(obj, name, KINDS[kind](value, where))
    for name, value in getattr(cls, "WIRE_DEFAULTS", ()):  # fields kept beside the wire form (caches)
        object.__setattr__(obj, name, value)
    return obj


def _check_key_order(value: dict, where: str) -> None:
    """A map read from the wire must already be in canonical key order (``ledger.codec``
    leaves this check to the typed readers: metadata maps are the only maps on the wire)."""
    keys = [k.encode("utf-8") if isinstance(k, str) else b"" for k in value]
    if keys != sorted(keys):
        raise DecodeError("%s: map keys are not in canonical (sorted) order" % where, reason="non_canonical")


def decode_typed(cls: Any, data: bytes, limits: Limits = DEFAULT_LIMITS) -> Any:
    return from_wire(cls, decode(data, limits, typed=True))


def check_spec(cls: Any) -> Any:
    """Class decorator: assert SPEC names the dataclass fields in order (import-time check)."""
    names = tuple(f.name for f in dc_fields(cls))
    spec_names = tuple(n for n, _ in cls.SPEC)
    if names[: len(spec_names)] != spec_names:
        raise AssertionError("%s.SPEC %r does not match its fields %r" % (cls.__name__, spec_names, names))
    for _, kind in cls.SPEC:
        if kind not in KINDS:
            raise AssertionError("%s uses unknown kind %r" % (cls.__name__, kind))
    return cls
