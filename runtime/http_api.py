"""The node's HTTP API (CONTRACT section 5): routes, input checks, error shapes.

Theory of operation
-------------------
Handlers are thin: they parse and check the request, call the node's
:class:`Service` (``node.py`` implements it) and shape the answer.  Every error is
``{"error": {"code", "message"}}`` with a 4xx/5xx status; the codes are listed
in ``docs/api.md``.  A handler never lets an exception escape as an HTML page:
the middleware turns anything unexpected into ``500 internal_error`` (logged
without request data) and the node keeps serving.

A request aiohttp's parser refuses (a header over 8 KiB, a header line without a
colon, ``Content-Length: abc``, a garbage request line) never reaches the app or its
middleware: aiohttp answers it from its connection handler.  :meth:`Api.runner`
gives that handler the contract's shape too (``400 malformed_http``), and the
logger the app hands aiohttp (:class:`_ServerLog`) turns aiohttp's traceback of
such a request, which quotes up to 100 of its bytes, into a count in
``evledger_rejected_inputs_total`` and one short warning per 10 s naming the kind
of fault only.

Who may call what: public reads (status, deposit views, verify, receipts, the
OpenAPI document) need no identity and are rate-limited per client address;
writes and member reads need a signed request (``runtime.auth``).  Request
bodies are bounded before they are read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import sys
import time
from typing import Any, Callable, Protocol

from aiohttp import web
from aiohttp.http_exceptions import (BadHttpMethod, BadStatusLine, ContentEncodingError, HttpProcessingError,
                                     InvalidHeader, InvalidURLError, LineTooLong)

from ledger.codes import parse_code
from ledger.errors import CodeError

from .auth import AuthError, RequestVerifier
from .client_address import client_address, is_loopback
from .connection import RateLimitedLog
from .metrics import Counter, Histogram, Registry
from .openapi import OPENAPI
from .web_routes import add_web_routes

log = logging.getLogger("evledger.http")

MSGPACK = "application/msgpack"
CALLER_ROLES = frozenset({"court", "procuratorate", "arbitration", "notary"})
DEPOSITOR = frozenset({"depositor"})
PUBLIC_BURST = 100
MAX_WAIT_MS = 30_000  # the longest a deposit view waits for its code to commit
BODY_TIMEOUT_S = 60.0  # the longest a request body may take to arrive (8 MiB at ~140 KB/s)
MALFORMED_HTTP = "malformed_http"  # the error code of a request that is not valid HTTP/1.1
FAULT_LOG_WINDOW_S = 10.0  # at most one log line about malformed requests per window
# aiohttp's parser messages start with a fixed reason ("Invalid header token") and then quote
# the request's bytes; only a reason of this shape is repeated to the client.
_SAFE_REASON = re.compile(r"[A-Za-z][A-Za-z0-9 ,.'-]{0,99}")


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

    def __init__(self, service: Service, *, public_rate_per_s: float, max_body_bytes: int,
                 trusted_proxies: frozenset[str] = frozenset()):
        self.service = service
        self.max_body = max_body_bytes
        self.trusted_proxies = trusted_proxies  # canonical IP texts (runtime/client_address.py)
        self.limiter = _RateLimiter(public_rate_per_s)
        reg = service.registry
        self.latency = reg.add(Histogram("evledger_http_request_seconds", "HTTP request latency", ("route",)))
        self.rejected = reg.add(Counter("evledger_rejected_inputs_total", "Requests refused, by error code",
                                        ("code",)))
        self.fault_log = RateLimitedLog(burst=1, window=FAULT_LOG_WINDOW_S, logger=log, what="malformed HTTP")

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware], client_max_size=self.max_body,
                              handler_args={"logger": _ServerLog(self._peer_fault)})
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

    def runner(self, **kwargs: Any) -> web.AppRunner:
        """A ``web.AppRunner`` for :meth:`app` (``kwargs`` as for it) whose connections answer a
        request aiohttp cannot parse with the JSON error ``400 malformed_http``, not plain text."""
        return _ApiRunner(self.app(), self._peer_fault, **kwargs)

    def _peer_fault(self, fault: BaseException) -> None:
        """A request aiohttp's parser refused (counted here) or a body it could not decode
        (counted by the middleware when a handler refuses it): one short warning, rate-limited."""
        if isinstance(fault, HttpProcessingError):
            self.rejected.inc(MALFORMED_HTTP)
        self.fault_log.warning(time.monotonic(), "refused a malformed HTTP request (%s)", type(fault).__name__)

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
            wait = self.limiter.allow(self.client(request), time.monotonic())
            if wait:
                raise ApiFailure(429, "rate_limited", "too many requests from this address; retry later",
                                 retry_after=max(1, int(wait + 0.999)))
            return await handler(request)

        return limited

    def client(self, request: web.Request) -> str:
        """The request's client address: the TCP peer, or the client a trusted proxy names."""
        return client_address(request.remote, request.headers, self.trusted_proxies)

    def _check_size(self, request: web.Request) -> None:
        if request.content_length is not None and request.content_length > self.max_body:
            raise ApiFailure(413, "too_large", "request body exceeds %d bytes" % self.max_body)

    async def _body(self, request: web.Request) -> bytes:
        self._check_size(request)
        try:
            return await asyncio.wait_for(request.read(), BODY_TIMEOUT_S)
        except asyncio.TimeoutError:  # a body trickled in, or framing aiohttp never reports: the handler is freed
            raise ApiFailure(408, "request_timeout", "the body did not arrive within %g s" % BODY_TIMEOUT_S) from None
        except web.RequestPayloadError as exc:  # chunked framing or Content-Encoding aiohttp cannot decode
            raise ApiFailure(400, MALFORMED_HTTP, "the body cannot be read: %s" % _malformed(exc.__cause__)) from None
        except ConnectionResetError:  # the client closed the connection before the body was complete
            raise ApiFailure(400, MALFORMED_HTTP, "the connection closed before the whole body arrived") from None

    async def _signed(self, request: web.Request, body: bytes, roles: frozenset[str] | None) -> str:
        caller = self.service.verifier.verify(request.method, request.raw_path, body, request.headers,
                                              self.service.now_ms(), roles)
        return caller.name

    # ------------------------------------------------------------ handlers

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.service.status())

    async def post_deposits(self, request: web.Request) -> web.Response:
        self._check_size(request)
        # docs/auth.md checks 1-4 need no body: a request that fails them is refused before up
        # to max_body bytes are read and hashed
        self.service.verifier.precheck(request.headers, self.service.now_ms())
        body = await self._body(request)
        caller = await self._signed(request, body, DEPOSITOR)
        status, doc = self.service.submit_deposits(body, request.content_type, caller)
        return web.json_response(doc, status=status)

    async def get_deposit(self, request: web.Request) -> web.Response:
        code_key = parse_code_param(request.match_info["code"])
        wait_ms = _wait_ms(request)
        caller = None
        if "X-Evledger-Signature" in request.headers:  # a caller asking for the full record
            caller = await self._signed(request, b"", CALLER_ROLES)
        if wait_ms:
            await self.service.wait_committed(code_key, wait_ms / 1000, self.client(request))
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
        if not is_loopback(self.client(request)):
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


