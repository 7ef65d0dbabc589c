"""Hostile input against a real node process: each rejection has its status and code, and the node keeps serving."""

from __future__ import annotations

import hashlib
import http.client
import json
import re
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from ledger.codec import encode
from ledger.crypto import SecretKey, load_key_file
from runtime import cluster
from runtime.auth import sign_request
from services.client import EvledgerClient, build_deposits, encode_deposit_request

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, str(ROOT / "cli.py")]
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    folder = tmp_path_factory.mktemp("api") / "consortium"
    run = lambda *a: subprocess.run(CLI + list(a), capture_output=True, text=True, timeout=120)  # noqa: E731
    assert run("cluster", "init", str(folder), "--validators", "1", "--base-port",
               str(cluster.free_base_port())).returncode == 0
    up = run("cluster", "up", str(folder), "--json")
    assert up.returncode == 0, up.stderr
    doc = json.loads(up.stdout)
    keys = {c["name"]: load_key_file(c["key"]) for c in doc["clients"]}
    api = doc["nodes"][0]["api"]
    with EvledgerClient(api) as client:
        chain_id = client.status()["chain_id"]
    yield {"api": api, "keys": keys, "chain_id": chain_id, "folder": folder}
    assert run("cluster", "down", str(folder)).returncode == 0


def raw(api: str, method: str, path: str, body: bytes = b"", headers: dict | None = None):
    parts = urlsplit(api)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        data = response.read()
        return response.status, dict(response.getheaders()), data
    finally:
        conn.close()


def signed(node, client: str, method: str, path: str, body: bytes, *, now_ms: int | None = None,
           key: SecretKey | None = None, content_type: str = "application/msgpack") -> dict:
    identity = node["keys"][client]
    headers = sign_request(key or identity.key, client, node["chain_id"], method, path, body,
                           now_ms if now_ms is not None else int(time.time() * 1000))
    headers["Content-Type"] = content_type
    return headers


def deposit_body(node, client: str = "ecommerce", n: int = 1, tag: str = "x") -> bytes:
    identity = node["keys"][client]
    digests = [hashlib.sha256(("%s-%d-%f" % (tag, i, time.time())).encode()).digest() for i in range(n)]
    return encode_deposit_request(build_deposits(digests, identity.name, identity.key, node["chain_id"]))


def error_of(status: int, data: bytes) -> tuple[int, str]:
    doc = json.loads(data)
    assert set(doc) == {"error"} and set(doc["error"]) == {"code", "message"} and doc["error"]["message"]
    return status, doc["error"]["code"]


