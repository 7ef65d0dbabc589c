"""Signed institution requests: signing, the refusal table, the replay cache."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st
from multidict import CIMultiDict

from ledger.crypto import SecretKey
from runtime.auth import (
    HEADERS, AuthError, Caller, ReplayCache, RequestVerifier, request_payload, sign_request,
)

CHAIN = "test-chain"
NOW = 1_700_000_000_000
WINDOW = 300_000
SHOP = SecretKey(b"\x01" * 32)
COURT = SecretKey(b"\x02" * 32)
STRANGER = SecretKey(b"\x03" * 32)
BODY = b'{"digest": "00ff"}'
PATH = "/v1/deposits?wait=1"


def verifier(**kw) -> RequestVerifier:
    members = {"shop-a": (SHOP.public, ["depositor"]), "court-a": (COURT.public, ["court", "notary"])}
    return RequestVerifier(CHAIN, members, **kw)


def signed(key=SHOP, client="shop-a", chain=CHAIN, method="POST", path=PATH, body=BODY, time=NOW, nonce=None):
    return sign_request(key, client, chain, method, path, body, time, nonce=nonce)


def check(v: RequestVerifier, headers, *, method="POST", path=PATH, body=BODY, now=NOW, roles=("depositor",)):
    return v.verify(method, path, body, headers, now, roles)


def test_a_valid_request_verifies():
    caller = check(verifier(), signed())
    assert caller == Caller("shop-a", frozenset({"depositor"}), NOW)


def test_headers_are_matched_case_insensitively_and_from_a_multidict():
    headers = {k.lower(): v for k, v in signed().items()}
    assert check(verifier(), headers).name == "shop-a"
    assert check(verifier(), CIMultiDict(signed())).name == "shop-a"


def test_the_documented_vector():
    """docs/auth.md quotes these bytes; an independent implementation must match them."""
    key = SecretKey(bytes(range(32)))
    body = b'{"code":"x"}'
    nonce = bytes(range(16))
    payload = request_payload("shop-a", "POST", "/v1/deposits?wait=1", body, NOW, nonce)
    assert payload.hex() == (
        "98ac687474702d7265717565737401a673686f702d61a4504f5354b32f76312f6465706f736974733f776169743d31"
        "c420f42e4b803d8d73ab5361154c7690b639e5513aca72a7d1df1c77d7e8440db109cf0000018bcfe56800"
        "c410000102030405060708090a0b0c0d0e0f"
    )
    headers = sign_request(key, "shop-a", CHAIN, "POST", "/v1/deposits?wait=1", body, NOW, nonce=nonce)
    assert headers == {
        "X-Evledger-Client": "shop-a",
        "X-Evledger-Time": "1700000000000",
        "X-Evledger-Nonce": "000102030405060708090a0b0c0d0e0f",
        "X-Evledger-Signature": "9149193ba7064fa38abd9cef96ff922eae0f568f47ccb70278f1f19f695fa0dc"
                                "78aee7470d3b60bbe4f1df7213ddc559f129b96773c824037c6885cdc6ee0c06",
    }


def _without(name):
    return lambda h: {k: v for k, v in h.items() if k != name}


def _with(name, value):
    return lambda h: {**h, name: value}


# (id, change to the headers, change to the request as the node sees it, status, code)
REFUSALS = [
    ("no headers at all", lambda h: {}, {}, 401, "unsigned"),
    *[("missing " + n, _without(n), {}, 401, "unsigned") for n in HEADERS],
    ("duplicate header", lambda h: {**h, "x-evledger-nonce": h["X-Evledger-Nonce"]}, {}, 400, "malformed_auth"),
    ("signature not hex", lambda h: {**h, "X-Evledger-Signature": "g" * 128}, {}, 400, "malformed_auth"),
    ("signature upper-case hex", lambda h: {**h, "X-Evledger-Signature": h["X-Evledger-Signature"].upper()}, {},
     400, "malformed_auth"),
    ("signature too short", lambda h: {**h, "X-Evledger-Signature": h["X-Evledger-Signature"][:126]}, {},
     400, "malformed_auth"),
    ("nonce 15 bytes", lambda h: {**h, "X-Evledger-Nonce": "ab" * 15}, {}, 400, "malformed_auth"),
    ("nonce 17 bytes", lambda h: {**h, "X-Evledger-Nonce": "ab" * 17}, {}, 400, "malformed_auth"),
    ("nonce not hex", _with("X-Evledger-Nonce", "zz" * 16), {}, 400, "malformed_auth"),
    ("nonce with trailing newline", lambda h: {**h, "X-Evledger-Nonce": h["X-Evledger-Nonce"] + "\n"}, {},
     400, "malformed_auth"),
    ("time not a number", _with("X-Evledger-Time", "yesterday"), {}, 400, "malformed_auth"),
    ("time negative", _with("X-Evledger-Time", "-1700000000000"), {}, 400, "malformed_auth"),
    ("time with a leading zero", _with("X-Evledger-Time", "01700000000000"), {}, 400, "malformed_auth"),
    ("time in Arabic-Indic digits", _with("X-Evledger-Time", "١٧٠٠٠٠٠٠٠٠٠٠٠"), {}, 400, "malformed_auth"),
    ("time as float", _with("X-Evledger-Time", "1700000000000.0"), {}, 400, "malformed_auth"),
    ("client upper-case", _with("X-Evledger-Client", "Shop-A"), {}, 400, "malformed_auth"),
    ("client empty", _with("X-Evledger-Client", ""), {}, 400, "malformed_auth"),
    ("header value as bytes", lambda h: {**h, "X-Evledger-Client": b"shop-a"}, {}, 400, "malformed_auth"),
    ("unknown client", lambda h: signed(key=STRANGER, client="mallory"), {}, 401, "unknown_client"),
    ("signed by another key", lambda h: signed(key=STRANGER), {}, 401, "bad_signature"),
    ("client header swapped to another member", _with("X-Evledger-Client", "court-a"), {}, 401, "bad_signature"),
    ("signed for another path", lambda h: signed(path="/v1/deposits"), {}, 401, "bad_signature"),
    ("signed for another query", lambda h: signed(path="/v1/deposits?wait=0"), {}, 401, "bad_signature"),
    ("signed for another method", lambda h: signed(method="PUT"), {}, 401, "bad_signature"),
    ("signed for another body", lambda h: signed(body=BODY + b" "), {}, 401, "bad_signature"),
    ("signed for another chain", lambda h: signed(chain="other-chain"), {}, 401, "bad_signature"),
    ("time header changed after signing", _with("X-Evledger-Time", str(NOW + 1)), {}, 401, "bad_signature"),
    ("nonce header changed after signing", _with("X-Evledger-Nonce", "00" * 16), {}, 401, "bad_signature"),
    ("node sees another body", lambda h: h, {"body": b""}, 401, "bad_signature"),
    ("5 min + 1 ms in the future", lambda h: signed(time=NOW + WINDOW + 1), {}, 401, "stale_request"),
    ("5 min + 1 ms in the past", lambda h: signed(time=NOW - WINDOW - 1), {}, 401, "stale_request"),
    ("stale from a stranger: time is checked before membership",
     lambda h: signed(key=STRANGER, client="mallory", time=NOW - WINDOW - 1), {}, 401, "stale_request"),
    ("role missing", lambda h: signed(key=COURT, client="court-a"), {}, 403, "not_permitted"),
]


@pytest.mark.parametrize("mutate, seen, status, code", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals(mutate, seen, status, code):
    good = signed()
    headers = mutate(good)
    with pytest.raises(AuthError) as info:
        check(verifier(), headers, **seen)
    err = info.value
    assert (err.status, err.code, err.reason) == (status, code, code)
    # Nothing from the headers but a well-formed client name, nothing of the body.
    for name, value in headers.items():
        if name.lower() != "x-evledger-client" and isinstance(value, str) and len(value) > 8:
            assert value not in err.message
    assert BODY.decode() not in err.message and "00ff" not in err.message


@pytest.mark.parametrize("offset", [WINDOW, -WINDOW, 0])
def test_the_window_edges_are_accepted(offset):
    assert check(verifier(), signed(time=NOW + offset)).time_ms == NOW + offset


def test_an_exact_replay_is_refused_with_409():
    v, headers = verifier(), signed()
    check(v, headers)
    with pytest.raises(AuthError) as info:
        check(v, headers, now=NOW + 1000)
    assert (info.value.status, info.value.code) == (409, "replayed_request")


def test_a_forged_request_does_not_burn_the_nonce():
    """An attacker without the key cannot pre-empt a genuine nonce (recorded only after the signature)."""
    v = verifier()
    nonce = b"\x07" * 16
    with pytest.raises(AuthError, match="signature"):
        check(v, {**signed(key=STRANGER, nonce=nonce), "X-Evledger-Client": "shop-a"})
    assert len(v.replay) == 0
    assert check(v, signed(nonce=nonce)).name == "shop-a"


def test_a_request_refused_for_its_role_cannot_be_replayed_either():
    v, headers = verifier(), signed(key=COURT, client="court-a")
    with pytest.raises(AuthError, match="role"):
        check(v, headers)
    with pytest.raises(AuthError) as info:
        check(v, headers, roles=("court",))
    assert info.value.code == "replayed_request"


def test_roles_are_any_of_and_none_admits_every_member():
    v = verifier()
    assert check(v, signed(key=COURT, client="court-a"), roles=("court", "procuratorate")).roles == {"court", "notary"}
    assert check(v, signed(key=COURT, client="court-a"), roles=None).name == "court-a"
    with pytest.raises(ValueError, match="unknown roles"):
        check(v, signed(), roles=("depositer",))


def test_same_nonce_different_clients_are_independent():
    v, nonce = verifier(), b"\x09" * 16
    check(v, signed(nonce=nonce))
    check(v, signed(key=COURT, client="court-a", nonce=nonce), roles=None)


# --------------------------------------------------------------------------- replay cache bounds


def test_quota_defaults_to_an_equal_share_and_may_not_overcommit():
    assert verifier(replay_capacity=10).replay.client_quota == 5
    with pytest.raises(ValueError, match="exceeds replay_capacity"):
        verifier(replay_capacity=10, client_quota=6)
    with pytest.raises(ValueError):
        verifier(replay_capacity=1)  # less than one nonce per member


def test_a_client_over_its_quota_gets_429_and_others_are_unaffected():
    v = verifier(replay_capacity=6)  # quota 3 each
    accepted = [signed(time=NOW + i * 100) for i in range(3)]
    for i, headers in enumerate(accepted):
        check(v, headers, now=NOW + i * 100)
    with pytest.raises(AuthError) as info:
        check(v, signed(time=NOW + 400), now=NOW + 400)
    err = info.value
    assert (err.status, err.code) == (429, "rate_limited")
    # The oldest nonce (time NOW) leaves when the clock passes NOW + window, bucket-aligned.
    assert 0 < err.retry_after_ms <= WINDOW + 1000
    assert v.replay.count("shop-a") == 3 and len(v.replay) == 3
    for i in range(3):
        check(v, signed(key=COURT, client="court-a", time=NOW + i), now=NOW + 500, roles=None)
    assert len(v.replay) == 6
    # Old nonces are never forgotten to make room: every one of them is still refused.
    for headers in accepted:
        with pytest.raises(AuthError, match="already received"):
            check(v, headers, now=NOW + 500)


def test_a_replay_at_quota_is_still_reported_as_a_replay():
    v = verifier(replay_capacity=2)
    headers = signed()
    check(v, headers)
    with pytest.raises(AuthError) as info:
        check(v, headers)
    assert info.value.code == "replayed_request"


def test_nonces_expire_after_the_window_and_free_the_quota():
    v = verifier(replay_capacity=4)  # quota 2
    first = signed(time=NOW)
    check(v, first)
    check(v, signed(time=NOW))
    assert v.replay.count("shop-a") == 2
    # Still inside the window: the replay is recognised.
    later = NOW + WINDOW
    with pytest.raises(AuthError, match="already received"):
        check(v, first, now=later)
    # Past the window (and its one-second bucket): stale, and the cache has let go.
    past = NOW + WINDOW + 1000
    with pytest.raises(AuthError) as info:
        check(v, first, now=past)
    assert info.value.code == "stale_request"
    check(v, signed(time=past), now=past)
    assert v.replay.count("shop-a") == 1 and len(v.replay) == 1


def test_a_request_from_the_future_is_remembered_until_its_own_time_plus_the_window():
    v = verifier()
    ahead = signed(time=NOW + WINDOW)
    check(v, ahead)
    with pytest.raises(AuthError, match="already received"):
        check(v, ahead, now=NOW + 2 * WINDOW)


def test_the_clock_never_moves_backwards_for_the_verifier():
    """A clock stepped back must not revive a request whose nonce was dropped."""
    v = verifier()
    old = signed(time=NOW)
    check(v, old)
    check(v, signed(time=NOW + WINDOW + 5000), now=NOW + WINDOW + 5000)  # drops the first nonce
    assert v.replay.count("shop-a") == 1
    with pytest.raises(AuthError) as info:
        check(v, old, now=NOW + 1)  # the host clock jumped back
    assert info.value.code == "stale_request"


def test_the_replay_cache_total_capacity_is_a_hard_bound():
    cache = ReplayCache(WINDOW, capacity=3, client_quota=3)
    for i, client in enumerate(["a", "b", "c"]):
        cache.add(client, bytes([i]) * 16, NOW, NOW)
    with pytest.raises(AuthError) as info:
        cache.add("d", b"\xff" * 16, NOW, NOW)
    assert info.value.code == "rate_limited" and len(cache) == 3
    cache.expire(NOW + WINDOW + 1000)
    assert len(cache) == 0 and cache.count("a") == 0
    cache.add("d", b"\xff" * 16, NOW + WINDOW + 1000, NOW + WINDOW + 1000)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3_000), st.integers(-10_000, 10_000)), min_size=1, max_size=60))
def test_nonces_are_kept_exactly_as_long_as_their_request_could_be_accepted(steps):
    """Never dropped while |now - time| <= window could still hold; dropped within one bucket after."""
    window, bucket = 10_000, 1_000
    cache = ReplayCache(window, capacity=10_000, client_quota=10_000, bucket_ms=bucket)
    now, added = NOW, []
    for i, (advance, offset) in enumerate(steps):
        now += advance
        time = now + offset
        nonce = i.to_bytes(16, "big")
        cache.add("a", nonce, time, now)
        added.append((nonce, time))
        must = [(n, t) for n, t in added if now <= t + window]
        may = [(n, t) for n, t in added if now < t + window + bucket]
        assert len(must) <= len(cache) <= len(may)
        for n, t in must:
            with pytest.raises(AuthError, match="already received"):
                cache.add("a", n, t, now)


# --------------------------------------------------------------------------- hostile headers


HEADER_NAMES = st.sampled_from([*HEADERS, *(h.lower() for h in HEADERS), *(h.upper() for h in HEADERS), "X-Other"])
VALUES = st.one_of(
    st.text(max_size=300),
    st.text(alphabet="0123456789abcdefABCDEF-+ .\n\x00", max_size=140),
    st.binary(max_size=64),
    st.integers(),
    st.none(),
)


class Pairs:
    """A minimal multi-dict: repeated names survive, as they do in aiohttp."""

    def __init__(self, pairs):
        self._pairs = pairs

    def items(self):
        return list(self._pairs)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    drop=st.lists(st.sampled_from(HEADERS), max_size=2),
    replace=st.lists(st.tuples(HEADER_NAMES, VALUES), max_size=4),
    now_offset=st.integers(-2 * WINDOW, 2 * WINDOW),
    body=st.binary(max_size=20),
    path=st.text(max_size=30),
)
def test_random_header_mutations_only_ever_raise_auth_error(drop, replace, now_offset, body, path):
    good = signed(time=NOW)
    pairs = [(k, v) for k, v in good.items() if k not in drop] + replace
    v = verifier()
    try:
        caller = v.verify("POST", path, body, Pairs(pairs), NOW + now_offset, ("depositor",))
    except AuthError as err:
        assert 400 <= err.status < 500 and err.code
        for secret in (good["X-Evledger-Nonce"], good["X-Evledger-Signature"]):
            assert secret not in err.message
        return
    # Only the untouched genuine request can pass.
    assert caller.name == "shop-a" and body == BODY and path == PATH