def _malformed(exc: BaseException | None) -> str:
    """What is wrong with a request aiohttp could not parse, for the client, without its bytes."""
    if isinstance(exc, LineTooLong):
        limit = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], int) else None
        return "the request line or a header field is too long" + (" (over %d bytes)" % limit if limit else "")
    if isinstance(exc, BadHttpMethod):
        return "the request line does not start with an HTTP method (this port speaks plain HTTP/1.1)"
    if isinstance(exc, BadStatusLine):
        return "the request line is not 'METHOD target HTTP/1.1'"
    if isinstance(exc, InvalidURLError):
        return "the request target is not a valid URL"
    if isinstance(exc, InvalidHeader):
        return "a header has an empty name or a forbidden character"
    if isinstance(exc, ContentEncodingError):
        return "the body does not decode as its Content-Encoding says"
    reason = exc.message.split(":\n", 1)[0].strip() if isinstance(exc, HttpProcessingError) else ""
    return "not valid HTTP/1.1" + (" (%s)" % reason if _SAFE_REASON.fullmatch(reason) else "")


def _fault_of(exc_info: object) -> BaseException | None:
    """The request's fault, if a log call's ``exc_info`` is one (a parse or body-decoding error)."""
    if exc_info is True:
        exc_info = sys.exc_info()
    exc = exc_info[1] if isinstance(exc_info, tuple) else exc_info
    return exc if isinstance(exc, (HttpProcessingError, web.RequestPayloadError)) else None


