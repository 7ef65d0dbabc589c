"""Canonical msgpack: the one byte form of everything that is hashed or signed.

Theory of operation
-------------------
Every node must hash identical bytes for the same object, years apart and across
library versions, so the encoding is pinned down here rather than left to msgpack
defaults:

* Allowed values: ``None``, ``bool``, integers in [-2**63, 2**64), ``str`` (UTF-8,
  msgpack *str* family), ``bytes`` (msgpack *bin* family), lists, and maps whose keys
  are ``str``.  Floats, ext types and timestamps are not allowed anywhere, because a
  float has more than one reasonable encoding and must never reach a hash.
* Every value uses the shortest msgpack encoding for its type (this is what the
  msgpack packer emits: positive/negative fixint, uint8..64, fixstr/str8..32, ...).
* Map keys are sorted by their UTF-8 bytes and unique.
* A document is exactly one value: trailing bytes are an error.

``decode`` is strict: it checks size limits before parsing, parses with msgpack's
own limits (so a hostile length prefix cannot allocate), rejects floats, ext types
and over-deep nesting, and finally re-encodes the result and requires the bytes to
be identical to the input.  That last step is what rejects every non-canonical form
(over-long integers, ``str`` sent as ``bin``, unsorted or duplicate map keys) with
one rule instead of a catalogue of special cases.

Typed objects (``ledger.model``) are encoded as arrays ``[tag, version, field...]``
built with this module and read back with :class:`Fields`, which names the field
that is wrong in every error.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

import msgpack

from .errors import DecodeError

MAX_DEPTH = 32
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1


@dataclass(frozen=True, slots=True)
class Limits:
    """Upper bounds applied while decoding untrusted bytes."""

    max_bytes: int = 4 * 1024 * 1024
    max_str: int = 64 * 1024
    max_bin: int = 4 * 1024 * 1024
    max_array: int = 100_000
    max_map: int = 1_024


DEFAULT_LIMITS = Limits()

# Building a msgpack Packer allocates a 256 KiB buffer.  Under the node's fixed mmap
# threshold (node.py, _limit_malloc_arenas) each one is an mmap, a page fault and a
# munmap: msgpack.packb cost 9-10 µs for a 100-byte message against 0.4 µs with a
# packer kept for the purpose, and was a tenth of a node's CPU at idle.  So every
# thread keeps one packer per option set.  A packer never shrinks its buffer, which
# grows to about twice the largest value it has packed, so one that has packed more
# than RETAIN_BYTES is let go, and so is one whose pack raised (it may have written
# much before the error).
RETAIN_BYTES = 1024 * 1024
_packers = threading.local()


def _slot(single_float: bool) -> str:
    return "single" if single_float else "double"


def _packer(single_float: bool = False) -> msgpack.Packer:
    name = _slot(single_float)
    packer = getattr(_packers, name, None)
    if packer is None:
        packer = msgpack.Packer(use_bin_type=True, use_single_float=single_float)
        setattr(_packers, name, packer)
    return packer


def pack(value: Any, single_float: bool = False) -> bytes:
    """``msgpack.packb(value, use_bin_type=True)`` with this thread's packer (no canonical
    rules applied: see :func:`encode`).  For a hot loop of small values,
    :func:`small_packer` saves the lookups."""
    packer = _packer(single_float)
    try:
        data = packer.pack(value)
    except BaseException:
        _drop(single_float)
        raise
    if len(data) > RETAIN_BYTES:
        _drop(single_float)
    return data


def _drop(single_float: bool) -> None:
    setattr(_packers, _slot(single_float), None)


def small_packer() -> Any:
    """This thread's ``Packer.pack``, for a loop packing many small values (none near
    ``RETAIN_BYTES``: a large one would stay allocated until the thread packs a large
    value through :func:`pack`)."""
    return _packer().pack


def _sort_maps(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with every dict rebuilt in canonical key order.

    Raises ``TypeError`` for values that have no canonical encoding; encoding our
    own objects with such a value is a programming error, not bad input.
    """
    kind = type(value)
    if (kind is list or kind is tuple) and depth < MAX_DEPTH:
        # Hot path (every block and message is encoded through here): exact-type
        # scalars are copied inline; anything else takes the general path below.
        out = []
        append = out.append
        for v in value:
            k = type(v)
            if k is bytes or k is str or v is None or k is bool or (k is int and INT_MIN <= v <= INT_MAX):
                append(v)
            else:
                append(_sort_maps(v, depth + 1))
        return out
    if depth > MAX_DEPTH:
        raise TypeError("value nested deeper than %d levels" % MAX_DEPTH)
    if value is None or isinstance(value, (bool, str, bytes)):
        return value
    if isinstance(value, int):
        if not INT_MIN <= value <= INT_MAX:
            raise TypeError("integer %d outside the msgpack range" % value)
        return value
    if isinstance(value, (list, tuple)):
        return [_sort_maps(v, depth + 1) for v in value]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError("map keys must be str, got %s" % type(key).__name__)
        return {k: _sort_maps(value[k], depth + 1) for k in sorted(value, key=_key_order)}
    raise TypeError("%s has no canonical encoding" % type(value).__name__)