def test_hostile_requests_get_their_status_and_code_and_the_node_keeps_serving(node):
    api = node["api"]
    body = deposit_body(node)
    good = signed(node, "ecommerce", "POST", "/v1/deposits", body)
    cases = []

    def case(name, expect, method, path, data=b"", headers=None):
        status, _, answer = raw(api, method, path, data, headers)
        cases.append((name, expect, error_of(status, answer)))

    case("unsigned deposit", (401, "unsigned"), "POST", "/v1/deposits", body, {"Content-Type": "application/msgpack"})
    bad = dict(good, **{"X-Evledger-Nonce": "zz"})
    case("malformed nonce", (400, "malformed_auth"), "POST", "/v1/deposits", body, bad)
    outsider = SecretKey.generate()
    hdr = sign_request(outsider, "stranger", node["chain_id"], "POST", "/v1/deposits", body, int(time.time() * 1000))
    case("unknown client", (401, "unknown_client"), "POST", "/v1/deposits", body, hdr)
    case("signed by another key", (401, "bad_signature"), "POST", "/v1/deposits", body,
         signed(node, "ecommerce", "POST", "/v1/deposits", body, key=outsider))
    case("signature over another body", (401, "bad_signature"), "POST", "/v1/deposits", body + b"\x00", good)
    case("stale request", (401, "stale_request"), "POST", "/v1/deposits", body,
         signed(node, "ecommerce", "POST", "/v1/deposits", body, now_ms=int(time.time() * 1000) - 6 * 60_000))
    status, _, _ = raw(api, "POST", "/v1/deposits", body, good)
    assert status in (200, 202)
    case("replayed request", (409, "replayed_request"), "POST", "/v1/deposits", body, good)
    arb_body = deposit_body(node, "arbitration")
    case("role not permitted", (403, "not_permitted"), "POST", "/v1/deposits", arb_body,
         signed(node, "arbitration", "POST", "/v1/deposits", arb_body))
    foreign = deposit_body(node, "copyright")
    case("records signed by someone else", (403, "not_permitted"), "POST", "/v1/deposits", foreign,
         signed(node, "ecommerce", "POST", "/v1/deposits", foreign))
    junk = encode(["deposit-request", 1, [["entry-record"]]])
    case("malformed deposit body", (400, "malformed_request"), "POST", "/v1/deposits", junk,
         signed(node, "ecommerce", "POST", "/v1/deposits", junk))
    case("wrong content type", (415, "unsupported_media_type"), "POST", "/v1/deposits", body,
         signed(node, "ecommerce", "POST", "/v1/deposits", body, content_type="text/plain"))
    huge = b"\x00" * (9 * 1024 * 1024)
    case("oversized body", (413, "too_large"), "POST", "/v1/deposits", huge,
         signed(node, "ecommerce", "POST", "/v1/deposits", huge))
    case("malformed code", (400, "malformed_code"), "GET", "/v1/deposits/EV-NOT-A-CODE")
    case("unknown code", (404, "not_found"), "GET", "/v1/deposits/00000-00000-00000-00000-00000")
    for wait in ("abc", "40000", "-1", "%C2%B2"):
        case("deposit view: wait_ms=%s" % wait, (400, "bad_request"), "GET",
             "/v1/deposits/00000-00000-00000-00000-00000?wait_ms=" + wait)
    case("unknown code, after waiting", (404, "not_found"), "GET",
         "/v1/deposits/00000-00000-00000-00000-00000?wait_ms=50")
    case("verify: bad JSON", (400, "bad_json"), "POST", "/v1/verify", b"{", {"Content-Type": "application/json"})
    case("verify: bad digest", (400, "bad_digest"), "POST", "/v1/verify",
         json.dumps({"code": "00000-00000-00000-00000-00000", "digest": "xyz"}).encode(),
         {"Content-Type": "application/json"})
    case("verify: unknown field", (400, "bad_request"), "POST", "/v1/verify",
         json.dumps({"code": "x", "digest": "0" * 64, "extra": 1}).encode(), {"Content-Type": "application/json"})
    case("verify: malformed code", (400, "malformed_code"), "POST", "/v1/verify",
         json.dumps({"code": "EV-1", "digest": "0" * 64}).encode(), {"Content-Type": "application/json"})
    case("block: unsigned", (401, "unsigned"), "GET", "/v1/blocks/1")
    case("block: bad height", (400, "bad_height"), "GET", "/v1/blocks/abc",
         headers=signed(node, "court", "GET", "/v1/blocks/abc", b""))
    case("block: a superscript digit as height", (400, "bad_height"), "GET", "/v1/blocks/%C2%B2",
         headers=signed(node, "court", "GET", "/v1/blocks/%C2%B2", b""))
    case("case: a superscript digit as limit", (400, "bad_request"), "GET", "/v1/cases/C1/deposits?limit=%C2%B2",
         headers=signed(node, "court", "GET", "/v1/cases/C1/deposits?limit=%C2%B2", b""))
    case("block: beyond the head", (404, "not_found"), "GET", "/v1/blocks/999999",
         headers=signed(node, "court", "GET", "/v1/blocks/999999", b""))
    case("no such endpoint", (404, "no_such_endpoint"), "GET", "/v2/nothing")
    case("method not allowed", (405, "method_not_allowed"), "DELETE", "/v1/status")
    failures = [(name, expect, got) for name, expect, got in cases if expect != got]
    assert not failures, "\n".join("%s: expected %s, got %s" % f for f in failures)
    status, _, answer = raw(api, "GET", "/v1/status")
    assert status == 200 and json.loads(answer)["node"]
    metrics = raw(api, "GET", "/metrics")[2].decode()
    assert 'evledger_rejected_inputs_total{code="bad_signature"} 2' in metrics
    assert "evledger_height " in metrics
    assert "# TYPE evledger_event_loop_lag_seconds histogram" in metrics
    assert "# TYPE evledger_gc_pause_seconds histogram" in metrics and "# TYPE evledger_peer_frames_dropped_total counter" in metrics
    assert "# TYPE evledger_replica_events_total counter" in metrics


