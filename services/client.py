"""The evledger client SDK: what the CLI, the services and scripts use to talk to a node.

Theory of operation
-------------------
:class:`EvledgerClient` is a small synchronous HTTP client over the standard library
(``http.client``), one keep-alive connection per thread, so one client object may be
shared by threads.  Every call has a socket timeout.  Requests that need an identity
are signed with the member's key (``runtime.auth.sign_request``; headers and bytes in
``docs/auth.md``); the chain id that signatures are bound to is given or fetched once
from ``GET /v1/status``.

Failures come back as exactly two kinds of exception, so callers can map them:

* :class:`ApiError` — the node answered with an error status; ``status``, ``code``
  and ``message`` come from the contracted ``{"error": {"code", "message"}}`` body
  (``code`` is ``http_<status>`` if the body is not of that shape, ``bad_response``
  if a success answer cannot be read);
* :class:`Unreachable` — no answer: connection refused or reset, DNS, TLS, timeout.
  The CLI maps it to exit status 3.

A keep-alive connection that the server closed while idle is retried once on a fresh
connection, re-signed with a new nonce (a retried deposit is harmless: deposits are
idempotent by code).  ``deposit`` also waits and retries when the node answers 429 or
503, honouring ``Retry-After``.

Deposits travel as canonical msgpack (``application/msgpack``)::

    encode(["deposit-request", 1, [entry_record_wire, ...]])

and the node answers JSON ``{"deposits": [{"code", "digest", "state", "height"}, ...]}``,
one element per item in request order.  The client recomputes every code locally and
refuses an answer whose codes differ (which would mean another chain or a broken node).
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import ssl
import threading
import time
from typing import Any, Iterable, Sequence
from urllib.parse import quote, urlsplit

from ledger.codec import encode
from ledger.codes import DepositCode, parse_code
from ledger.crypto import KeyFile, SecretKey, load_key_file
from ledger.model import Deposit, DepositItem, EntryRecord, make_deposit
from runtime.auth import sign_request

DEFAULT_CATEGORY = "general"
MSGPACK = "application/msgpack"
DEPOSIT_REQUEST_TAG = "deposit-request"
DEPOSIT_REQUEST_VERSION = 1
MAX_REQUEST_ITEMS = 10_000  # items per POST /v1/deposits (docs/auth.md)
MAX_REQUEST_BYTES = 4 * 1024 * 1024  # body of POST /v1/deposits
MAX_RESPONSE_BYTES = 64 * 1024 * 1024
MAX_WAIT_S = 30.0  # the longest ?wait_ms= a node accepts (docs/api.md)
USER_AGENT = "evledger-client/1"
_RETRY_STATUSES = (429, 503)
_STALE_CONNECTION = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError, ConnectionAbortedError)


class ClientError(Exception):
    """Base of the errors this module raises for a failed call."""


class ApiError(ClientError):
    """The node refused or failed a request (an HTTP error status)."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: float | None = None):
        super().__init__("%s (HTTP %d): %s" % (code, status, message))
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class Unreachable(ClientError):
    """No answer from the node: refused, reset, timed out, unresolvable or bad TLS."""


class CommitTimeout(ClientError):
    """``wait_committed`` gave up; ``heights`` holds what did commit, ``pending`` the rest."""

    def __init__(self, pending: list[str], heights: dict[str, int], timeout: float):
        super().__init__("%d deposit(s) not committed after %g s" % (len(pending), timeout))
        self.pending = pending
        self.heights = heights


# --------------------------------------------------------------------------- local helpers


