"""runtime/web_routes.py: what the node answers for the page, without a browser.

Only allow-listed files, with their content types and the security headers on
every answer (the CSP forbids inline scripts and other hosts), strong ETags with
``304``, and nothing else reachable (no path traversal, no index.html by name).
Also checks that the page's files keep the rules the CSP relies on: no inline
script or style, nothing loaded from another host.
"""

from __future__ import annotations

import asyncio
import re

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from runtime.web_routes import ASSETS, SECURITY_HEADERS, WEB_DIR, add_web_routes, load_assets


def fetch(requests: list[tuple[str, str, dict]]) -> list[tuple[int, dict, bytes]]:
    """Run ``(method, path, headers)`` requests against a bare app with the web routes."""

    async def go() -> list[tuple[int, dict, bytes]]:
        app = web.Application()
        add_web_routes(app)
        async with TestClient(TestServer(app)) as client:
            out = []
            for method, path, headers in requests:
                response = await client.request(method, path, headers=headers, allow_redirects=False)
                out.append((response.status, response.headers.copy(), await response.read()))
            return out

    return asyncio.run(go())


def test_index_and_every_asset_with_type_and_security_headers():
    paths = ["/"] + ["/assets/%s" % name for name in ASSETS if name != "index.html"]
    for path, (status, headers, body) in zip(paths, fetch([("GET", p, {}) for p in paths])):
        name = "index.html" if path == "/" else path.rsplit("/", 1)[1]
        assert status == 200, path
        assert headers["Content-Type"] == ASSETS[name], path
        assert body == (WEB_DIR / name).read_bytes()
        for key, value in SECURITY_HEADERS.items():
            assert headers[key] == value, (path, key)
        assert headers["Cache-Control"] == "no-cache" and headers["ETag"].startswith('"')
    csp = SECURITY_HEADERS["Content-Security-Policy"]
    assert csp.startswith("default-src 'self'") and "'unsafe-inline'" not in csp and "script-src 'self'" in csp
    assert SECURITY_HEADERS["X-Content-Type-Options"] == "nosniff"
    assert SECURITY_HEADERS["Referrer-Policy"] == "no-referrer"


def test_etag_revalidation_and_head():
    ((_, headers, _),) = fetch([("GET", "/assets/app.js", {})])
    (status, again, body), (head_status, head_headers, head_body) = fetch([
        ("GET", "/assets/app.js", {"If-None-Match": headers["ETag"]}),
        ("HEAD", "/", {}),
    ])
    assert status == 304 and body == b"" and again["ETag"] == headers["ETag"]
    assert head_status == 200 and head_body == b"" and head_headers["Content-Type"].startswith("text/html")


@pytest.mark.parametrize("path", [
    "/assets/index.html", "/assets/nope.js", "/assets/..%2fweb_routes.py", "/assets/%2e%2e%2fweb_routes.py",
    "/assets/../web_routes.py", "/assets/APP.JS", "/assets/app.js%00", "/assets/", "/index.html",
    "/assets/web/app.js",
])
def test_nothing_outside_the_allow_list(path):
    ((status, headers, body),) = fetch([("GET", path, {})])
    assert status == 404, path
    assert b"import" not in body and b"def " not in body


def test_allow_list_is_the_folder():
    on_disk = {p.name for p in WEB_DIR.iterdir() if p.is_file()}
    assert on_disk == set(ASSETS), "every file in runtime/web/ is served, and only those"
    assert set(load_assets()) == set(ASSETS)


def test_page_files_keep_the_csp_rules():
    html = (WEB_DIR / "index.html").read_text(encoding="utf-8")
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(not s.strip() for s in scripts), "no inline script"
    assert not re.search(r"\son[a-z]+\s*=", html), "no inline event handlers"
    assert not re.search(r"\sstyle\s*=", html) and "<style" not in html, "no inline styles"
    for name in ASSETS:
        text = (WEB_DIR / name).read_text(encoding="utf-8")
        assert not re.search(r"(src|href)\s*=\s*[\"']?(https?:)?//", text), "%s loads from another host" % name
        assert not re.search(r"fetch\(\s*[\"'`]https?:", text), name
        if name.endswith(".js"):
            assert "innerHTML" not in text and "eval(" not in text and "new Function" not in text, name


def test_routes_work_inside_the_node_api_app():
    """Registered on the node's own aiohttp app (behind its error and metrics middleware)."""
    from runtime.http_api import Api
    from runtime.metrics import Registry

    class _Stub:  # the page's routes never call the service
        registry = Registry()

    async def go() -> list[tuple[int, str, bytes]]:
        app = Api(_Stub(), public_rate_per_s=1, max_body_bytes=1024).app()
        add_web_routes(app)
        async with TestClient(TestServer(app)) as client:
            out = []
            for path in ("/", "/assets/verify.js", "/assets/missing.js"):
                response = await client.get(path)
                out.append((response.status, response.headers.get("Content-Security-Policy", ""), await response.read()))
            return out

    (s1, csp1, body1), (s2, csp2, _), (s3, _, body3) = asyncio.run(go())
    assert (s1, s2, s3) == (200, 200, 404)
    assert csp1 == csp2 == SECURITY_HEADERS["Content-Security-Policy"]
    assert body1.startswith(b"<!doctype html>") and b"no_such_asset" in body3
