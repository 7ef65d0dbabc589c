"""runtime/http_api.py: requests aiohttp cannot parse, over a raw socket to a real server.

Such requests never reach the app's middleware: aiohttp answers them from its
connection handler.  ``Api.runner()`` makes that answer the contract's JSON error
(CONTRACT section 5, ``docs/api.md``: ``400 malformed_http``); the logger the app
hands aiohttp keeps the request's bytes and aiohttp's traceback out of the log and
counts the request in ``evledger_rejected_inputs_total``, with either runner.
Also: bodies aiohttp cannot decode, a client leaving mid-body, and ``POST
/v1/deposits`` refusing an unsigned request before reading its body.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import logging

import pytest
from aiohttp import web
from aiohttp.http_exceptions import BadHttpMessage, BadStatusLine, InvalidHeader, InvalidURLError, LineTooLong

from ledger.crypto import SecretKey
from runtime.auth import RequestVerifier
from runtime.http_api import MALFORMED_HTTP, Api, _malformed, _ServerLog
from runtime.metrics import Registry

SECRET = b"SECRET-4711"  # in every malformed request: it must reach neither the log nor the answer
MAX_BODY = 64 * 1024
DEADLINE_S = 5.0


class _Service:
    """Just enough of the node for the routes these tests call."""

    chain_id = "test-chain"

    def __init__(self):
        self.registry = Registry()
        key = SecretKey.generate()
        self.verifier = RequestVerifier(self.chain_id, {"shop-a": (key.public, {"depositor"})})
        self.submitted: list[bytes] = []

    def status(self) -> dict:
        return {"node": "n1", "height": 0}

    def now_ms(self) -> int:
        return 1_700_000_000_000

    def submit_deposits(self, body: bytes, content_type: str, caller: str) -> tuple[int, dict]:
        self.submitted.append(body)
        return 202, {"deposits": []}


@contextlib.asynccontextmanager
async def serving(api: Api, *, plain: bool = False):
    """The API on 127.0.0.1 and a free port; ``plain``: aiohttp's own runner (node.py before it used runner())."""
    runner = web.AppRunner(api.app(), access_log=None) if plain else api.runner(access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield site.port
    finally:
        await runner.cleanup()


async def exchange(port: int, data: bytes) -> bytes:
    """Send ``data`` on a fresh connection, then read until the server closes it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), DEADLINE_S)
    finally:
        writer.close()


async def read_answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response, without waiting for the server to close the connection."""
    status, headers, _ = parse(await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), DEADLINE_S))
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), DEADLINE_S)
    return status, headers, body