def _key_order(key: str) -> bytes:
    return key.encode("utf-8")


def encode(value: Any) -> bytes:
    """Canonical bytes of ``value`` (see the module docstring for the rules)."""
    return pack(_sort_maps(value))


def encode_wire(value: Any) -> bytes:
    """Canonical bytes of the wire form of a *validated* typed object.

    ``wire()`` of ``ledger.model`` / ``ledger.block`` objects is canonical by
    construction: every field was checked when the object was built or decoded
    (``ledger.wire.KINDS``: only str, bytes, None, in-range int, lists) and metadata
    maps are kept sorted by their UTF-8 keys, so msgpack's own packer already emits
    exactly what :func:`encode` would.  Skipping the generic walk saves most of the
    cost of hashing and storing records.
    """
    return pack(value)


def array_header(count: int) -> bytes:
    """The canonical msgpack header of an array of ``count`` elements.

    Lets callers splice already-canonical encoded elements into an array without
    decoding them: ``array_header(n) + b"".join(encoded_elements)`` is canonical.
    """
    if not 0 <= count < 2**32:
        raise ValueError("array length out of range")
    if count < 16:
        return bytes([0x90 | count])
    if count < 2**16:
        return b"\xdc" + count.to_bytes(2, "big")
    return b"\xdd" + count.to_bytes(4, "big")


def _ext_refused(code: int, data: bytes) -> Any:
    raise DecodeError("msgpack ext type %d is not allowed" % code)


def _check_tree(value: Any) -> None:
    """Reject floats, unsorted map keys and nesting deeper than MAX_DEPTH, iteratively.

    Duplicate keys need no check here: msgpack keeps the last one, so the
    re-encoded bytes come out shorter than the input and the comparison fails.
    """
    stack = [(value, 0)]
    pop = stack.pop
    while stack:
        item, depth = pop()
        kind = type(item)
        if kind is list or kind is dict:
            if depth >= MAX_DEPTH:
                raise DecodeError("nested deeper than %d levels" % MAX_DEPTH)
            if kind is dict:
                if any(type(k) is not str for k in item):
                    raise DecodeError("map keys must be strings")
                keys = [k.encode("utf-8") for k in item]
                if keys != sorted(keys):
                    raise DecodeError("map keys are not in canonical (sorted) order", reason="non_canonical")
                item = item.values()
            # The element types first, at C speed: most arrays hold only scalars.
            types = set(map(type, item))
            if float in types:
                raise DecodeError("floating-point values are not allowed")
            if list in types or dict in types:
                deeper = depth + 1
                stack.extend([(v, deeper) for v in item if type(v) is list or type(v) is dict])
        elif kind is float:
            raise DecodeError("floating-point values are not allowed")


