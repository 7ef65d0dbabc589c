"""The client SDK against a tiny aiohttp node stand-in on 127.0.0.1 that checks real signatures."""

from __future__ import annotations

import asyncio
import hashlib
import http.client
import json
import socket
import threading
import time

import pytest
from aiohttp import web

from ledger.codec import Fields, decode
from ledger.codes import parse_code
from ledger.crypto import SecretKey, write_key_file
from ledger.errors import CodeError, DecodeError
from ledger.model import EntryRecord
from runtime.auth import AuthError, RequestVerifier
from services.client import (
    MSGPACK, ApiError, CommitTimeout, EvledgerClient, Unreachable, build_deposits, codes_of, encode_deposit_request,
    hash_file,
)

CHAIN = "test-chain"
SHOP = SecretKey(b"\x11" * 32)
COURT = SecretKey(b"\x12" * 32)
MEMBERS = {"shop-a": (SHOP.public, ["depositor"]), "court-a": (COURT.public, ["court"])}


def now_ms() -> int:
    return int(time.time() * 1000)


class FakeNode:
    """Just enough of CONTRACT section 5 to exercise the client; state lives on the loop thread."""

    def __init__(self):
        self.verifier = RequestVerifier(CHAIN, MEMBERS)
        self.deposits: dict[str, dict] = {}
        self.polls: dict[str, int] = {}
        self.waits: list[str | None] = []  # the wait_ms of every deposit lookup
        self.busy = 0  # answer this many deposit requests with 503 first
        self.limited = 0  # answer this many deposit lookups with 429 first
        self.peers: list = []
        self.seen: list[tuple[str, dict]] = []
        self.closed = threading.Event()
        self.release = threading.Event()

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/v1/status", self.status)
        app.router.add_post("/v1/deposits", self.post_deposits)
        app.router.add_get("/v1/deposits/{code}", self.get_deposit)
        app.router.add_post("/v1/verify", self.verify)
        app.router.add_get("/v1/cases/{case}/deposits", self.case)
        app.router.add_get("/v1/blocks/{height}", self.block)
        app.router.add_get("/v1/broken", self.broken)
        app.router.add_get("/v1/slow", self.slow)
        app.router.add_get("/v1/hang-up", self.hang_up)
        return app

    def auth(self, request: web.Request, body: bytes, roles):
        self.seen.append((request.raw_path, dict(request.headers)))
        return self.verifier.verify(request.method, request.raw_path, body, request.headers, now_ms(), roles)

    @staticmethod
    def error(status: int, code: str, message: str, **headers) -> web.Response:
        return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)

    async def status(self, request):
        return web.json_response({"node": "node-1", "role": "validator", "chain_id": CHAIN, "height": 3, "view": 0,
                                  "primary": "node-1", "last_block_hash": "00" * 32})

    async def post_deposits(self, request):
        body = await request.read()
        try:
            caller = self.auth(request, body, ("depositor",))
        except AuthError as err:
            return self.error(err.status, err.code, err.message)
        if self.busy:
            self.busy -= 1
            return self.error(503, "busy", "pool full", **{"Retry-After": "0"})
        if request.content_type != MSGPACK:
            return self.error(415, "unsupported_media_type", "send application/msgpack")
        try:
            fields = Fields("deposit_request", decode(body), 3)
            fields.header("deposit-request", 1)
            records = [EntryRecord.from_wire(r) for r in fields.list("records", 1000)]
        except DecodeError as err:
            return self.error(400, "malformed_request", str(err))
        out = []
        for record in records:
            if record.entry.signer != caller.name:
                return self.error(403, "not_permitted", "records must be signed by the caller")
            record.entry.verify(MEMBERS[caller.name][0], CHAIN)
            for item, code in zip(record.items, codes_of(record, CHAIN)):
                view = {"code": str(code), "digest": item.digest.hex(), "category": item.category,
                        "deposited_at": None, "height": None, "depositor": caller.name}
                self.deposits.setdefault(str(code), view)
                out.append({"code": str(code), "digest": item.digest.hex(), "state": "pending", "height": None})
        return web.json_response({"deposits": out}, status=202)

    async def get_deposit(self, request):
        try:
            code = str(parse_code(request.match_info["code"]))
        except CodeError as err:
            return self.error(400, "malformed_code", str(err))
        self.waits.append(request.query.get("wait_ms"))
        if "X-Evledger-Signature" in request.headers:  # asks for the full record: callers only
            try:
                self.auth(request, b"", ("court", "procuratorate", "arbitration", "notary"))
            except AuthError as err:
                return self.error(err.status, err.code, err.message)
        if self.limited:
            self.limited -= 1
            response = self.error(429, "rate_limited", "too many requests from this address")
            response.headers["Retry-After"] = "1"
            return response
        if code not in self.deposits:
            return self.error(404, "not_found", "no such deposit")
        view = self.deposits[code]
        self.polls[code] = self.polls.get(code, 0) + 1
        if self.polls[code] >= 3:  # "commits" on the third look
            view.update(height=7, deposited_at=1_700_000_000_000)
        return web.json_response(view)

    async def verify(self, request):
        doc = await request.json()
        view = self.deposits.get(doc["code"])
        if view is None:
            return self.error(404, "not_found", "no such deposit")
        return web.json_response({"match": view["digest"] == doc["digest"], "code": doc["code"],
                                  "height": view["height"]})

    async def case(self, request):
        body = await request.read()
        try:
            caller = self.auth(request, body, ("court", "procuratorate", "arbitration", "notary"))
        except AuthError as err:
            return self.error(err.status, err.code, err.message)
        return web.json_response({"case": request.match_info["case"], "caller": caller.name, "deposits": []})

    async def block(self, request):
        return self.error(404, "not_found", "no block at height %s" % request.match_info["height"])

    async def broken(self, request):
        return web.Response(status=502, text="<html>Bad gateway</html>", content_type="text/html")

    async def slow(self, request):
        for _ in range(100):  # until the test has seen its timeout (at most 5 s)
            if self.release.is_set():
                break
            await asyncio.sleep(0.05)
        return web.json_response({})

    async def hang_up(self, request):
        # Answer, then close the connection the way an idle keep-alive timeout does.
        asyncio.get_running_loop().call_later(0.01, self._close, request.transport)
        return web.json_response({"ok": True})

    def _close(self, transport):
        transport.close()
        self.closed.set()


