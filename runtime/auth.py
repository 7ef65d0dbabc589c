"""Signed institution requests: the client signs, the node verifies.

Theory of operation
-------------------
A member institution proves who sends an HTTP request with four headers
(``docs/auth.md`` is the byte-exact reference)::

    X-Evledger-Client:    member name from genesis            shop-a
    X-Evledger-Time:      ms since the Unix epoch, decimal    1700000000000
    X-Evledger-Nonce:     16 random bytes, 32 lowercase hex   000102...0f
    X-Evledger-Signature: Ed25519, 128 lowercase hex

The signature is ``key.sign("http/request", chain_id, payload)`` with::

    payload = encode(["http-request", 1, client, METHOD, path_with_query,
                      sha256(body), time_ms, nonce_bytes])

so it binds the member, the method, the exact request target, the body, the time
and the nonce, on one chain, for one purpose (``ledger.crypto`` adds the domain).

:meth:`RequestVerifier.verify` checks, in this order, and refuses with the first
failure as an :class:`AuthError` carrying an HTTP status and a contracted code:

1. all four headers present, each exactly once      ``unsigned`` 401 / ``malformed_auth`` 400
2. each header's syntax                             ``malformed_auth`` 400
3. time within ``window_ms`` of now, either side    ``stale_request`` 401
4. the client is a member                           ``unknown_client`` 401
5. the signature                                    ``bad_signature`` 401
6. the nonce is new (then it is remembered)         ``replayed_request`` 409 / ``rate_limited`` 429
7. the member holds one of the required roles       ``not_permitted`` 403

Cheap checks come first so garbage costs no signature verification; the nonce is
recorded only after the signature verifies, so nobody without a member's key can
put anything into the replay cache.

Replay cache.  A request is accepted only while ``|now - time| <= window``, so its
nonce has to be remembered only until ``time + window``; afterwards the request is
refused as stale anyway.  Nonces are kept in one-second buckets keyed by that expiry
and whole buckets are dropped as the clock passes them.  An identical replay
carries the identical (signed) time, so it is looked up in one bucket only.  Each
client may hold at most ``client_quota`` nonces; a client over its quota is refused
with 429 ``rate_limited`` (and a retry delay) rather than having old nonces
forgotten, because forgetting would let them be replayed.  Quotas may not add up to
more than ``replay_capacity``, so one client can never crowd out another.  The
verifier's notion of "now" never moves backwards (it uses the largest ``now_ms``
seen), otherwise a clock step back could revive a request whose nonce was dropped.

Nothing here reads a clock, logs, or touches the network: the HTTP layer passes the
raw request target, body, headers and time in.  Error messages never repeat header
values or bodies; the only caller-supplied text they contain is a well-formed
member name.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from ledger.codec import encode
from ledger.crypto import NAME_RE, PublicKey, SecretKey
from ledger.errors import InputError, SignatureError
from ledger.model import ROLES

CONTEXT = "http/request"
PAYLOAD_TAG = "http-request"
PAYLOAD_VERSION = 1

HEADER_CLIENT = "X-Evledger-Client"
HEADER_TIME = "X-Evledger-Time"
HEADER_NONCE = "X-Evledger-Nonce"
HEADER_SIGNATURE = "X-Evledger-Signature"
HEADERS = (HEADER_CLIENT, HEADER_TIME, HEADER_NONCE, HEADER_SIGNATURE)
_LOWER = {name.lower(): name for name in HEADERS}

NONCE_BYTES = 16
DEFAULT_WINDOW_MS = 300_000
DEFAULT_REPLAY_CAPACITY = 2_000_000
BUCKET_MS = 1_000

_TIME_RE = re.compile(r"0|[1-9][0-9]{0,15}")
_NONCE_RE = re.compile(r"[0-9a-f]{32}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{128}")
_METHOD_RE = re.compile(r"[A-Z]{1,16}")
# What sign_request accepts as a request target: origin-form, visible ASCII only
# (a client percent-encodes everything else before signing).
_TARGET_RE = re.compile(r"/[\x21-\x7e]*")
_MAX_HEADER_CHARS = 200


class AuthError(InputError):
    """A request is refused: ``status`` (HTTP), ``code`` (contracted) and a safe message.

    ``retry_after_ms`` is set for ``rate_limited``: when the client's oldest nonce
    leaves the cache (the HTTP layer sends it as ``Retry-After``, rounded up to seconds).
    """

    def __init__(self, status: int, code: str, message: str, *, retry_after_ms: int | None = None):
        super().__init__(message, reason=code)
        self.status = status
        self.code = code
        self.message = message
        self.retry_after_ms = retry_after_ms

    def __repr__(self) -> str:
        return "AuthError(%d, %r, %r)" % (self.status, self.code, self.message)


@dataclass(frozen=True, slots=True)
class Caller:
    """Who sent a verified request."""

    name: str
    roles: frozenset[str]
    time_ms: int


# --------------------------------------------------------------------------- signing


def request_payload(client: str, method: str, target: str, body: bytes, time_ms: int, nonce: bytes) -> bytes:
    """The bytes signed (inside the ``http/request`` domain) for one request."""
    return encode([PAYLOAD_TAG, PAYLOAD_VERSION, client, method, target, hashlib.sha256(body).digest(), time_ms, nonce])


def sign_request(
    key: SecretKey, client_name: str, chain_id: str, method: str, path: str, body: bytes, now_ms: int,
    nonce: bytes | None = None,
) -> dict[str, str]:
    """The four authentication headers for a request (client side).

    ``path`` is the request target exactly as it goes on the request line: path and
    query, already percent-encoded.  ``nonce`` defaults to 16 fresh random bytes;
    pass one only in tests.
    """
    if not isinstance(key, SecretKey):
        raise TypeError("key must be a SecretKey")
    if not isinstance(client_name, str) or not NAME_RE.fullmatch(client_name):
        raise ValueError("client_name must be a member name (lowercase [a-z0-9-], 1-64 characters)")
    if not isinstance(method, str) or not _METHOD_RE.fullmatch(method):
        raise ValueError("method must be an upper-case HTTP method such as 'POST'")
    if not isinstance(path, str) or not _TARGET_RE.fullmatch(path):
        raise ValueError("path must start with '/' and be percent-encoded visible ASCII")
    if not isinstance(body, (bytes, bytearray, memoryview)):
        raise TypeError("body must be bytes")
    if type(now_ms) is not int or not 0 <= now_ms < 10**16:
        raise ValueError("now_ms must be a non-negative integer of milliseconds")
    if nonce is None:
        nonce = os.urandom(NONCE_BYTES)
    if not isinstance(nonce, bytes) or len(nonce) != NONCE_BYTES:
        raise ValueError("nonce must be %d bytes" % NONCE_BYTES)
    payload = request_payload(client_name, method, path, bytes(body), now_ms, nonce)
    signature = key.sign(CONTEXT, chain_id, payload)
    return {
        HEADER_CLIENT: client_name,
        HEADER_TIME: str(now_ms),
        HEADER_NONCE: nonce.hex(),
        HEADER_SIGNATURE: signature.hex(),
    }


# --------------------------------------------------------------------------- replay cache


class ReplayCache:
    """Bounded memory of accepted nonces (see the module docstring).

    ``add`` either remembers ``(client, nonce)`` for a request made at ``time_ms`` or
    raises ``replayed_request`` / ``rate_limited``.  Sizes: ``len(cache)`` nonces in
    all, ``cache.count(client)`` for one client.
    """

    def __init__(self, window_ms: int, capacity: int, client_quota: int, bucket_ms: int = BUCKET_MS):
        for name, value in (("window_ms", window_ms), ("capacity", capacity), ("client_quota", client_quota),
                            ("bucket_ms", bucket_ms)):
            if type(value) is not int or value < 1:
                raise ValueError("%s must be a positive integer" % name)
        self.window_ms = window_ms
        self.capacity = capacity
        self.client_quota = client_quota
        self.bucket_ms = bucket_ms
        # bucket index -> client -> nonces whose requests expire within that bucket
        self._buckets: dict[int, dict[str, set[bytes]]] = {}
        self._counts: dict[str, int] = {}
        self._total = 0
        self._drop_at: int | None = None  # when the oldest bucket may go

    def __len__(self) -> int:
        return self._total

    def count(self, client: str) -> int:
        return self._counts.get(client, 0)

    def expire(self, now_ms: int) -> None:
        """Forget every nonce whose request would now be refused as stale.

        Bucket ``b`` holds requests with ``time + window < (b + 1) * bucket_ms``; once
        ``now >= (b + 1) * bucket_ms`` every one of them is older than the window.
        """
        if self._drop_at is None or now_ms < self._drop_at:
            return
        for b in sorted(self._buckets):
            if now_ms < (b + 1) * self.bucket_ms:
                break
            for client, nonces in self._buckets.pop(b).items():
                left = self._counts[client] - len(nonces)
                if left:
                    self._counts[client] = left
                else:
                    del self._counts[client]
                self._total -= len(nonces)
        self._drop_at = (min(self._buckets) + 1) * self.bucket_ms if self._buckets else None

    def add(self, client: str, nonce: bytes, time_ms: int, now_ms: int) -> None:
        self.expire(now_ms)
        b = (time_ms + self.window_ms) // self.bucket_ms
        bucket = self._buckets.get(b)
        nonces = bucket.get(client) if bucket is not None else None
        if nonces is not None and nonce in nonces:
            raise AuthError(409, "replayed_request", "request from %s was already received (same nonce)" % client)
        if self._counts.get(client, 0) >= self.client_quota:
            raise AuthError(
                429, "rate_limited",
                "too many signed requests from %s within the replay window (quota %d)" % (client, self.client_quota),
                retry_after_ms=self._client_release_ms(client, now_ms),
            )
        if self._total >= self.capacity:  # unreachable while quotas fit in the capacity; kept as a bound
            raise AuthError(429, "rate_limited", "the node's replay cache is full",
                            retry_after_ms=max(1, (self._drop_at or now_ms) - now_ms))
        if bucket is None:
            bucket = self._buckets[b] = {}
            drop = (b + 1) * self.bucket_ms
            if self._drop_at is None or drop < self._drop_at:
                self._drop_at = drop
        if nonces is None:
            nonces = bucket[client] = set()
        nonces.add(nonce)
        self._counts[client] = self._counts.get(client, 0) + 1
        self._total += 1

    def _client_release_ms(self, client: str, now_ms: int) -> int:
        oldest = min(b for b, clients in self._buckets.items() if client in clients)
        return max(1, (oldest + 1) * self.bucket_ms - now_ms)


# --------------------------------------------------------------------------- verifying


class RequestVerifier:
    """Checks signed requests for one chain and one membership.

    ``members`` maps a member name to ``(PublicKey, roles)``.  ``client_quota``
    defaults to ``replay_capacity // len(members)``; a larger explicit quota that
    would let the quotas exceed the capacity is refused.  Not thread-safe: the HTTP
    layer calls it from its event loop.
    """

    def __init__(
        self, chain_id: str, members: Mapping[str, tuple[PublicKey, Iterable[str]]], window_ms: int = DEFAULT_WINDOW_MS,
        replay_capacity: int = DEFAULT_REPLAY_CAPACITY, client_quota: int | None = None,
    ):
        if not isinstance(chain_id, str) or not chain_id:
            raise ValueError("chain_id must be a non-empty string")
        self.chain_id = chain_id
        self._members: dict[str, tuple[PublicKey, frozenset[str]]] = {}
        for name, (key, roles) in members.items():
            if not isinstance(name, str) or not NAME_RE.fullmatch(name):
                raise ValueError("member name %r is not lowercase [a-z0-9-]" % (name,))
            if not isinstance(key, PublicKey):
                raise TypeError("member %s: key must be a PublicKey" % name)
            role_set = frozenset(roles)
            if not role_set <= ROLES:
                raise ValueError("member %s: unknown roles %s" % (name, ", ".join(sorted(role_set - ROLES))))
            self._members[name] = (key, role_set)
        if not self._members:
            raise ValueError("a verifier needs at least one member")
        if client_quota is None:
            client_quota = replay_capacity // len(self._members)
        if type(client_quota) is not int or client_quota < 1:
            raise ValueError("client_quota must be a positive integer (is replay_capacity smaller than the membership?)")
        if client_quota * len(self._members) > replay_capacity:
            raise ValueError("client_quota %d x %d members exceeds replay_capacity %d"
                             % (client_quota, len(self._members), replay_capacity))
        self.window_ms = window_ms
        self.replay = ReplayCache(window_ms, replay_capacity, client_quota)
        self._now_ms = 0

    @classmethod
    def from_genesis(cls, genesis: Any, **kwargs: Any) -> "RequestVerifier":
        """A verifier for every member of a parsed ``ledger.genesis.Genesis``."""
        members = {m.name: (m.public_key, m.roles) for m in genesis.members}
        return cls(genesis.chain_id, members, **kwargs)

    def verify(
        self, method: str, path: str, body: bytes, headers: Mapping[str, Any], now_ms: int,
        required_roles: Iterable[str] | None = None,
    ) -> Caller:
        """Return the verified :class:`Caller` or raise :class:`AuthError`.

        ``path`` is the raw request target (path and query exactly as received,
        e.g. aiohttp's ``request.raw_path``), ``body`` the raw body bytes.
        ``required_roles``: the caller needs at least one of them; ``None`` or empty
        admits any member.  ``now_ms`` is the node's clock.
        """
        wanted = _check_roles(required_roles)
        now = self._advance(now_ms)
        client, time_ms, nonce, signature, key, roles = self._headers(headers, now)
        self._check_signature(key, client, method, path, body, time_ms, bytes.fromhex(nonce), bytes.fromhex(signature))
        self.replay.add(client, bytes.fromhex(nonce), time_ms, now)
        if wanted and not wanted & roles:
            raise AuthError(403, "not_permitted", "%s does not hold a role allowed here (%s)"
                            % (client, ", ".join(sorted(wanted))))
        return Caller(client, roles, time_ms)

    def precheck(self, headers: Mapping[str, Any], now_ms: int) -> None:
        """Checks 1-4 of :meth:`verify` (headers present and well-formed, the time window, a
        member), which need no body: a request that fails them is refused, with the same
        error, before its body is read.  Records no nonce."""
        self._headers(headers, self._advance(now_ms))

    def _advance(self, now_ms: int) -> int:
        if type(now_ms) is not int:
            raise TypeError("now_ms must be an int")
        self._now_ms = max(now_ms, self._now_ms)
        return self._now_ms

    def _headers(self, headers: Mapping[str, Any], now: int) -> tuple[str, int, str, str, PublicKey, frozenset[str]]:
        values = _collect(headers)
        client = _parse_client(values[HEADER_CLIENT])
        time_ms = _parse(values[HEADER_TIME], _TIME_RE, HEADER_TIME, "a decimal number of milliseconds")
        nonce = _parse(values[HEADER_NONCE], _NONCE_RE, HEADER_NONCE, "32 lowercase hex characters")
        signature = _parse(values[HEADER_SIGNATURE], _SIGNATURE_RE, HEADER_SIGNATURE, "128 lowercase hex characters")
        time_ms = int(time_ms)
        if abs(now - time_ms) > self.window_ms:
            direction = "ahead of" if time_ms > now else "behind"
            raise AuthError(401, "stale_request", "request time is more than %d s %s the node's clock (%d ms)"
                            % (self.window_ms // 1000, direction, now))
        member = self._members.get(client)
        if member is None:
            raise AuthError(401, "unknown_client", "%s is not a member of this consortium" % client)
        key, roles = member
        return client, time_ms, nonce, signature, key, roles

    def _check_signature(self, key: PublicKey, client: str, method: str, path: str, body: bytes, time_ms: int,
                         nonce: bytes, signature: bytes) -> None:
        if not isinstance(method, str) or not isinstance(path, str):
            raise TypeError("method and path must be str")
        if not isinstance(body, (bytes, bytearray, memoryview)):
            raise TypeError("body must be bytes")
        try:
            payload = request_payload(client, method, path, bytes(body), time_ms, nonce)
        except UnicodeEncodeError:
            raise AuthError(400, "malformed_auth", "the request target is not valid UTF-8") from None
        try:
            key.verify(CONTEXT, self.chain_id, payload, signature)
        except SignatureError:
            raise AuthError(401, "bad_signature", "signature does not verify for %s" % client) from None


def _check_roles(required: Iterable[str] | None) -> frozenset[str]:
    if required is None:
        return frozenset()
    if isinstance(required, str):
        required = (required,)
    wanted = frozenset(required)
    if not wanted <= ROLES:
        raise ValueError("unknown roles %s" % ", ".join(sorted(map(str, wanted - ROLES))))
    return wanted


def _collect(headers: Mapping[str, Any]) -> dict[str, Any]:
    """The four auth headers by canonical name, matched case-insensitively.

    Iterates ``items()`` so a multi-dict's repeated headers are seen (and refused).
    """
    found: dict[str, Any] = {}
    for name, value in headers.items():
        canonical = _LOWER.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            continue
        if canonical in found:
            raise AuthError(400, "malformed_auth", "header %s appears more than once" % canonical)
        found[canonical] = value
    missing = [name for name in HEADERS if name not in found]
    if missing:
        raise AuthError(401, "unsigned", "request is not signed: missing %s" % ", ".join(missing))
    return found


def _parse(value: Any, pattern: re.Pattern, header: str, expected: str) -> str:
    if not isinstance(value, str) or len(value) > _MAX_HEADER_CHARS or not pattern.fullmatch(value):
        raise AuthError(400, "malformed_auth", "header %s must be %s" % (header, expected))
    return value


def _parse_client(value: Any) -> str:
    return _parse(value, NAME_RE, HEADER_CLIENT, "a member name (lowercase [a-z0-9-], 1-64 characters)")