def test_a_valid_deposit_still_commits_after_the_abuse(node):
    identity = node["keys"]["copyright"]
    with EvledgerClient(node["api"], key_file=identity) as client:
        digest = hashlib.sha256(b"after the abuse").digest()
        records = build_deposits([digest], identity.name, identity.key, node["chain_id"])
        result = client.deposit(records)
        # One request that waits for the commit answers it, with the height.
        status, _, answer = raw(node["api"], "GET", "/v1/deposits/%s?wait_ms=20000" % result[0]["code"])
        view = json.loads(answer)
        assert status == 200 and view["state"] == "committed" and view["height"] >= 1, view
        heights = client.wait_committed([result[0]["code"]], timeout=30)
        assert heights[result[0]["code"]] == view["height"]
        assert client.verify(result[0]["code"], digest)["verdict"] == "match"
        other = client.verify(result[0]["code"], hashlib.sha256(b"something else").digest())
        assert other["verdict"] == "mismatch" and other["match"] is False
        # Resubmitting the same signed deposit is idempotent: same code, reported as committed at its height.
        again = client.deposit(records)
        assert again[0]["code"] == result[0]["code"]
        assert again[0]["state"] == "committed" and again[0]["height"] == heights[result[0]["code"]]
    metrics = raw(node["api"], "GET", "/metrics")[2].decode()
    delivered = re.search(r'^evledger_replica_events_total\{event="delivered"\} (\d+)$', metrics, re.M)
    assert delivered and int(delivered.group(1)) >= heights[result[0]["code"]]  # the replica's own tally


def test_openapi_describes_exactly_the_served_routes(node):
    status, _, data = raw(node["api"], "GET", "/v1/openapi.json")
    doc = json.loads(data)
    assert status == 200 and doc["openapi"].startswith("3.")
    from runtime.http_api import Api

    class _Stub:  # only to list the routes; no handler is called
        registry = __import__("runtime.metrics").metrics.Registry()

    served = Api(_Stub(), public_rate_per_s=1, max_body_bytes=1024).app().router.routes()
    routes = {(r.method.lower(), r.resource.canonical) for r in served if r.method != "HEAD"}  # HEAD: aiohttp's, with GET
    assert {(method, path) for path, ops in doc["paths"].items() for method in ops} == routes
    for path, ops in doc["paths"].items():
        for op in ops.values():
            assert op.get("responses"), path


def test_requests_that_are_not_http_get_the_json_error_and_no_log_of_their_bytes(node):
    parts = urlsplit(node["api"])
    secret = b"SECRET-IN-A-BROKEN-HEADER"
    for request in (b"GET /v1/status HTTP/1.1\r\nHost: x\r\n" + secret + b"\r\n\r\n",
                    b"POST /v1/deposits HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
                    b"GET /v1/status HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
                    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + secret):
        with socket.create_connection((parts.hostname, parts.port), timeout=10) as conn:
            conn.sendall(request)
            answer = b""
            while chunk := conn.recv(65536):
                answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        assert head.split(b" ", 2)[1] == b"400" and b"application/json" in head.lower(), answer[:300]
        assert json.loads(body)["error"]["code"] == "malformed_http" and secret not in body
    status, _, _ = raw(node["api"], "GET", "/v1/status")
    assert status == 200
    logs = "".join(p.read_text(errors="replace") for p in (node["folder"] / "nodes").glob("*/node.log"))
    assert "SECRET-IN-A-BROKEN-HEADER" not in logs and "refused a malformed HTTP request" in logs


def test_garbage_on_the_peer_port_does_not_disturb_the_node(node):
    from runtime.config import load_config

    config = load_config(next((node["folder"] / "nodes").iterdir()) / "node.toml")
    for payload in (b"\xff" * 64, b"\x00\x00\x00\x05hello", b"GET / HTTP/1.1\r\n\r\n", b"\x7f\xff\xff\xff"):
        with socket.create_connection((config.peer.listen.host, config.peer.listen.port), timeout=5) as s:
            s.sendall(payload)
    status, _, _ = raw(node["api"], "GET", "/v1/status")
    assert status == 200