@pytest.fixture(scope="module")
def node():
    fake = FakeNode()
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    box: dict = {}

    async def start():
        runner = web.AppRunner(fake.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        box["runner"] = runner
        box["url"] = "http://127.0.0.1:%d" % runner.addresses[0][1]

    def run():
        asyncio.set_event_loop(loop)
        loop.run_until_complete(start())
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ready.wait(10), "test server did not start"
    fake.url = box["url"]
    yield fake
    asyncio.run_coroutine_threadsafe(box["runner"].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def shop(node, **kw) -> EvledgerClient:
    return EvledgerClient(node.url, ("shop-a", SHOP), **kw)


def test_status_and_lazy_chain_id(node):
    with EvledgerClient(node.url) as client:
        assert client.status()["node"] == "node-1"
        assert client.chain_id == CHAIN


def test_deposit_round_trip_and_wait(node):
    digests = [hashlib.sha256(b"evidence %d" % i).digest() for i in range(5)]
    records = build_deposits(digests, "shop-a", SHOP, CHAIN, batch_size=2, client_time=now_ms())
    assert [len(r.items) for r in records] == [2, 2, 1]
    codes = [c for r in records for c in codes_of(r, CHAIN)]
    with shop(node) as client:
        results = client.deposit(records)
        assert [r["code"] for r in results] == [str(c) for c in codes]
        assert [r["digest"] for r in results] == [d.hex() for d in digests]
        assert {r["state"] for r in results} == {"pending"}
        # A resubmission is idempotent: same codes (and a fresh nonce, so no replay refusal).
        assert [r["code"] for r in client.deposit(records)] == [str(c) for c in codes]
        heights = client.wait_committed(codes, timeout=10)
        assert heights == {str(c): 7 for c in codes}
        view = client.get_deposit(str(codes[0]).lower().replace("-", " "))  # typed sloppily
        assert view["height"] == 7 and view["depositor"] == "shop-a"
        assert client.verify(codes[1], digests[1])["match"] is True
        assert client.verify(codes[1], digests[0].hex())["match"] is False


def test_deposit_from_a_key_file(node, tmp_path):
    path = tmp_path / "shop-a.key"
    write_key_file(path, "shop-a", SHOP)
    records = build_deposits([b"\x05" * 32], "shop-a", SHOP, CHAIN)
    with EvledgerClient(node.url, str(path), chain_id=CHAIN) as client:
        assert client.name == "shop-a"
        assert client.deposit(records)[0]["code"] == str(codes_of(records[0], CHAIN)[0])


def test_the_wire_format_of_a_deposit_request():
    records = build_deposits(["ab" * 32], "shop-a", SHOP, CHAIN, client_time=1_700_000_000_000)
    body = encode_deposit_request(records)
    assert decode(body) == ["deposit-request", 1, [records[0].wire()]]


def test_error_bodies_become_api_errors(node):
    with shop(node) as client:
        with pytest.raises(ApiError) as info:
            client.block(99)
        assert (info.value.status, info.value.code, info.value.message) == (404, "not_found", "no block at height 99")
        with pytest.raises(ApiError) as info:
            client.request("GET", "/v1/deposits/EV-00000")
        assert (info.value.status, info.value.code) == (400, "malformed_code")
        with pytest.raises(ApiError) as info:
            client.request("GET", "/v1/broken")
        assert (info.value.status, info.value.code) == (502, "http_502")
        with pytest.raises(ApiError) as info:
            client.case_deposits("(2026)京0491民初1号")
        assert (info.value.status, info.value.code) == (403, "not_permitted")


def test_a_malformed_code_is_refused_before_the_network(node):
    with EvledgerClient("http://127.0.0.1:9") as client:  # nothing listens there: no request may be made
        with pytest.raises(CodeError):
            client.get_deposit("EV-not-a-code")


def test_signed_case_query_with_a_non_ascii_case(node):
    with EvledgerClient(node.url, ("court-a", COURT)) as client:
        answer = client.case_deposits("(2026)京0491民初1号")
    assert answer == {"case": "(2026)京0491民初1号", "caller": "court-a", "deposits": []}


def test_the_node_refuses_a_replayed_request_from_the_wire(node):
    records = build_deposits([b"\x07" * 32], "shop-a", SHOP, CHAIN)
    with shop(node) as client:
        client.deposit(records)
    path, headers = node.seen[-1]
    auth = {k: v for k, v in headers.items() if k.lower().startswith("x-evledger-")}
    conn = http.client.HTTPConnection("127.0.0.1", int(node.url.rsplit(":", 1)[1]), timeout=5)
    try:
        conn.request("POST", path, body=encode_deposit_request(records), headers={**auth, "Content-Type": MSGPACK})
        response = conn.getresponse()
        doc = json.loads(response.read())
    finally:
        conn.close()
    assert response.status == 409 and doc["error"]["code"] == "replayed_request"


def test_an_unknown_key_is_refused(node):
    stranger = SecretKey(b"\x13" * 32)
    records = build_deposits([b"\x08" * 32], "shop-a", stranger, CHAIN)
    with EvledgerClient(node.url, ("shop-a", stranger)) as client:
        with pytest.raises(ApiError) as info:
            client.deposit(records)
    assert (info.value.status, info.value.code) == (401, "bad_signature")


def test_busy_answers_are_retried(node):
    node.busy = 2
    records = build_deposits([b"\x09" * 32], "shop-a", SHOP, CHAIN)
    with shop(node) as client:
        assert len(client.deposit(records)) == 1
    assert node.busy == 0
    node.busy = 1
    with shop(node) as client:
        with pytest.raises(ApiError) as info:
            client.deposit(records, busy_retries=0)
    assert (info.value.status, info.value.code, info.value.retry_after) == (503, "busy", 0.0)
    node.busy = 0


def test_connection_refused_is_unreachable():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The port is closed now; nothing listens on it.
    with EvledgerClient("http://127.0.0.1:%d" % port, timeout=2) as client:
        with pytest.raises(Unreachable, match="refused"):
            client.status()


def test_a_timeout_is_unreachable(node):
    node.release.clear()
    try:
        with EvledgerClient(node.url, timeout=0.3) as client:
            with pytest.raises(Unreachable, match="no answer within 0.3 s"):
                client.request("GET", "/v1/slow")
    finally:
        node.release.set()


def test_a_keep_alive_connection_closed_by_the_server_is_retried_once(node):
    node.closed.clear()
    with EvledgerClient(node.url) as client:
        assert client.request("GET", "/v1/hang-up") == {"ok": True}
        first = client._local.conn
        assert node.closed.wait(5)
        assert client.status()["chain_id"] == CHAIN
        assert client._local.conn is not first  # the dead connection was replaced, invisibly to the caller


def test_wait_committed_waits_out_the_public_rate_limit(node):
    records = build_deposits([b"\x0b" * 32], "shop-a", SHOP, CHAIN)
    with shop(node) as client:
        (result,) = client.deposit(records)
        node.limited = 2
        assert client.wait_committed([result["code"]], timeout=20) == {result["code"]: 7}
    assert node.limited == 0


def test_wait_committed_asks_the_node_to_wait_within_the_socket_timeout(node):
    records = build_deposits([b"\x0c" * 32], "shop-a", SHOP, CHAIN)
    node.waits.clear()
    with EvledgerClient(node.url, key_file=None, timeout=4.0) as client:
        code = str(codes_of(records[0], CHAIN)[0])
        node.deposits[code] = {"code": code, "height": None}
        assert client.wait_committed([code], timeout=20) == {code: 7}
    assert len(node.waits) == 3 and all(w is not None and 0 < int(w) <= 2000 for w in node.waits), node.waits
    node.waits.clear()
    with EvledgerClient(node.url, timeout=120.0) as client:  # a long socket timeout: the API's bound still holds
        code = str(codes_of(build_deposits([b"\x0d" * 32], "shop-a", SHOP, CHAIN)[0], CHAIN)[0])
        node.deposits[code] = {"code": code, "height": None}
        assert client.wait_committed([code], timeout=100) == {code: 7}
    assert node.waits and all(0 < int(w) <= 30_000 for w in node.waits), node.waits


def test_wait_committed_times_out_with_what_is_pending(node):
    records = build_deposits([b"\x0a" * 32], "shop-a", SHOP, CHAIN)
    code = str(codes_of(records[0], CHAIN)[0])
    with shop(node) as client:
        with pytest.raises(CommitTimeout) as info:
            client.wait_committed([code], timeout=0.2)  # never deposited: 404 counts as pending
    assert info.value.pending == [code] and info.value.heights == {}


def test_one_client_shared_by_threads(node):
    records = [build_deposits([bytes([i]) * 32], "shop-a", SHOP, CHAIN)[0] for i in range(20, 36)]
    errors: list = []
    with shop(node) as client:
        def work(record):
            try:
                assert client.deposit([record])[0]["code"] == str(codes_of(record, CHAIN)[0])
            except Exception as exc:  # pragma: no cover - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(r,)) for r in records]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    assert not errors


def test_hash_file_streams_a_multi_megabyte_file(tmp_path):
    path = tmp_path / "evidence.bin"
    data = bytes(range(256)) * (5 * 4096 + 17)  # about 5 MiB, not a multiple of the chunk
    path.write_bytes(data)
    assert hash_file(path) == hashlib.sha256(data).digest()
    assert hash_file(path, chunk=4096) == hashlib.sha256(data).digest()
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert hash_file(empty) == hashlib.sha256(b"").digest()


def test_build_deposits_checks_digests():
    with pytest.raises(ValueError, match="32 bytes"):
        build_deposits([b"short"], "shop-a", SHOP, CHAIN)
    with pytest.raises(ValueError, match="hex"):
        build_deposits(["zz" * 32], "shop-a", SHOP, CHAIN)
    same = build_deposits(["AB" * 32], "shop-a", SHOP, CHAIN, client_time=1)
    assert same == build_deposits([b"\xab" * 32], "shop-a", SHOP, CHAIN, client_time=1)


def test_a_depositor_reading_its_deposit_gets_the_public_view(node):
    records = build_deposits([hashlib.sha256(b"mine").digest()], "shop-a", SHOP, CHAIN, client_time=now_ms())
    with shop(node) as client:
        code = client.deposit(records)[0]["code"]
        before = len(node.seen)
        view = client.get_deposit(code)  # signed (the client has a key): refused as not a caller, then public
        assert client.get_deposit(code)["code"] == code  # asked unsigned from now on
    assert view["code"] == code and view["depositor"] == "shop-a"
    assert [path.startswith("/v1/deposits/") for path, _ in node.seen[before:]] == [True]  # one signed try
