"""Helpers shared by the browser tests: a local aiohttp server in a thread, free ports.

``serve(app)`` runs an aiohttp application on 127.0.0.1 in a background thread and
returns its base URL and a stop function.  The JavaScript unit checks serve only
the page's files (``add_web_routes`` on a bare app); the end-to-end test talks to
real node processes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from typing import Callable

from aiohttp import web


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve(app: web.Application, timeout: float = 10) -> tuple[str, Callable[[], None]]:
    """Start ``app`` on a free port of 127.0.0.1 in a thread; return (base URL, stop)."""
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app, access_log=None)
    started = threading.Event()
    box: dict = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(runner.setup())
            site = web.TCPSite(runner, "127.0.0.1", 0)
            loop.run_until_complete(site.start())
            box["port"] = site._server.sockets[0].getsockname()[1]  # noqa: SLF001 - port 0 was asked for
        except BaseException as exc:  # noqa: BLE001 - reported to the caller below
            box["error"] = exc
        started.set()
        if "error" not in box:
            loop.run_forever()
        loop.run_until_complete(runner.cleanup())
        loop.close()

    thread = threading.Thread(target=run, name="test-web-server", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError("test web server did not start within %g s" % timeout)
    if "error" in box:
        raise box["error"]

    def stop() -> None:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)

    return "http://127.0.0.1:%d" % box["port"], stop