def decode(data: bytes, limits: Limits = DEFAULT_LIMITS, *, typed: bool = False) -> Any:
    """Parse canonical bytes; raise :class:`DecodeError` naming what is wrong.

    The value is re-encoded twice, with floats packed as 64-bit and as 32-bit, and
    both must equal the input: a float of either width, an over-long form or a
    duplicate map key is refused at C speed.  A failing document is walked once to
    name the problem.

    ``typed=True`` is for callers that read every value of the result with typed
    readers (``Fields``, ``ledger.wire``): those refuse any nesting their schema
    does not have, any float (no field is one) and check the key order of the only
    maps on the wire (metadata, ``ledger.wire.from_wire``), so the Python walk over
    the tree (``MAX_DEPTH``, sorted keys) and the second re-encoding are skipped.
    Untyped documents keep them.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError("decode() needs bytes, got %s" % type(data).__name__)
    data = bytes(data)
    if not data:
        raise DecodeError("empty input")
    if len(data) > limits.max_bytes:
        raise DecodeError(
            "input of %d bytes exceeds the limit of %d bytes" % (len(data), limits.max_bytes),
            reason="too_large",
        )
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=_ext_refused,
            max_str_len=limits.max_str,
            max_bin_len=limits.max_bin,
            max_array_len=limits.max_array,
            max_map_len=limits.max_map,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except msgpack.ExtraData:
        raise DecodeError("trailing bytes after the encoded value") from None
    except UnicodeDecodeError:
        raise DecodeError("string is not valid UTF-8") from None
    except ValueError as exc:
        # msgpack reports over-limit lengths, truncation and bad map keys as ValueError
        raise DecodeError("not valid msgpack: %s" % _msg(exc)) from None
    except Exception as exc:  # msgpack raises assorted types for garbage (StackError, TypeError)
        raise DecodeError("not valid msgpack: %s" % _msg(exc)) from None
    try:
        # A 32-bit float fails the first comparison, a 64-bit one the second; typed
        # readers refuse a float wherever one is left (every field has a type).
        canonical = pack(value) == data and (typed or pack(value, single_float=True) == data)
    except (ValueError, TypeError, OverflowError) as exc:  # over-deep nesting; a float too wide for 32 bits
        _check_tree(value)
        raise DecodeError("not valid msgpack: %s" % _msg(exc)) from None
    if not canonical:
        _check_tree(value)  # names floats and over-deep nesting
        raise DecodeError(
            "non-canonical encoding (shortest forms and sorted unique map keys are required)",
            reason="non_canonical",
        )
    if not typed:
        _check_tree(value)
    return value


def _msg(exc: Exception) -> str:
    text = str(exc) or type(exc).__name__
    return text[:200]


class Fields:
    """Typed, named reader over the field list of a decoded ``[tag, version, ...]`` array.

    Each getter names the field in its error, so a caller learns *which* field of
    *which* object is wrong (``deposit.digest: expected 32 bytes, got 31``).
    """

    __slots__ = ("_what", "_items", "_pos")

    def __init__(self, what: str, items: list, expected: int):
        if not isinstance(items, list):
            raise DecodeError("%s: expected an array, got %s" % (what, _tname(items)))
        if len(items) != expected:
            raise DecodeError(
                "%s: expected %d fields, got %d" % (what, expected, len(items)),
                reason="wrong_field_count",
            )
        self._what = what
        self._items = items
        self._pos = 0

    def _next(self, name: str) -> tuple[Any, str]:
        value = self._items[self._pos]
        self._pos += 1
        return value, "%s.%s" % (self._what, name)

    def header(self, tag: str, version: int) -> None:
        """Consume ``tag`` and ``version``; unknown versions are refused."""
        got_tag, where = self._next("tag")
        if got_tag != tag:
            raise DecodeError("%s: expected %r, got %r" % (where, tag, _short(got_tag)))
        got_version, where = self._next("version")
        if type(got_version) is not int:
            raise DecodeError("%s: expected an integer" % where)
        if got_version != version:
            raise DecodeError(
                "%s: unsupported version %d (this software reads version %d)" % (where, got_version, version),
                reason="unsupported_version",
            )

    def int(self, name: str, lo: int = 0, hi: int = INT_MAX) -> int:
        value, where = self._next(name)
        if type(value) is not int:
            raise DecodeError("%s: expected an integer, got %s" % (where, _tname(value)))
        if not lo <= value <= hi:
            raise DecodeError("%s: %d is outside [%d, %d]" % (where, value, lo, hi))
        return value

    def bytes(self, name: str, size: int | None = None, max_size: int = 1024) -> bytes:
        value, where = self._next(name)
        return check_bytes(value, where, size, max_size)

    def opt_bytes(self, name: str, size: int) -> bytes | None:
        value, where = self._next(name)
        return None if value is None else check_bytes(value, where, size, size)

    def str(self, name: str, max_len: int = 256, pattern: Any = None) -> str:
        value, where = self._next(name)
        return check_str(value, where, max_len, pattern)

    def opt_str(self, name: str, max_len: int = 256, pattern: Any = None) -> str | None:
        value, where = self._next(name)
        return None if value is None else check_str(value, where, max_len, pattern)

    def list(self, name: str, max_len: int) -> list:
        value, where = self._next(name)
        if not isinstance(value, list):
            raise DecodeError("%s: expected an array, got %s" % (where, _tname(value)))
        if len(value) > max_len:
            raise DecodeError("%s: %d items exceed the limit of %d" % (where, len(value), max_len), reason="too_large")
        return value

    def map(self, name: str, max_len: int) -> dict:
        value, where = self._next(name)
        if not isinstance(value, dict):
            raise DecodeError("%s: expected a map, got %s" % (where, _tname(value)))
        if len(value) > max_len:
            raise DecodeError("%s: %d keys exceed the limit of %d" % (where, len(value), max_len), reason="too_large")
        return value

    def raw(self, name: str) -> tuple[Any, str]:
        """The next value unchecked, with its qualified field name for errors."""
        return self._next(name)


def check_bytes(value: Any, where: str, size: int | None = None, max_size: int = 1024) -> bytes:
    if not isinstance(value, bytes):
        raise DecodeError("%s: expected bytes, got %s" % (where, _tname(value)))
    if size is not None and len(value) != size:
        raise DecodeError("%s: expected %d bytes, got %d" % (where, size, len(value)))
    if len(value) > max_size:
        raise DecodeError("%s: %d bytes exceed the limit of %d" % (where, len(value), max_size), reason="too_large")
    return value


def check_str(value: Any, where: str, max_len: int = 256, pattern: Any = None) -> str:
    if not isinstance(value, str):
        raise DecodeError("%s: expected a string, got %s" % (where, _tname(value)))
    if len(value) > max_len:
        raise DecodeError("%s: %d characters exceed the limit of %d" % (where, len(value), max_len), reason="too_large")
    if pattern is not None and not pattern.fullmatch(value):
        raise DecodeError("%s: %r is not of the form %s" % (where, _short(value), pattern.pattern))
    return value


def _tname(value: Any) -> str:
    if value is None:
        return "nil"
    return {bool: "boolean", int: "integer", str: "string", bytes: "bytes", list: "array", dict: "map"}.get(
        type(value), type(value).__name__
    )


def _short(value: Any) -> Any:
    if isinstance(value, (str, bytes)) and len(value) > 40:
        return value[:40] + (b"..." if isinstance(value, bytes) else "...")
    return value