class _ServerLog(logging.LoggerAdapter):
    """The logger the app gives aiohttp's connection handlers (``handler_args``).

    aiohttp logs a request it cannot parse, and a body it cannot decode, with a
    traceback whose message quotes up to 100 bytes of the request.  Those are the
    peer's faults: they go to ``on_fault`` (a count and a rate-limited line naming the
    kind of fault) and never to a log handler.  Every other call reaches
    ``aiohttp.server`` unchanged.
    """

    def __init__(self, on_fault: Callable[[BaseException], None]):
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self.on_fault = on_fault

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        fault = _fault_of(kwargs.get("exc_info"))
        if fault is None:
            super().log(level, msg, *args, **kwargs)
        else:
            self.on_fault(fault)


class _ApiRequestHandler(web.RequestHandler):
    """aiohttp's connection handler, answering a request it cannot parse in the contract's shape.

    aiohttp calls ``handle_error`` for such a request without running the app (so no
    middleware sees it); its own answer is plain text quoting the request's bytes.
    Every other error keeps aiohttp's handling.
    """

    __slots__ = ("on_fault",)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        if not isinstance(exc, HttpProcessingError):
            return super().handle_error(request, status, exc, message)
        self.on_fault(exc)
        response = error_response(400, MALFORMED_HTTP, _malformed(exc))
        response.force_close()  # the parser cannot find where the next request would start
        return response


class _ApiServer(web.Server):
    """The app's ``web.Server``, rebuilt to make :class:`_ApiRequestHandler` connections.

    aiohttp builds the app's server itself (``AppRunner`` -> ``Application._make_handler``)
    and keeps the connection settings (limits, logger, timeouts) only in the server's
    ``_kwargs``; this mirrors ``web.Server.__call__`` (aiohttp 3.14) with the subclass.
    ``tests/unit/test_http_parse_errors.py`` fails if a new aiohttp changes that.
    """

    def __init__(self, plain: web.Server, on_fault: Callable[[BaseException], None]):
        super().__init__(plain.request_handler, request_factory=plain.request_factory,
                         handler_cancellation=plain.handler_cancellation, **plain._kwargs)
        self.on_fault = on_fault

    def __call__(self) -> web.RequestHandler:
        handler = _ApiRequestHandler(self, loop=self._loop, **self._kwargs)
        handler.on_fault = self.on_fault
        return handler


class _ApiRunner(web.AppRunner):
    """``web.AppRunner`` serving the app through :class:`_ApiServer` (see :meth:`Api.runner`)."""

    __slots__ = ("_on_fault",)

    def __init__(self, app: web.Application, on_fault: Callable[[BaseException], None], **kwargs: Any):
        super().__init__(app, **kwargs)
        self._on_fault = on_fault

    async def _make_server(self) -> web.Server:
        plain = await super()._make_server()
        try:
            return _ApiServer(plain, self._on_fault)
        except (AttributeError, TypeError) as exc:  # an aiohttp whose Server is built otherwise: plain text
            log.warning("malformed requests get aiohttp's plain-text 400 (this aiohttp: %s)", exc)
            return plain