def hash_file(path: str | os.PathLike, chunk: int = 1 << 20) -> bytes:
    """SHA-256 of a file, read in ``chunk``-byte pieces (the file never leaves the machine)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.digest()


def _digest_bytes(value: bytes | str) -> bytes:
    if isinstance(value, str):
        try:
            value = bytes.fromhex(value)
        except ValueError:
            raise ValueError("a digest is 64 hex characters") from None
    if not isinstance(value, bytes) or len(value) != 32:
        raise ValueError("a SHA-256 digest is 32 bytes (64 hex characters)")
    return value


def build_deposits(
    digests: Iterable[bytes | str], depositor: str, key: SecretKey, chain_id: str,
    category: str = DEFAULT_CATEGORY, case: str | None = None, batch_size: int = 1000,
    client_time: int | None = None,
) -> list[EntryRecord]:
    """Signed deposit batches of at most ``batch_size`` items, in digest order.

    ``client_time`` (ms since the epoch) defaults to now.  Rebuilding the same
    digests with the same time gives the same records and codes.
    """
    if not 1 <= batch_size <= 10_000:
        raise ValueError("batch_size must be between 1 and 10000")
    if client_time is None:
        client_time = int(time.time() * 1000)
    items = [DepositItem(_digest_bytes(d), None, category, case, {}, None) for d in digests]
    return [
        make_deposit(items[i : i + batch_size], depositor, client_time, key, chain_id)
        for i in range(0, len(items), batch_size)
    ]


def codes_of(record: EntryRecord, chain_id: str) -> list[DepositCode]:
    """The deposit code of every item of a deposit record, in item order."""
    if not isinstance(record.entry.body, Deposit):
        raise ValueError("only deposit records have deposit codes")
    return [record.entry.item_code(chain_id, i) for i in range(record.entry.body.item_count)]


def encode_deposit_request(records: Sequence[EntryRecord]) -> bytes:
    """The ``application/msgpack`` body of ``POST /v1/deposits``."""
    return encode([DEPOSIT_REQUEST_TAG, DEPOSIT_REQUEST_VERSION, [r.wire() for r in records]])


def _code_text(code: DepositCode | str) -> str:
    """Canonical printed form; a malformed code raises ``CodeError`` before any network use."""
    return str(code if isinstance(code, DepositCode) else parse_code(code))


# --------------------------------------------------------------------------- the client


class EvledgerClient:
    """A node's HTTP API (CONTRACT section 5) as method calls.  Thread-safe.

    ``key_file``: a path to a member key file, a loaded ``KeyFile``, a
    ``(name, SecretKey)`` pair, or ``None`` for anonymous use (public endpoints only).
    """

    def __init__(self, base_url: str, key_file: Any = None, chain_id: str | None = None, timeout: float = 10.0,
                 *, max_response_bytes: int = MAX_RESPONSE_BYTES):
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ValueError("base_url must look like http://host:port (got %r)" % base_url)
        self.base_url = base_url.rstrip("/")
        self._https = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._prefix = parts.path.rstrip("/")
        if not timeout > 0:
            raise ValueError("timeout must be positive")
        self.timeout = float(timeout)
        self.max_response_bytes = max_response_bytes
        self.name, self._key = _load_identity(key_file)
        self._full_views = self._key is not None  # False once a node refused this member the full record
        self._chain_id = chain_id
        self._lock = threading.Lock()
        self._local = threading.local()
        self._connections: set[http.client.HTTPConnection] = set()

    def __repr__(self) -> str:
        return "EvledgerClient(%r, name=%r)" % (self.base_url, self.name)

    def __enter__(self) -> "EvledgerClient":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close every connection this client opened (any thread)."""
        with self._lock:
            connections, self._connections = self._connections, set()
        for conn in connections:
            conn.close()

    @property
    def chain_id(self) -> str:
        """The chain signatures are bound to; fetched from ``/v1/status`` on first use."""
        if self._chain_id is None:
            chain_id = self.status().get("chain_id")
            if not isinstance(chain_id, str) or not chain_id:
                raise ApiError(200, "bad_response", "/v1/status did not name the chain")
            with self._lock:
                if self._chain_id is None:
                    self._chain_id = chain_id
        return self._chain_id

    # -- endpoints ------------------------------------------------------------------

    def status(self) -> dict:
        return self.request("GET", "/v1/status", signed=False)

    def deposit(self, records: Sequence[EntryRecord], *, busy_retries: int = 5) -> list[dict]:
        """Submit deposit records; one ``{"code", "digest", "state", "height"}`` per item, in order.

        Records are sent in as few requests as the limits allow (``MAX_REQUEST_ITEMS``
        items, ``MAX_REQUEST_BYTES`` bytes each).
        """
        results: list[dict] = []
        for chunk in _chunks(records):
            body = encode_deposit_request(chunk)
            answer = self.request("POST", "/v1/deposits", body=body, content_type=MSGPACK, signed=True,
                                  busy_retries=busy_retries)
            results.extend(self._check_deposit_answer(chunk, answer))
        return results

    def get_deposit(self, code: DepositCode | str) -> dict:
        """The deposit's record: the public view, or the full one if this client's member may see it.

        With a key, the request is signed, which asks for the full record; a member
        whose role may not see it (a depositor) is refused once, and from then on this
        client asks for the public view (unsigned: no nonce spent, nothing refused).
        """
        path = "/v1/deposits/" + quote(_code_text(code), safe="-")
        if not self._full_views:
            return self.request("GET", path, signed=False)
        try:
            return self.request("GET", path, signed=True)
        except ApiError as exc:
            if exc.status == 403 and exc.code == "not_permitted":
                self._full_views = False
                return self.request("GET", path, signed=False)
            raise

    def verify(self, code: DepositCode | str, digest: bytes | str) -> dict:
        """One-click retrieval: does ``digest`` match the deposit ``code``?"""
        doc = {"code": _code_text(code), "digest": _digest_bytes(digest).hex()}
        return self.request("POST", "/v1/verify", body=json.dumps(doc).encode(), content_type="application/json",
                            signed=False)

    def receipt(self, code: DepositCode | str) -> dict:
        return self.request("GET", "/v1/receipts/" + quote(_code_text(code), safe="-"), signed=False)

    def block(self, height: int) -> dict:
        if type(height) is not int or height < 0:
            raise ValueError("height must be a non-negative integer")
        return self.request("GET", "/v1/blocks/%d" % height, signed=None)

    def case_deposits(self, case: str) -> dict:
        """Every deposit filed under ``case`` (courts, procuratorates, arbitration, notaries)."""
        if not isinstance(case, str) or not case:
            raise ValueError("case must be a non-empty string")
        return self.request("GET", "/v1/cases/%s/deposits" % quote(case, safe=""), signed=True)

    def wait_committed(self, codes: Iterable[DepositCode | str], timeout: float = 60.0) -> dict[str, int]:
        """Wait until every code has a height; return ``{code: height}``.

        Asks for the public view (unsigned, so it costs no replay-cache quota) with
        ``wait_ms``: the node answers as soon as the code commits, or after at most
        half this client's socket timeout (and at most ``MAX_WAIT_S``, the API's bound).  Between rounds it backs off from 50 ms to
        1 s (a node that does not wait is polled that way).  A round stops at the
        first code still pending: deposits commit in order, so later ones are asked
        for once it has.  A code the node does not know yet (404) counts as pending.
        Raises :class:`CommitTimeout`.
        """
        pending = list(dict.fromkeys(_code_text(c) for c in codes))
        heights: dict[str, int] = {}
        deadline = time.monotonic() + timeout
        interval = 0.05
        while True:
            while pending:
                wait_ms = int(max(0.0, min(deadline - time.monotonic(), self.timeout / 2, MAX_WAIT_S)) * 1000)
                height = self._height_of(pending[0], wait_ms)
                if height is None:
                    break
                heights[pending.pop(0)] = height
                interval = 0.05
            if not pending:
                return heights
            left = deadline - time.monotonic()
            if left <= 0:
                raise CommitTimeout(pending, heights, timeout)
            time.sleep(min(interval, left))
            interval = min(interval * 2, 1.0)

    def _height_of(self, code: str, wait_ms: int = 0) -> int | None:
        path = "/v1/deposits/" + quote(code, safe="-") + ("?wait_ms=%d" % wait_ms if wait_ms else "")
        try:
            view = self.request("GET", path, signed=False)
        except ApiError as err:
            if err.status == 404:
                return None
            if err.status in (429, 503):  # rate limit, or too many waiting: wait as told, count the code as pending
                time.sleep(min(err.retry_after or 1.0, 5.0))
                return None
            raise
        height = view.get("height") if isinstance(view, dict) else None
        return height if type(height) is int else None

    def _check_deposit_answer(self, chunk: Sequence[EntryRecord], answer: Any) -> list[dict]:
        deposits = answer.get("deposits") if isinstance(answer, dict) else None
        expected = [code for record in chunk for code in codes_of(record, self.chain_id)]
        if not isinstance(deposits, list) or len(deposits) != len(expected) or not all(
                isinstance(d, dict) for d in deposits):
            raise ApiError(200, "bad_response", "the node's answer does not list one result per deposited item")
        for mine, theirs in zip(expected, deposits):
            try:
                same = isinstance(theirs.get("code"), str) and parse_code(theirs["code"]) == mine
            except ValueError:
                same = False
            if not same:
                raise ApiError(200, "bad_response", "the node returned deposit codes that differ from the ones "
                                                    "computed here (another chain?)")
        return deposits

    # -- HTTP -----------------------------------------------------------------------

    def request(self, method: str, path: str, *, body: bytes = b"", content_type: str | None = None,
                signed: bool | None = None, busy_retries: int = 0) -> Any:
        """One call: ``path`` relative to the base URL, already percent-encoded.

        ``signed``: True requires a key, False never signs, None signs when a key is
        set.  Returns the decoded JSON answer of a 2xx status; raises :class:`ApiError`
        or :class:`Unreachable`.
        """
        if signed and self._key is None:
            raise ValueError("%s %s needs a member key (key_file)" % (method, path))
        sign = self._key is not None and signed is not False
        target = self._prefix + path
        attempt = 0
        while True:
            status, headers, data = self._exchange(method, target, body, content_type, sign)
            if 200 <= status < 300:
                try:
                    return json.loads(data)
                except (ValueError, UnicodeDecodeError):
                    raise ApiError(status, "bad_response", "the node's answer is not JSON") from None
            err = _api_error(status, headers, data)
            if status not in _RETRY_STATUSES or attempt >= busy_retries:
                raise err
            time.sleep(min(err.retry_after if err.retry_after is not None else 0.5 * 2**attempt, 10.0))
            attempt += 1

    def _exchange(self, method: str, target: str, body: bytes, content_type: str | None,
                  sign: bool) -> tuple[int, http.client.HTTPMessage, bytes]:
        for attempt in (0, 1):
            headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
            if content_type:
                headers["Content-Type"] = content_type
            if sign:  # signed afresh on every attempt: each carries its own nonce
                assert self.name is not None and self._key is not None
                headers.update(sign_request(self._key, self.name, self.chain_id, method, target, body,
                                            int(time.time() * 1000)))
            conn, reused = self._connection()
            try:
                conn.request(method, target, body=body if body or method in ("POST", "PUT") else None,
                             headers=headers)
                response = conn.getresponse()
                data = self._read(response)
            except _STALE_CONNECTION as exc:
                self._drop_connection()
                if reused and attempt == 0:
                    continue  # the server closed an idle keep-alive connection
                raise Unreachable("cannot reach %s: %s" % (self.base_url, _describe(exc))) from None
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection()
                raise Unreachable("cannot reach %s: %s" % (self.base_url, _describe(exc, self.timeout))) from None
            if response.will_close:
                self._drop_connection()
            return response.status, response.headers, data
        raise AssertionError("unreachable")

    def _read(self, response: http.client.HTTPResponse) -> bytes:
        length = response.getheader("Content-Length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > self.max_response_bytes:
            self._drop_connection()
            raise ApiError(response.status, "response_too_large", "the answer exceeds %d bytes"
                           % self.max_response_bytes)
        data = response.read(self.max_response_bytes + 1)
        if len(data) > self.max_response_bytes:
            self._drop_connection()
            raise ApiError(response.status, "response_too_large", "the answer exceeds %d bytes"
                           % self.max_response_bytes)
        return data

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it has carried a request before."""
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            return conn, True
        if self._https:
            conn = http.client.HTTPSConnection(self._host, self._port, timeout=self.timeout,
                                               context=ssl.create_default_context())
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        self._local.conn = conn
        with self._lock:
            self._connections.add(conn)
        return conn, False

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            self._local.conn = None
            with self._lock:
                self._connections.discard(conn)
            conn.close()


def _load_identity(key_file: Any) -> tuple[str | None, SecretKey | None]:
    if key_file is None:
        return None, None
    if isinstance(key_file, KeyFile):
        return key_file.name, key_file.key
    if isinstance(key_file, tuple) and len(key_file) == 2 and isinstance(key_file[1], SecretKey):
        return str(key_file[0]), key_file[1]
    if isinstance(key_file, (str, os.PathLike)):
        loaded = load_key_file(key_file)
        return loaded.name, loaded.key
    raise TypeError("key_file must be a path, a KeyFile, a (name, SecretKey) pair or None")


def _chunks(records: Sequence[EntryRecord]) -> Iterable[list[EntryRecord]]:
    chunk: list[EntryRecord] = []
    items = size = 0
    for record in records:
        if not isinstance(record, EntryRecord) or not isinstance(record.entry.body, Deposit):
            raise TypeError("deposit() takes deposit EntryRecords (see build_deposits)")
        n, b = len(record.items), len(record.encode())
        if chunk and (items + n > MAX_REQUEST_ITEMS or size + b > MAX_REQUEST_BYTES - 64):
            yield chunk
            chunk, items, size = [], 0, 0
        chunk.append(record)
        items += n
        size += b
    if chunk:
        yield chunk


def _api_error(status: int, headers: http.client.HTTPMessage, data: bytes) -> ApiError:
    retry_after = None
    value = headers.get("Retry-After")
    if value is not None and value.strip().isascii() and value.strip().isdigit():
        retry_after = float(value.strip())
    try:
        error = json.loads(data)["error"]
        code, message = error["code"], error["message"]
        if isinstance(code, str) and isinstance(message, str):
            return ApiError(status, code, message, retry_after=retry_after)
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        pass
    return ApiError(status, "http_%d" % status, "HTTP %d without the contracted error body" % status,
                    retry_after=retry_after)


def _describe(exc: BaseException, timeout: float | None = None) -> str:
    if isinstance(exc, TimeoutError):
        return "no answer within %g s" % timeout if timeout else "timed out"
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused"
    if isinstance(exc, http.client.RemoteDisconnected):
        return "the connection was closed without an answer"
    return (str(exc) or type(exc).__name__)[:200]
