"""Which address a request comes from, for the public rate limit, the per-address
cap on commit waits and the loopback-only ``/metrics``.

Theory of operation
-------------------
Without configuration the address is the TCP peer's.  Behind a reverse proxy on
the same host every request would then come from 127.0.0.1: ``/metrics`` would
answer anyone without a signature, and every litigant would share one rate-limit
bucket.  So a node can name the proxies it trusts (``api.trusted_proxies`` in
``node.toml``).  A request whose TCP peer is one of them is attributed to the
address that proxy appended to ``X-Forwarded-For``: the right-most entry that is not
itself a trusted proxy (entries further left were written by the client and prove
nothing).  An entry is an IPv4 or IPv6 address, optionally with a port
(``203.0.113.5:4711``, ``[2001:db8::1]:4711``), as some proxies write it; an IPv6
address with a port must be in brackets (``2001:db8::1:4711`` is read as an address).
An IPv4-mapped IPv6 address counts as its IPv4 address.  A request from a trusted
proxy without a usable ``X-Forwarded-For`` is attributed to ``UNKNOWN``, which is
never loopback, so it gets no ``/metrics`` without a signature; the header from any
other peer is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping

UNKNOWN = "unknown"
MAX_HOPS = 32  # X-Forwarded-For entries read, from the right


def normalise(text: str) -> str | None:
    """An IP address in its canonical text form, or ``None`` if ``text`` is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:1.2.3.4 is 1.2.3.4
    return (mapped or address).compressed


def _hop(text: str) -> str | None:
    """One ``X-Forwarded-For`` entry: an address, ``1.2.3.4:port`` or ``[v6]``/``[v6]:port``
    (some proxies add the client's port), as its canonical address text; ``None`` otherwise."""
    text = text.strip()
    if text.startswith("["):
        inside, bracket, rest = text[1:].partition("]")
        if not bracket or (rest and not (rest.startswith(":") and _port(rest[1:]))):
            return None
        text = inside
    elif text.count(":") == 1:  # IPv4 with a port (a bare IPv6 address has two or more colons)
        text, _, port = text.partition(":")
        if not _port(port):
            return None
    return normalise(text)


def _port(text: str) -> bool:
    return text.isascii() and text.isdigit() and len(text) <= 5 and int(text) <= 65535


def client_address(peer: str | None, headers: Mapping[str, str], trusted: frozenset[str]) -> str:
    """The address to hold a request against (see the module docstring)."""
    if not trusted:  # the common case, on every public request: no parsing
        return peer or UNKNOWN
    remote = normalise(peer or "") or (peer or UNKNOWN)
    if remote not in trusted:
        return remote
    hops = [hop for line in _values(headers, "X-Forwarded-For") for hop in line.split(",")][-MAX_HOPS:]
    for hop in reversed(hops):
        address = _hop(hop)
        if address is None:
            return UNKNOWN
        if address not in trusted:
            return address
    return UNKNOWN


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def _values(headers: Mapping[str, str], name: str) -> Iterable[str]:
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return getall(name, [])
    value = headers.get(name)
    return [] if value is None else [value]