def test_court_query_sees_private_fields_and_is_recorded_on_chain(node):
    import base64

    from ledger.codec import decode as canonical_decode
    from ledger.model import AccessRecord, DepositItem, Entry, PrivateMeta, make_deposit

    case = "(2026)京0491民初%d号" % int(time.time())
    shop = node["keys"]["ecommerce"]
    private = PrivateMeta(salt=b"\x01" * 16, fields={"buyer_id": "110101199001011234"})
    item = DepositItem(digest=hashlib.sha256(b"order 77").digest(), sm3=None, category="ecommerce-order",
                       case=case, public_meta={"order": "77"}, private_commitment=private.commitment())
    record = make_deposit([item], shop.name, int(time.time() * 1000), shop.key, node["chain_id"], private=[private])
    with EvledgerClient(node["api"], key_file=shop) as client:
        code = client.deposit([record])[0]["code"]
        client.wait_committed([code], timeout=30)
        # The public view never shows private fields.
        assert "private_meta" not in client.request("GET", "/v1/deposits/" + code, signed=False)

    court_key = next(c for c in (node["folder"] / "clients").iterdir() if c.name == "court.key")
    result = subprocess.run(CLI + ["query", "--case", case, "--node", node["api"], "--key", str(court_key), "--json"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    (deposit,) = answer["deposits"]
    assert deposit["code"] == code and deposit["private_meta"] == {"buyer_id": "110101199001011234"}

    def access_on_chain():
        with EvledgerClient(node["api"], key_file=node["keys"]["court"]) as client:
            height = client.status()["height"]
            for h in range(height, 0, -1):
                for b64 in client.block(h)["entries"]:
                    entry = Entry.from_wire(canonical_decode(base64.b64decode(b64)))
                    if isinstance(entry.body, AccessRecord) and entry.body.case == case:
                        return entry.body
        return None

    deadline = time.monotonic() + 30
    body = None
    while body is None and time.monotonic() < deadline:
        body = access_on_chain()
        time.sleep(0.1)
    assert body is not None, "the court's retrieval was not recorded on chain"
    assert body.accessor == "court" and body.codes == (parse_compact(code),) and body.purpose == "case query"

    report = node["folder"].parent / "case-report.html"
    result = subprocess.run(CLI + ["query", "--case", case, "--node", node["api"], "--key", str(court_key),
                                   "--report", str(report), "--genesis", str(node["folder"] / "genesis.json")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    page = report.read_text(encoding="utf-8")
    assert code in page and "110101199001011234" in page and 'class=valid' in page and "<script" not in page
    assert "1 with a valid receipt" in result.stderr

    for who in ("ecommerce",):  # a depositor is refused
        key = node["folder"] / "clients" / ("%s.key" % who)
        refused = subprocess.run(CLI + ["query", "--case", case, "--node", node["api"], "--key", str(key)],
                                 capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "not_permitted" in refused.stderr
    status, _, data = raw(node["api"], "GET", "/v1/cases/x/deposits")  # an anonymous caller too
    assert error_of(status, data) == (403, "not_permitted")
    # Nothing private reached the node's log: the private field, the members' secret keys.
    logs = "".join(p.read_text(errors="replace") for p in (node["folder"] / "nodes").glob("*/node.log"))
    keys = list(node["keys"].values()) + [load_key_file(k) for k in (node["folder"] / "nodes").glob("*/node.key")]
    secrets = ["110101199001011234"] + [k.key.seed_hex() for k in keys]
    assert logs and not [s for s in secrets if s in logs]


def parse_compact(code: str) -> str:
    from ledger.codes import parse_code

    return parse_code(code).compact


# Last: it spends this address's public budget.
def test_public_endpoints_are_rate_limited_per_address(node):
    seen = []
    for _ in range(400):
        status, headers, data = raw(node["api"], "GET", "/v1/deposits/00000-00000-00000-00000-00000")
        seen.append(status)
        if status == 429:
            assert error_of(status, data) == (429, "rate_limited") and int(headers["Retry-After"]) >= 1
            break
    assert 429 in seen
