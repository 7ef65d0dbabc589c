"""A lean HTTP/1.1 client for the benchmark's load process.

The load process shares the machine's two cores with the four nodes it measures;
aiohttp's client spent about 0.3 ms of CPU on each request, more than the node
that received it spent parsing it, and so took CPU from the thing being measured.
This client keeps one request in flight per connection, keeps connections alive
in a pool per node, and reads only what the benchmark needs (status,
``Retry-After``, a ``Content-Length`` body).  It is for ``evledger bench`` only:
the services use ``services.client``, which uses aiohttp.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024


class HttpError(Exception):
    """The connection failed or the server's answer was not HTTP/1.1 we can read."""


class Response:
    __slots__ = ("status", "headers", "body")

    def __init__(self, status: int, headers: dict[str, str], body: bytes):
        self.status, self.headers, self.body = status, headers, body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and headers (names lower-cased) of a response head without its final CRLFCRLF."""
    lines = head.split(b"\r\n")
    parts = lines[0].split(b" ", 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise HttpError("not an HTTP/1.x status line: %r" % lines[0][:80])
    headers = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise HttpError("malformed header line: %r" % line[:80])
        headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
    return int(parts[1]), headers


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self):
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future | None = None
        self.head: tuple[int, dict[str, str]] | None = None
        self.length = 0
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(HttpError("connection closed: %s" % (exc or "by the server")))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        try:
            self._advance()
        except HttpError as exc:
            if self.waiter is not None and not self.waiter.done():
                self.waiter.set_exception(exc)
            self.transport.close()

    def _advance(self) -> None:
        if self.waiter is None or self.waiter.done():
            if self.buffer:
                raise HttpError("data from the server with no request outstanding")
            return
        if self.head is None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD_BYTES:
                    raise HttpError("response head over %d bytes" % MAX_HEAD_BYTES)
                return
            status, headers = parse_head(bytes(self.buffer[:end]))
            if "chunked" in headers.get("transfer-encoding", ""):
                raise HttpError("chunked responses are not supported by the benchmark client")
            length = headers.get("content-length", "0")
            if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY_BYTES:
                raise HttpError("unusable Content-Length %r" % length)
            self.head, self.length = (status, headers), int(length)
            self.keep_alive = headers.get("connection", "").lower() != "close"
            del self.buffer[:end + 4]
        if len(self.buffer) >= self.length:
            body = bytes(self.buffer[:self.length])
            del self.buffer[:self.length]
            status, headers = self.head
            self.head = None
            self.waiter.set_result(Response(status, headers, body))

    async def request(self, data: bytes) -> Response:
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        try:
            return await self.waiter
        finally:
            self.waiter = None


class Client:
    """Keep-alive connections to any number of ``http://host:port`` bases."""

    def __init__(self, timeout_s: float = 60.0):
        self.timeout_s = timeout_s
        self.idle: dict[str, list[_Connection]] = {}
        self.all: set[_Connection] = set()

    async def _connect(self, base: str) -> _Connection:
        url = urlsplit(base)
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(_Connection, url.hostname, url.port or 80), self.timeout_s)
        except (OSError, asyncio.TimeoutError) as exc:
            raise HttpError("cannot connect to %s: %s" % (base, exc)) from None
        self.all.add(conn)
        return conn

    async def call(self, method: str, base: str, path: str, body: bytes = b"",
                   headers: dict[str, str] | None = None) -> Response:
        """One request; raises ``HttpError`` when no answer could be read."""
        idle = self.idle.setdefault(base, [])
        conn = None
        while idle:
            candidate = idle.pop()
            if not candidate.closed:
                conn = candidate
                break
            self.all.discard(candidate)
        if conn is None:
            conn = await self._connect(base)
        host = base.split("://", 1)[-1]
        lines = ["%s %s HTTP/1.1" % (method, path), "Host: " + host, "Content-Length: %d" % len(body)]
        lines.extend("%s: %s" % kv for kv in (headers or {}).items())
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
        try:
            response = await asyncio.wait_for(conn.request(data), self.timeout_s)
        except asyncio.TimeoutError:
            conn.transport.close()
            self.all.discard(conn)
            raise HttpError("no answer from %s%s within %.0f s" % (base, path, self.timeout_s)) from None
        except HttpError:
            self.all.discard(conn)
            raise
        if conn.keep_alive and not conn.closed:
            idle.append(conn)
        else:
            conn.transport.close()
            self.all.discard(conn)
        return response

    async def close(self) -> None:
        for conn in self.all:
            if conn.transport is not None:
                conn.transport.close()
        self.all.clear()
        self.idle.clear()
        await asyncio.sleep(0)
