"""The node's HTTP API (CONTRACT section 5): routes, input checks, error shapes.

Theory of operation
-------------------
Handlers are thin: they parse and check the request, call the node's
:class:`Service` (``node.py`` implements it) and shape the answer.  Every error is
``{"error": {"code", "message"}}`` with a 4xx/5xx status; the codes are listed
in ``docs/api.md``.  A handler never lets an exception escape as an HTML page:
the middleware turns anything unexpected into ``500 internal_error`` (logged
without request data) and the node keeps serving.

Who may call what: public reads (status, deposit views, verify, receipts, the
OpenAPI document) need no identity and are rate-limited per client address;
writes and member reads need a signed request (``runtime.auth``).  Request
bodies are bounded before they are read.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Callable, Protocol

from aiohttp import web

from ledger.codes import parse_code
from ledger.errors import CodeError

from .auth import AuthError, RequestVerifier
from .metrics import Counter, Histogram, Registry
from .openapi import OPENAPI
from .web_routes import add_web_routes

log = logging.getLogger("evledger.http")

MSGPACK = "application/msgpack"
CALLER_ROLES = frozenset({"court", "procuratorate", "arbitration", "notary"})
PUBLIC_BURST = 100
MAX_WAIT_MS = 30_000  # the longest a deposit view waits for its code to commit


class ApiFailure(Exception):
    """An answer with an error status: raised by the service or a handler."""

    def __init__(self, status: int, code: str, message: str, *, retry_after: int | None = None):
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


class Service(Protocol):
    """What the HTTP layer needs from the node."""

    chain_id: str
    verifier: RequestVerifier
    registry: Registry

    def status(self) -> dict: ...
    def now_ms(self) -> int: ...
    def submit_deposits(self, body: bytes, content_type: str, caller: str) -> tuple[int, dict]: ...
    def deposit_view(self, code_key: bytes) -> dict: ...
    async def wait_committed(self, code_key: bytes, timeout_s: float, source: str) -> None: ...
    def verify(self, code_key: bytes, digest: bytes) -> dict: ...
    def block_view(self, height: int) -> dict: ...
    def receipt(self, code_key: bytes) -> dict: ...
    def genesis_document(self) -> str: ...
    def case_view(self, case: str, caller: str, limit: int, after: bytes | None) -> dict: ...
    def full_deposit_view(self, code_key: bytes, caller: str) -> dict: ...


def error_response(status: int, code: str, message: str, retry_after: int | None = None) -> web.Response:
    headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


class _RateLimiter:
    """Token bucket per client address, bounded in the number of addresses it remembers."""

    def __init__(self, rate_per_s: float, burst: int = PUBLIC_BURST, max_clients: int = 100_000):
        self.rate, self.burst, self.max_clients = rate_per_s, burst, max_clients
        self.buckets: dict[str, tuple[float, float]] = {}

    def allow(self, client: str, now: float) -> float:
        """0 if allowed, else seconds until a token is available."""
        tokens, last = self.buckets.get(client, (float(self.burst), now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        if tokens < 1:
            self.buckets[client] = (tokens, now)
            return (1 - tokens) / self.rate
        if len(self.buckets) >= self.max_clients and client not in self.buckets:
            self.buckets.pop(next(iter(self.buckets)))
        self.buckets[client] = (tokens - 1, now)
        return 0.0


def parse_code_param(text: str) -> bytes:
    try:
        return parse_code(text).key
    except CodeError as err:
        raise ApiFailure(400, "malformed_code", str(err)) from None


class Api:
    """Builds the aiohttp application for one node."""

    def __init__(self, service: Service, *, public_rate_per_s: float, max_body_bytes: int):
        self.service = service
        self.max_body = max_body_bytes
        self.limiter = _RateLimiter(public_rate_per_s)
        reg = service.registry
        self.latency = reg.add(Histogram("evledger_http_request_seconds", "HTTP request latency", ("route",)))
        self.rejected = reg.add(Counter("evledger_rejected_inputs_total", "Requests refused, by error code",
                                        ("code",)))

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_body)
        routes = [
            ("GET", "/v1/status", self.status, True),
            ("POST", "/v1/deposits", self.post_deposits, False),
            ("GET", "/v1/deposits/{code}", self.get_deposit, True),
            ("POST", "/v1/verify", self.post_verify, True),
            ("GET", "/v1/receipts/{code}", self.get_receipt, True),
            ("GET", "/v1/genesis.json", self.get_genesis, True),
            ("GET", "/v1/blocks/{height}", self.get_block, False),
            ("GET", "/v1/cases/{case}/deposits", self.get_case, False),
            ("GET", "/v1/openapi.json", self.openapi, True),
            ("GET", "/metrics", self.metrics, False),
        ]
        for method, path, handler, public in routes:
            app.router.add_route(method, path, self._public(handler) if public else handler)
        add_web_routes(app)  # GET / (the litigant's page) and /assets/{name}
        return app

    # ------------------------------------------------------------ plumbing

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Callable) -> web.StreamResponse:
        start = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "unmatched"
        if "wait_ms" in request.query:  # a lookup that waits for the commit: timed apart from the others
            route += "?wait_ms"
        try:
            response = await handler(request)
        except ApiFailure as err:
            response = error_response(err.status, err.code, err.message, err.retry_after)
        except AuthError as err:
            retry = getattr(err, "retry_after_ms", None)
            response = error_response(err.status, err.code, str(err),
                                      None if retry is None else max(1, -(-retry // 1000)))
        except web.HTTPRequestEntityTooLarge:
            response = error_response(413, "too_large", "request body exceeds %d bytes" % self.max_body)
        except web.HTTPNotFound:
            response = error_response(404, "no_such_endpoint", "no endpoint %s %s" % (request.method, request.path))
        except web.HTTPMethodNotAllowed as exc:
            response = error_response(405, "method_not_allowed", "%s is not allowed here (allowed: %s)"
                                      % (request.method, ", ".join(sorted(exc.allowed_methods))))
        except web.HTTPException as exc:
            response = error_response(exc.status, "http_%d" % exc.status, exc.reason or "HTTP error")
        except Exception:  # a bug: answer 500, keep serving, log without request data
            log.exception("internal error in %s %s", request.method, route)
            response = error_response(500, "internal_error", "the node failed to answer; see its log")
        if response.status >= 400:
            code = getattr(response, "_evledger_code", None) or _code_of(response)
            self.rejected.inc(code)
        self.latency.observe(time.perf_counter() - start, route)
        return response

    def _public(self, handler: Callable) -> Callable:
        async def limited(request: web.Request) -> web.StreamResponse:
            wait = self.limiter.allow(request.remote or "?", time.monotonic())
            if wait:
                raise ApiFailure(429, "rate_limited", "too many requests from this address; retry later",
                                 retry_after=max(1, int(wait + 0.999)))
            return await handler(request)

        return limited

    async def _body(self, request: web.Request) -> bytes:
        if request.content_length is not None and request.content_length > self.max_body:
            raise ApiFailure(413, "too_large", "request body exceeds %d bytes" % self.max_body)
        return await request.read()

    async def _signed(self, request: web.Request, body: bytes, roles: frozenset[str] | None) -> str:
        caller = self.service.verifier.verify(request.method, request.raw_path, body, request.headers,
                                              self.service.now_ms(), roles)
        return caller.name

    # ------------------------------------------------------------ handlers

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status())

    async def post_deposits(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        caller = await self._signed(request, body, frozenset({"depositor"}))
        status, doc = self.service.submit_deposits(body, request.content_type, caller)
        return web.json_response(doc, status=status)

    async def get_deposit(self, request: web.Request) -> web.Response:
        code_key = parse_code_param(request.match_info["code"])
        wait_ms = _wait_ms(request)
        caller = None
        if "X-Evledger-Signature" in request.headers:  # a caller asking for the full record
            caller = await self._signed(request, b"", CALLER_ROLES)
        if wait_ms:
            await self.service.wait_committed(code_key, wait_ms / 1000, request.remote or "?")
        if caller is not None:
            return web.json_response(self.service.full_deposit_view(code_key, caller))
        return web.json_response(self.service.deposit_view(code_key))

    async def get_case(self, request: web.Request) -> web.Response:
        if "X-Evledger-Signature" not in request.headers:
            raise ApiFailure(403, "not_permitted", "case queries are for courts, procuratorates, arbitration bodies "
                             "and notaries, with a signed request")
        caller = await self._signed(request, b"", CALLER_ROLES)
        case = request.match_info["case"]
        if not case or len(case) > 128 or any(ord(c) < 0x20 or c == "\x7f" for c in case):
            raise ApiFailure(400, "bad_case", "a case number is 1-128 printable characters")
        limit_text = request.query.get("limit", "100")
        if not _decimal(limit_text) or not 1 <= int(limit_text) <= 1000:
            raise ApiFailure(400, "bad_request", "limit must be an integer in [1, 1000]")
        after = request.query.get("after")
        after_key = parse_code_param(after) if after else None
        return web.json_response(self.service.case_view(case, caller, int(limit_text), after_key))

    async def post_verify(self, request: web.Request) -> web.Response:
        body = await self._body(request)
        doc = _json_object(body, request.content_type)
        unknown = sorted(set(doc) - {"code", "digest"})
        if unknown:
            raise ApiFailure(400, "bad_request", "unknown fields: %s (expected code, digest)" % ", ".join(unknown))
        code, digest = doc.get("code"), doc.get("digest")
        if not isinstance(code, str):
            raise ApiFailure(400, "bad_request", "code must be a string")
        code_key = parse_code_param(code)
        if not isinstance(digest, str) or len(digest) != 64:
            raise ApiFailure(400, "bad_digest", "digest must be 64 hex characters (a SHA-256 digest)")
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raise ApiFailure(400, "bad_digest", "digest must be 64 hex characters (a SHA-256 digest)") from None
        return web.json_response(self.service.verify(code_key, raw))

    async def get_receipt(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.receipt(parse_code_param(request.match_info["code"])),
                                 dumps=_dumps_utf8)

    async def get_genesis(self, request: web.Request) -> web.Response:
        return web.Response(text=self.service.genesis_document(), content_type="application/json")

    async def get_block(self, request: web.Request) -> web.Response:
        await self._signed(request, b"", None)
        text = request.match_info["height"]
        if not _decimal(text) or len(text) > 19:
            raise ApiFailure(400, "bad_height", "height must be a non-negative integer")
        return web.json_response(self.service.block_view(int(text)))

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(OPENAPI)

    async def metrics(self, request: web.Request) -> web.Response:
        remote = request.remote or ""
        if not (remote.startswith("127.") or remote == "::1"):
            await self._signed(request, b"", frozenset({"validator", "observer"}))
        return web.Response(text=self.service.registry.render(), content_type="text/plain",
                            headers={"X-Content-Type-Options": "nosniff"})


def _decimal(text: str) -> bool:
    """ASCII digits only: ``str.isdigit`` also takes "²" (which ``int`` refuses) and "٣"."""
    return text.isascii() and text.isdigit()


def _wait_ms(request: web.Request) -> int:
    """``?wait_ms=N``: how long a deposit view may wait for the code to commit (0: answer at once)."""
    text = request.query.get("wait_ms")
    if text is None:
        return 0
    if not _decimal(text) or len(text) > 6 or int(text) > MAX_WAIT_MS:
        raise ApiFailure(400, "bad_request", "wait_ms must be an integer in [0, %d]" % MAX_WAIT_MS)
    return int(text)


def _dumps_utf8(doc: object) -> str:
    return json.dumps(doc, ensure_ascii=False)


def _json_object(body: bytes, content_type: str) -> dict:
    if content_type not in ("application/json", ""):
        raise ApiFailure(415, "unsupported_media_type", "send application/json")
    try:
        doc = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiFailure(400, "bad_json", "body is not valid JSON: %s" % exc) from None
    if not isinstance(doc, dict):
        raise ApiFailure(400, "bad_request", "expected a JSON object")
    return doc


def _code_of(response: web.StreamResponse) -> str:
    try:
        return json.loads(response.body)["error"]["code"]  # type: ignore[attr-defined]
    except Exception:
        return "http_%d" % response.status

