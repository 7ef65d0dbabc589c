"""The litigant's verification page: static files served by every node.

Theory of operation
-------------------
``GET /`` answers ``runtime/web/index.html`` and ``GET /assets/{name}`` the page's
scripts and style sheet.  Only the files named in :data:`ASSETS` are ever served:
the name in the URL is looked up in that table, never joined to a path, so no
request can reach another file of the node.  The files are read once, when the
routes are registered (a missing asset stops the node at start-up instead of
breaking the page later), and answered from memory.

Everything the page needs comes from the node itself; the Content-Security-Policy
forbids scripts, styles, images and connections from any other host and any inline
script, so even a compromised display name in genesis cannot run code in the page.
The page verifies receipts in the browser (``runtime/web/verify.js``); the file a
person checks is hashed there and never sent (docs/guide-litigants.md).

Caching: every answer carries a strong ``ETag`` (SHA-256 of the bytes) and
``Cache-Control: no-cache``, so browsers revalidate and a node upgrade is seen at
once, while an unchanged file costs a ``304``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web

__all__ = ["ASSETS", "SECURITY_HEADERS", "WEB_DIR", "add_web_routes", "load_assets"]

WEB_DIR = Path(__file__).resolve().parent / "web"

_JS = "text/javascript; charset=utf-8"
#: The allow-list: URL name -> content type.  ``index.html`` is served at ``/`` only.
ASSETS: dict[str, str] = {
    "index.html": "text/html; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
    "app.js": _JS,
    "codes.js": _JS,
    "sha256.js": _JS,
    "msgpack.js": _JS,
    "merkle.js": _JS,
    "ed25519.js": _JS,
    "genesis.js": _JS,
    "verify.js": _JS,
    "i18n.js": _JS,
    "report.js": _JS,
}

CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data: blob:",
        "connect-src 'self'",
        "font-src 'self'",
        "worker-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
    )
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
}


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


def load_assets(web_dir: Path = WEB_DIR) -> dict[str, Asset]:
    """Read every allow-listed file; raise ``FileNotFoundError`` naming a missing one."""
    assets = {}
    for name, content_type in ASSETS.items():
        path = web_dir / name
        if not path.is_file():
            raise FileNotFoundError("web asset %s is missing (is runtime/web/ packaged?)" % path)
        body = path.read_bytes()
        assets[name] = Asset(body, content_type, '"%s"' % hashlib.sha256(body).hexdigest()[:32])
    return assets


def _not_found(name: str) -> web.Response:
    response = web.json_response(
        {"error": {"code": "no_such_asset", "message": "no asset named %r on this node" % name[:80]}}, status=404
    )
    response.headers.update(SECURITY_HEADERS)
    return response


def _answer(request: web.Request, asset: Asset) -> web.Response:
    headers = dict(SECURITY_HEADERS)
    headers.update({"ETag": asset.etag, "Cache-Control": "no-cache"})
    if asset.etag in {tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")}:
        return web.Response(status=304, headers=headers)
    headers["Content-Type"] = asset.content_type
    return web.Response(body=asset.body, headers=headers)


def add_web_routes(app: web.Application, web_dir: Path = WEB_DIR) -> None:
    """Register ``GET /`` and ``GET /assets/{name}`` (HEAD too) on ``app``."""
    assets = load_assets(web_dir)

    async def index(request: web.Request) -> web.Response:
        return _answer(request, assets["index.html"])

    async def asset(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        found = assets.get(name) if name != "index.html" else None
        return _not_found(name) if found is None else _answer(request, found)

    app.router.add_get("/", index)
    app.router.add_get("/assets/{name}", asset)
