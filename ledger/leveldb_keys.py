"""The LevelDB store's key layout and value sealing (``ledger/leveldb_store.py`` has the
layout table and the reasons): key builders, readable key names for error messages,
and the checksummed form every value is stored in."""

from __future__ import annotations

import hashlib
from typing import Any, Callable

from .errors import CorruptionError, DecodeError

CHECKSUM_SIZE = 8


def u64(value: int) -> bytes:
    return value.to_bytes(8, "big")


def header_key(height: int) -> bytes:
    return b"h" + u64(height)


def record_key(height: int, entry_index: int) -> bytes:
    return b"e" + u64(height) + entry_index.to_bytes(4, "big")


def node_key(level: int, index: int) -> bytes:
    return b"t" + bytes((level,)) + u64(index)


def code_key(code: bytes) -> bytes:
    return b"c" + code


def entry_key_key(key: bytes) -> bytes:
    return b"r" + key


def case_prefix(case: str) -> bytes:
    return b"k" + case.encode("utf-8") + b"\x00"


def describe_key(key: bytes) -> str:
    """Readable name of a key for error messages: ``h/5``, ``e/5/2``, ``t/0/17``, ``c/CODE``..."""
    kind, rest = key[:1], key[1:]
    if kind == b"h" and len(rest) == 8:
        return "h/%d" % int.from_bytes(rest, "big")
    if kind == b"e" and len(rest) == 12:
        return "e/%d/%d" % (int.from_bytes(rest[:8], "big"), int.from_bytes(rest[8:], "big"))
    if kind == b"t" and len(rest) == 9:
        return "t/%d/%d" % (rest[0], int.from_bytes(rest[1:], "big"))
    if kind in (b"c", b"m"):
        return kind.decode() + "/" + rest.decode("ascii", "backslashreplace")
    if kind == b"r":
        return "r/" + rest.hex()
    if kind == b"p":
        return "p/" + rest.decode("utf-8", "backslashreplace")
    if kind == b"k" and b"\x00" in rest:
        case, _, code = rest.partition(b"\x00")
        return "k/%s/%s" % (case.decode("utf-8", "backslashreplace"), code.decode("ascii", "backslashreplace"))
    return repr(key)


def checksum(key: bytes, payload: bytes) -> bytes:
    return hashlib.sha256(len(key).to_bytes(2, "big") + key + payload).digest()[:CHECKSUM_SIZE]


def seal(key: bytes, payload: bytes) -> bytes:
    """The stored form of ``payload`` under ``key``: checksum then payload."""
    return checksum(key, payload) + payload


def unseal(key: bytes, value: bytes) -> bytes:
    """The payload of a stored value; CorruptionError naming the key if it fails its checksum."""
    payload = value[CHECKSUM_SIZE:]
    if len(value) < CHECKSUM_SIZE or value[:CHECKSUM_SIZE] != checksum(key, payload):
        name = describe_key(key)
        raise CorruptionError("stored value at key %s fails its checksum" % name, field=name)
    return payload


def parse(key: bytes, payload: bytes, reader: Callable[[bytes], Any]) -> Any:
    """``reader(payload)``, turning any decoding failure into a CorruptionError naming the key."""
    try:
        return reader(payload)
    except (DecodeError, ValueError, TypeError, IndexError) as exc:
        name = describe_key(key)
        raise CorruptionError("stored value at key %s does not decode: %s" % (name, exc), field=name) from None
