"""Strict checks of JSON-like documents that name the path of every bad value.

Used by the genesis loader (``ledger.genesis``) and the node configuration: every
checker takes the value and its path (``members[2].roles[0]``, ``$`` for the whole
document) and returns the value or raises :class:`DocError` with ``field`` set to
that path.  Callers that need their own error class catch ``DocError`` at the top
and re-raise it (the genesis loader turns it into ``GenesisError``).
"""

from __future__ import annotations

import calendar
import ipaddress
import json
import re
from datetime import datetime, timezone
from typing import Any

from .crypto import NAME_RE
from .errors import InputError

MAX_DISPLAY = 128
MAX_ADDRESS = 255


class DocError(InputError):
    """A value in a document is not acceptable; ``field`` is its path."""

    reason = "bad_document"


# --------------------------------------------------------------------------- helpers


def _err(where: str, message: str, reason: str | None = None) -> DocError:
    return DocError("%s: %s" % (where, message), field=where, reason=reason)


_PLAIN_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def _join(where: str, key: str) -> str:
    """JSON path of ``key`` inside ``where`` (``$`` is the document): ``a.b``, or ``a["odd key"]``."""
    if _PLAIN_KEY_RE.fullmatch(key):
        return key if where == "$" else "%s.%s" % (where, key)
    quoted = "[%s]" % json.dumps(_short(key))
    return quoted if where == "$" else where + quoted


def _jtype(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number %r" % value
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def _short(text: str) -> str:
    return text if len(text) <= 40 else text[:40] + "..."


def _object(value: Any, where: str, required: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    """Check ``value`` is an object with exactly the allowed keys; every key must be a str."""
    if not isinstance(value, dict):
        raise _err(where, "expected an object, got %s" % _jtype(value))
    allowed = required + optional
    for key in value:
        if not isinstance(key, str):
            raise _err(where, "object keys must be strings")
        if key not in allowed:
            raise _err(_join(where, key), "unknown key %r (valid: %s)" % (_short(key), ", ".join(sorted(allowed))),
                       reason="unknown_key")
    for key in required:
        if key not in value:
            raise _err(_join(where, key), "missing required key %r" % key, reason="missing_key")
    return value


def _list(value: Any, where: str, max_len: int, min_len: int = 0) -> list:
    if not isinstance(value, list):
        raise _err(where, "expected an array, got %s" % _jtype(value))
    if len(value) > max_len:
        raise _err(where, "%d elements exceed the limit of %d" % (len(value), max_len))
    if len(value) < min_len:
        raise _err(where, "needs at least %d element%s" % (min_len, "" if min_len == 1 else "s"))
    return value


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if type(value) is not int:
        raise _err(where, "expected an integer, got %s" % _jtype(value))
    if not lo <= value <= hi:
        raise _err(where, "%d is outside the allowed range [%d, %d]" % (value, lo, hi))
    return value


# Control characters, and bidirectional embedding/override/isolate marks.
_BAD_TEXT_RE = re.compile("[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\u2028\u2029]")


def _text(value: Any, where: str, max_len: int = MAX_DISPLAY) -> str:
    if not isinstance(value, str):
        raise _err(where, "expected a string, got %s" % _jtype(value))
    if not value.strip():
        raise _err(where, "must not be empty")
    if len(value) > max_len:
        raise _err(where, "%d characters exceed the limit of %d" % (len(value), max_len))
    bad = _BAD_TEXT_RE.search(value)
    if bad:
        raise _err(where, "control or bidirectional-override character U+%04X at position %d"
                   % (ord(bad.group()), bad.start() + 1))
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise _err(where, "contains a lone surrogate (not valid Unicode text)") from None
    return value


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise _err(where, "expected a string, got %s" % _jtype(value))
    if not NAME_RE.fullmatch(value):
        raise _err(where, "%r is not a valid name: lowercase letters, digits and hyphens, 1-64 characters, "
                   "not starting or ending with a hyphen" % _short(value))
    return value


# --------------------------------------------------------------------------- time

_TIME_RE = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,3}))?Z")


def parse_time(value: Any, where: str = "created_at") -> int:
    """RFC 3339 UTC text (``YYYY-MM-DDTHH:MM:SS[.fff]Z``) to ms since the epoch."""
    if not isinstance(value, str):
        raise _err(where, "expected an RFC 3339 UTC time string, got %s" % _jtype(value))
    m = _TIME_RE.fullmatch(value)
    if not m:
        raise _err(where, "%r is not an RFC 3339 UTC time like 2025-01-31T08:00:00Z "
                   "(UTC 'Z' suffix, at most millisecond precision)" % _short(value))
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    try:
        moment = datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)
    except ValueError as exc:
        raise _err(where, "%r is not a valid date and time: %s" % (value, exc)) from None
    if year < 1970:
        raise _err(where, "times before 1970 are not allowed")
    ms = int((m.group(7) or "0").ljust(3, "0"))
    return calendar.timegm(moment.timetuple()) * 1000 + ms


_MAX_TIME_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z


def format_time(ms: int) -> str:
    """Ms since the epoch to RFC 3339 UTC (milliseconds shown only when not zero)."""
    seconds, millis = divmod(ms, 1000)
    text = datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")
    return text + (".%03dZ" % millis if millis else "Z")


# --------------------------------------------------------------------------- addresses

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST = r"(?P<host>%s(?:\.%s)*|\[[0-9A-Fa-f:.]+\])" % (_LABEL, _LABEL)
_PEER_RE = re.compile(_HOST + r":(?P<port>[0-9]{1,5})")
_API_RE = re.compile(r"(?P<scheme>https?)://" + _HOST + r"(?::(?P<port>[0-9]{1,5}))?")


def _address(value: Any, where: str, pattern: re.Pattern, example: str) -> str:
    if not isinstance(value, str):
        raise _err(where, "expected a string, got %s" % _jtype(value))
    m = pattern.fullmatch(value) if len(value) <= MAX_ADDRESS else None
    if not m:
        raise _err(where, "%r is not of the form %s" % (_short(value), example))
    host, port = m.group("host"), m.group("port")
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise _err(where, "%r is not a valid IPv6 address" % host) from None
    if port is not None and (port.startswith("0") or not 1 <= int(port) <= 65535):
        raise _err(where, "port %s is not in 1-65535 (without leading zeros)" % port)
    return value
