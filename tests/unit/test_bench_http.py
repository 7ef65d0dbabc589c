"""The benchmark's lean HTTP client and its request bodies (runtime.bench_http, runtime.bench_load)."""

import asyncio
import os

import pytest
from aiohttp import web

from ledger.codec import decode, encode
from runtime.bench_http import Client, HttpError, parse_head
from runtime.bench_load import _BodyMaker, _Identity
from services.client import build_deposits, encode_deposit_request


def test_parse_head_reads_status_and_lowercases_names():
    status, headers = parse_head(b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: 3\r\nContent-Length: 0")
    assert status == 429
    assert headers == {"retry-after": "3", "content-length": "0"}


@pytest.mark.parametrize("head", [b"SPDY/3 200 OK", b"HTTP/1.1 abc OK", b"HTTP/1.1 200 OK\r\nno colon here"])
def test_parse_head_refuses_what_is_not_http(head):
    with pytest.raises(HttpError):
        parse_head(head)


async def _server(handler):
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    return runner, "http://127.0.0.1:%d" % port


def test_requests_reuse_one_connection_and_carry_bodies_and_headers():
    seen = []

    async def handler(request):
        seen.append((request.method, request.path, await request.read(), request.headers.get("X-Test"),
                     request.transport.get_extra_info("peername")))
        return web.json_response({"n": len(seen)}, status=202, headers={"Retry-After": "2"})

    async def main():
        runner, base = await _server(handler)
        client = Client(timeout_s=5)
        try:
            first = await client.call("POST", base, "/v1/deposits", b"\x93abc", {"X-Test": "yes"})
            second = await client.call("GET", base, "/v1/status")
        finally:
            await client.close()
            await runner.cleanup()
        return first, second

    first, second = asyncio.run(main())
    assert (first.status, first.headers["retry-after"], first.body) == (202, "2", b'{"n": 1}')
    assert second.body == b'{"n": 2}'
    assert seen[0][:4] == ("POST", "/v1/deposits", b"\x93abc", "yes")
    assert seen[1][:3] == ("GET", "/v1/status", b"")
    assert seen[0][4] == seen[1][4]  # the same client port: the connection was kept alive


def test_a_closed_connection_is_an_error_and_the_next_call_reconnects():
    calls = []

    async def handler(request):
        calls.append(request.path)
        if request.path == "/drop":
            request.transport.close()
            await asyncio.sleep(0.05)
        return web.Response(text="ok")

    async def main():
        runner, base = await _server(handler)
        client = Client(timeout_s=5)
        try:
            with pytest.raises(HttpError):
                await client.call("GET", base, "/drop")
            return (await client.call("GET", base, "/fine")).body
        finally:
            await client.close()
            await runner.cleanup()

    assert asyncio.run(main()) == b"ok"
    assert calls == ["/drop", "/fine"]


def test_no_server_is_an_http_error():
    async def main():
        client = Client(timeout_s=2)
        with pytest.raises(HttpError, match="cannot connect"):
            await client.call("GET", "http://127.0.0.1:9", "/")

    asyncio.run(main())


def test_bodies_are_canonical_and_equal_to_the_client_library_s():
    who = _Identity("bank", os.urandom(32).hex())
    maker = _BodyMaker(5, lists=2)
    single = maker.single(who, "chain-x")
    doc = decode(single)
    assert encode(doc) == single
    deposit, digest = doc[2][0][2][2], doc[2][0][3][0][2]
    expected = encode_deposit_request(build_deposits([digest.hex()], "bank", who.key, "chain-x", category="general",
                                                     batch_size=1, client_time=deposit[3]))
    assert single == expected
    batch = decode(maker.batch(who, "chain-x"))
    assert batch[2][0][2][2][4] == 5 and len(batch[2][0][3]) == 5
    assert maker.batch(who, "chain-x") != maker.batch(who, "chain-x")  # fresh signature and time each


@pytest.mark.parametrize("reply, message", [
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", "chunked"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 999999999999\r\n\r\n", "Content-Length"),
    (b"HTTP/1.1 200 OK\r\n" + b"X-Pad: " + b"a" * 70_000, "head over"),
    (b"garbage\r\n\r\n", "status line"),
])
def test_answers_the_client_cannot_read_are_errors_naming_why(reply, message):
    async def handle(reader, writer):
        await reader.readuntil(b"\r\n\r\n")
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        client = Client(timeout_s=5)
        try:
            with pytest.raises(HttpError, match=message):
                await client.call("GET", "http://127.0.0.1:%d" % port, "/v1/status")
        finally:
            await client.close()
            server.close()
            await server.wait_closed()

    asyncio.run(main())
