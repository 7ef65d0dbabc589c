"""Whose request is it: the TCP peer, or the client a trusted proxy names (runtime/client_address.py)."""

from __future__ import annotations

from multidict import CIMultiDict

from runtime.client_address import UNKNOWN, client_address, is_loopback

PROXY = frozenset({"127.0.0.1", "::1"})


def xff(*values: str) -> CIMultiDict:
    return CIMultiDict([("X-Forwarded-For", v) for v in values])


def test_without_trusted_proxies_the_peer_is_the_client_whatever_the_header_says():
    assert client_address("203.0.113.9", xff("127.0.0.1"), frozenset()) == "203.0.113.9"
    assert client_address("127.0.0.1", xff("198.51.100.1"), frozenset()) == "127.0.0.1"
    assert client_address(None, {}, frozenset()) == UNKNOWN


def test_a_trusted_proxy_names_the_client_it_appended():
    assert client_address("127.0.0.1", xff("198.51.100.7"), PROXY) == "198.51.100.7"
    # entries further left were written by the client: only the right-most untrusted one counts
    assert client_address("127.0.0.1", xff("127.0.0.1, 10.9.9.9, 198.51.100.7"), PROXY) == "198.51.100.7"
    assert client_address("127.0.0.1", xff("127.0.0.1", "198.51.100.7"), PROXY) == "198.51.100.7"
    # a chain of trusted proxies is skipped
    assert client_address("::1", xff("2001:db8::5, 127.0.0.1"), PROXY) == "2001:db8::5"


def test_a_trusted_proxy_that_names_no_usable_client_is_never_loopback():
    for headers in ({}, xff(""), xff("not-an-ip"), xff("198.51.100.7, junk"), xff("127.0.0.1, ::1")):
        address = client_address("127.0.0.1", headers, PROXY)
        assert address == UNKNOWN and not is_loopback(address), headers


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("127.8.0.1") and is_loopback("::1")
    assert not is_loopback("198.51.100.7") and not is_loopback(UNKNOWN) and not is_loopback("")


def test_entries_with_a_port_or_brackets_name_their_address():
    assert client_address("127.0.0.1", xff("203.0.113.5:4711"), PROXY) == "203.0.113.5"
    assert client_address("127.0.0.1", xff("[2001:db8::1]:4711"), PROXY) == "2001:db8::1"
    assert client_address("127.0.0.1", xff("[2001:DB8:0::1]"), PROXY) == "2001:db8::1"
    for bad in ("203.0.113.5:port", "[2001:db8::1", "[2001:db8::1]x", "[not-ip]:1"):
        assert client_address("127.0.0.1", xff(bad), PROXY) == UNKNOWN, bad


def test_odd_ports_and_mapped_addresses():
    for bad in ("203.0.113.5:99999", "203.0.113.5:\u00b2", "[2001:db8::1]:\u0663"):
        assert client_address("127.0.0.1", xff(bad), PROXY) == UNKNOWN, bad
    assert client_address("127.0.0.1", xff("::ffff:198.51.100.7"), PROXY) == "198.51.100.7"
    assert client_address("::ffff:127.0.0.1", xff("198.51.100.7"), PROXY) == "198.51.100.7"  # a mapped proxy
