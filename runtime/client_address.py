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
nothing).  A request from a trusted proxy without a usable ``X-Forwarded-For`` is
attributed to ``UNKNOWN``, which is never loopback, so it gets no ``/metrics``
without a signature; the header from any other peer is ignored.
"""

from __future__ import annotations

import ipaddress
from typing import Iterable, Mapping

UNKNOWN = "unknown"
MAX_HOPS = 32  # X-Forwarded-For entries read, from the right


def normalise(text: str) -> str | None:
    """An IP address in its canonical text form, or ``None`` if ``text`` is not one."""
    try:
        return ipaddress.ip_address(text.strip()).compressed
    except ValueError:
        return None


def client_address(peer: str | None, headers: Mapping[str, str], trusted: frozenset[str]) -> str:
    """The address to hold a request against (see the module docstring)."""
    remote = normalise(peer or "") or (peer or UNKNOWN)
    if remote not in trusted:
        return remote
    hops = [hop for line in _values(headers, "X-Forwarded-For") for hop in line.split(",")][-MAX_HOPS:]
    for hop in reversed(hops):
        address = normalise(hop)
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