async def one_answer(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send ``data`` (typically headers and part of a declared body) and read one answer
    without waiting for the server to close: the node must answer before the rest comes."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await read_answer(reader)
    finally:
        writer.close()
        await writer.wait_closed()


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return int(lines[0].split()[1]), {k.lower(): v for k, v in headers.items()}, body


async def status_ok(port: int) -> None:
    raw = await exchange(port, b"GET /v1/status HTTP/1.1\r\nHost: n1\r\nConnection: close\r\n\r\n")
    status, _, body = parse(raw)
    assert status == 200 and json.loads(body)["node"] == "n1"


def assert_log_clean(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert not record.exc_info and not record.exc_text, record.getMessage()
        assert SECRET.decode() not in record.getMessage()
    assert "Traceback" not in caplog.text and SECRET.decode() not in caplog.text


MALFORMED = {
    "header over 8 KiB": b"GET /v1/status HTTP/1.1\r\nHost: n1\r\nX-Big: " + SECRET + b"a" * 9000 + b"\r\n\r\n",
    "header line without a colon": b"GET /v1/status HTTP/1.1\r\nHost: n1\r\n" + SECRET + b"\r\n\r\n",
    "Content-Length not a number": b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Length: abc" + SECRET
                                   + b"\r\n\r\n",
    "garbage request line": SECRET + b" \x01\x02 garbage\r\n\r\n",
    "TLS hello on the HTTP port": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + SECRET + b"\r\n\r\n",
    "bad HTTP version": b"GET /v1/status HTTP/9" + SECRET + b"\r\nHost: n1\r\n\r\n",
    "request line over 8 KiB": b"GET /" + SECRET + b"a" * 9000 + b" HTTP/1.1\r\nHost: n1\r\n\r\n",
    "too many headers": b"GET /v1/status HTTP/1.1\r\nHost: n1\r\n"
                        + b"".join(b"X-%d: %s\r\n" % (i, SECRET) for i in range(200)) + b"\r\n",
    "chunk size not hex": b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nTransfer-Encoding: chunked\r\n\r\n"
                          + SECRET + b"\r\n{}\r\n0\r\n\r\n",
    "Content-Length with Transfer-Encoding": b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Length: 2\r\n"
                                             b"Transfer-Encoding: chunked\r\nX-S: " + SECRET + b"\r\n\r\n{}",
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_a_request_aiohttp_cannot_parse_gets_the_json_error_and_leaves_no_trace_in_the_log(name, caplog):
    caplog.set_level(logging.DEBUG)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            raw = await exchange(port, MALFORMED[name])
            await status_ok(port)  # the node still serves
        return raw

    status, headers, body = parse(asyncio.run(scenario()))
    assert status == 400
    assert headers["content-type"].startswith("application/json")
    error = json.loads(body)["error"]
    assert error["code"] == MALFORMED_HTTP and error["message"]
    assert SECRET not in body
    assert api.rejected.get(MALFORMED_HTTP) == 1
    assert_log_clean(caplog)
    (line,) = [r for r in caplog.records if r.name == "evledger.http"]
    assert line.levelno == logging.WARNING and line.getMessage().startswith("refused a malformed HTTP request (")


def test_with_aiohttps_own_runner_the_log_is_still_clean_and_the_request_counted(caplog):
    """node.py before it used ``Api.runner()``: aiohttp's plain-text answer, but the app's logger."""
    caplog.set_level(logging.DEBUG)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api, plain=True) as port:
            answers = [await exchange(port, MALFORMED[name]) for name in sorted(MALFORMED)]
            await status_ok(port)
        return answers

    assert all(parse(raw)[0] == 400 for raw in asyncio.run(scenario()))
    assert api.rejected.get(MALFORMED_HTTP) == len(MALFORMED)
    assert_log_clean(caplog)


def test_one_log_line_per_window_however_many_malformed_requests(caplog):
    caplog.set_level(logging.DEBUG)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            for _ in range(5):
                await exchange(port, MALFORMED["header line without a colon"])

    asyncio.run(scenario())
    assert api.rejected.get(MALFORMED_HTTP) == 5
    assert len([r for r in caplog.records if r.name == "evledger.http"]) == 1


def test_a_malformed_request_after_a_good_one_on_the_same_connection():
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET /v1/status HTTP/1.1\r\nHost: n1\r\n\r\n")
            first = await read_answer(reader)
            writer.write(MALFORMED["header line without a colon"])
            second = await read_answer(reader)
            closed = await asyncio.wait_for(reader.read(), DEADLINE_S)
            writer.close()
            return first, second, closed

    first, second, closed = asyncio.run(scenario())
    assert first[0] == 200
    assert second[0] == 400 and json.loads(second[2])["error"]["code"] == MALFORMED_HTTP
    assert closed == b""  # the server closed the connection: it cannot tell where a next request would start


def test_a_body_aiohttp_cannot_decode_is_400_malformed_http_not_500(caplog):
    caplog.set_level(logging.DEBUG)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)
    body = b"not gzip " + SECRET

    async def scenario():
        async with serving(api) as port:
            raw = await exchange(port, b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Encoding: gzip\r\n"
                                 b"Connection: close\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await status_ok(port)
        return raw

    status, _, answer = parse(asyncio.run(scenario()))
    assert status == 400 and json.loads(answer)["error"]["code"] == MALFORMED_HTTP
    assert api.rejected.get(MALFORMED_HTTP) == 1 and api.rejected.get("internal_error") == 0
    assert_log_clean(caplog)


def test_a_good_gzip_body_is_still_read():
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)
    body = gzip.compress(b'{"code": "x"}')

    async def scenario():
        async with serving(api) as port:
            return await exchange(port, b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Encoding: gzip\r\n"
                                  b"Content-Type: application/json\r\nConnection: close\r\n"
                                  b"Content-Length: %d\r\n\r\n%s" % (len(body), body))

    status, _, answer = parse(asyncio.run(scenario()))
    assert status == 400 and json.loads(answer)["error"]["code"] == "malformed_code"  # the body was decoded


def test_a_client_leaving_mid_body_is_counted_not_logged_as_an_internal_error(caplog):
    caplog.set_level(logging.DEBUG)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Length: 100\r\n\r\n{" + SECRET)
            await writer.drain()
            writer.close()
            loop = asyncio.get_running_loop()
            deadline = loop.time() + DEADLINE_S
            while api.rejected.get(MALFORMED_HTTP) == 0 and loop.time() < deadline:
                await asyncio.sleep(0.01)
            await status_ok(port)

    asyncio.run(scenario())
    assert api.rejected.get(MALFORMED_HTTP) == 1 and api.rejected.get("internal_error") == 0
    assert_log_clean(caplog)


def test_an_unsigned_deposit_is_refused_before_its_body_is_read():
    service = _Service()
    api = Api(service, public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:  # most of the declared body is never sent
            return await one_answer(port, b"POST /v1/deposits HTTP/1.1\r\nHost: n1\r\nContent-Type: application/msgpack"
                                    b"\r\nX-Evledger-Client: shop-a\r\nContent-Length: %d\r\n\r\n" % MAX_BODY
                                    + b"x" * 1024)

    status, _, body = asyncio.run(scenario())
    assert status == 401 and json.loads(body)["error"]["code"] == "unsigned"
    assert "X-Evledger-Signature" in json.loads(body)["error"]["message"]
    assert service.submitted == [] and api.rejected.get("unsigned") == 1


def test_a_declared_oversize_body_is_still_413_before_the_signature_headers():
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            return await one_answer(port, b"POST /v1/deposits HTTP/1.1\r\nHost: n1\r\nContent-Length: %d\r\n\r\n"
                                    % (MAX_BODY + 1))

    status, _, body = asyncio.run(scenario())
    assert status == 413 and json.loads(body)["error"]["code"] == "too_large"


def test_a_signed_deposit_is_still_read_in_full_before_it_is_verified():
    """All four headers present: the body is read and the signature checked over it (here: a bad one)."""
    service = _Service()
    api = Api(service, public_rate_per_s=1000, max_body_bytes=MAX_BODY)
    headers = {"X-Evledger-Client": "shop-a", "X-Evledger-Time": str(service.now_ms()),
               "X-Evledger-Nonce": "00" * 16, "X-Evledger-Signature": "00" * 64}
    head = "".join("%s: %s\r\n" % item for item in headers.items()).encode()

    async def scenario():
        async with serving(api) as port:
            return await exchange(port, b"POST /v1/deposits HTTP/1.1\r\nHost: n1\r\nConnection: close\r\n" + head
                                  + b"Content-Length: 3\r\n\r\nabc")

    status, _, body = parse(asyncio.run(scenario()))
    assert status == 401 and json.loads(body)["error"]["code"] == "bad_signature"


@pytest.mark.parametrize("exc", [
    LineTooLong(SECRET + b"...", 8190), InvalidHeader(SECRET), InvalidURLError("/" + SECRET.decode()),
    BadStatusLine(SECRET.decode()), BadHttpMessage("Invalid header token:\n\n  b'%s'\n  ^" % SECRET.decode()),
    BadHttpMessage("Invalid HTTP header: %r" % SECRET), BadHttpMessage("%s" % SECRET.decode() + "/x"),
])
def test_messages_name_the_fault_without_the_requests_bytes(exc):
    """Both parsers' messages quote the request (the C one after the reason, the Python one anywhere)."""
    message = _malformed(exc)
    assert message and SECRET.decode() not in message


def test_other_aiohttp_log_calls_pass_through_unchanged(caplog):
    faults = []
    server_log = _ServerLog(faults.append)
    with caplog.at_level(logging.DEBUG, logger="aiohttp.server"):
        server_log.exception("Error handling request from %s", "127.0.0.1", exc_info=ValueError("a bug"))
        server_log.exception("Error handling request from %s", "127.0.0.1", exc_info=InvalidHeader(SECRET))
    assert faults and isinstance(faults[0], InvalidHeader)
    (record,) = caplog.records
    assert record.name == "aiohttp.server" and record.exc_info[0] is ValueError


@pytest.mark.parametrize("trusted, forwarded, expected", [
    (frozenset(), "198.51.100.7", 200),  # no proxy configured: the loopback peer is the client
    (frozenset({"127.0.0.1"}), "198.51.100.7", 401),  # a proxy names an outside client: it must sign
    (frozenset({"127.0.0.1"}), None, 401),  # a trusted proxy naming nobody is never loopback
    (frozenset({"127.0.0.1"}), "127.0.0.2", 200),  # a client on the host itself, through the proxy
])
def test_metrics_behind_a_trusted_proxy_answer_loopback_clients_only(trusted, forwarded, expected):
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY, trusted_proxies=trusted)

    async def scenario():
        async with serving(api) as port:
            header = b"" if forwarded is None else b"X-Forwarded-For: " + forwarded.encode() + b"\r\n"
            raw = await exchange(port, b"GET /metrics HTTP/1.1\r\nHost: n1\r\n" + header + b"Connection: close\r\n\r\n")
            return parse(raw)

    status, _, body = asyncio.run(scenario())
    assert status == expected, body
    if expected == 401:
        assert json.loads(body)["error"]["code"] == "unsigned"


def test_each_client_behind_a_trusted_proxy_has_its_own_rate_limit():
    api = Api(_Service(), public_rate_per_s=0.001, max_body_bytes=MAX_BODY, trusted_proxies=frozenset({"127.0.0.1"}))

    async def get(client: str) -> int:
        raw = await exchange(port_box[0], b"GET /v1/status HTTP/1.1\r\nHost: n1\r\nX-Forwarded-For: "
                             + client.encode() + b"\r\nConnection: close\r\n\r\n")
        return parse(raw)[0]

    port_box: list[int] = []

    async def scenario():
        async with serving(api) as port:
            port_box.append(port)
            first = [await get("198.51.100.7") for _ in range(120)]  # the burst is 100
            return first, await get("198.51.100.8")

    first, other = asyncio.run(scenario())
    assert first.count(200) == 100 and first[-1] == 429
    assert other == 200  # another client behind the same proxy is not held back


def test_a_body_that_does_not_arrive_in_time_is_408_and_frees_the_handler(monkeypatch):
    from runtime import http_api

    monkeypatch.setattr(http_api, "BODY_TIMEOUT_S", 0.3)
    api = Api(_Service(), public_rate_per_s=1000, max_body_bytes=MAX_BODY)

    async def scenario():
        async with serving(api) as port:
            answer = await one_answer(port, b'POST /v1/verify HTTP/1.1\r\nHost: n1\r\nContent-Type: application/json'
                                      b'\r\nContent-Length: 100\r\n\r\n{"code"')  # 7 of 100 bytes, then nothing
            await status_ok(port)
            return answer

    status, headers, body = asyncio.run(scenario())
    assert status == 408 and json.loads(body)["error"]["code"] == "request_timeout"


@pytest.mark.parametrize("client, time_ms, code", [("shop-a", 1_000, "stale_request"),
                                                   ("stranger", None, "unknown_client")])
def test_a_stale_or_unknown_deposit_request_is_refused_before_its_body_is_read(client, time_ms, code):
    service = _Service()
    api = Api(service, public_rate_per_s=1000, max_body_bytes=MAX_BODY)
    at = service.now_ms() if time_ms is None else time_ms

    async def scenario():
        async with serving(api) as port:  # the rest of the declared body never comes
            return await one_answer(port, b"POST /v1/deposits HTTP/1.1\r\nHost: n1\r\nContent-Type: application/msgpack"
                                    b"\r\nX-Evledger-Client: %s\r\nX-Evledger-Time: %d\r\nX-Evledger-Nonce: %s\r\n"
                                    b"X-Evledger-Signature: %s\r\nContent-Length: %d\r\n\r\n"
                                    % (client.encode(), at, b"0" * 32, b"0" * 128, MAX_BODY) + b"x" * 1024)

    status, _, body = asyncio.run(scenario())
    assert status == 401 and json.loads(body)["error"]["code"] == code
    assert service.submitted == []
