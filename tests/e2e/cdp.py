"""A tiny Chrome DevTools Protocol driver for the browser tests (no Selenium, no Playwright).

Theory of operation
-------------------
:class:`Chromium` starts Debian's ``chromium`` headless with
``--remote-debugging-port=0``; the browser picks a free port and writes it, with
the browser target's WebSocket path, to ``DevToolsActivePort`` in its profile
folder, which we poll (with a deadline) instead of parsing its log.  One aiohttp
WebSocket carries every command; a page is a target attached in *flat* mode, so
commands for it carry its ``sessionId`` and its events come back tagged with it.

The tests are plain synchronous pytest functions, so the asyncio loop runs in a
background thread and :class:`Page` methods block on it with timeouts
(``asyncio.run_coroutine_threadsafe``).  Every wait is for a condition with a
deadline, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """Path of Debian's chromium, or ``None`` (the tests then skip)."""
    override = os.environ.get("EVLEDGER_CHROMIUM")
    if override:
        return override
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CDPError(Exception):
    """The browser answered a command with an error, or a wait timed out."""


class _Connection:
    """One WebSocket to the browser; commands are matched to answers by id."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse, session: aiohttp.ClientSession):
        self.ws, self.session = ws, session
        self.ids = itertools.count(1)
        self.pending: dict[int, asyncio.Future] = {}
        self.listeners: list[tuple[str | None, asyncio.Queue]] = []
        self.reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = json.loads(msg.data)
            if "id" in data:
                future = self.pending.pop(data["id"], None)
                if future is not None and not future.done():
                    future.set_result(data)
            else:
                for session_id, queue in self.listeners:
                    if session_id is None or data.get("sessionId") == session_id:
                        queue.put_nowait(data)
        for future in self.pending.values():
            if not future.done():
                future.set_exception(CDPError("the browser closed the DevTools connection"))

    async def send(self, method: str, params: dict | None = None, session_id: str | None = None,
                   timeout: float = 30) -> dict:
        msg_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[msg_id] = future
        message: dict[str, Any] = {"id": msg_id, "method": method, "params": params or {}}
        if session_id:
            message["sessionId"] = session_id
        await self.ws.send_str(json.dumps(message))
        try:
            answer = await asyncio.wait_for(future, timeout)
        except asyncio.TimeoutError:
            raise CDPError("no answer to %s within %g s" % (method, timeout)) from None
        if "error" in answer:
            raise CDPError("%s failed: %s" % (method, answer["error"]))
        return answer.get("result", {})

    async def close(self) -> None:
        await self.ws.close()
        await self.session.close()
        self.reader.cancel()


class Chromium:
    """A headless chromium process with a private profile, driven over CDP."""

    def __init__(self, executable: str | None = None, *, startup_timeout: float = 30):
        self.executable = executable or find_chromium()
        if not self.executable:
            raise FileNotFoundError("chromium is not installed")
        self.profile = Path(tempfile.mkdtemp(prefix="evledger-chromium-"))
        self.downloads = self.profile / "downloads"
        self.downloads.mkdir()
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="cdp-loop", daemon=True)
        self.thread.start()
        self.process = subprocess.Popen(
            [self.executable, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
             "--disable-dev-shm-usage",
             "--user-data-dir=%s" % self.profile, "--remote-debugging-port=0", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
        try:
            port, path = self._active_port(startup_timeout)
            self.conn: _Connection = self.run(self._connect("ws://127.0.0.1:%d%s" % (port, path)))
        except BaseException:
            self.close()
            raise

    def _active_port(self, timeout: float) -> tuple[int, str]:
        marker = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")[-2000:] if self.process.stderr else ""
                raise CDPError("chromium exited with %s before DevTools was up: %s" % (self.process.returncode, err))
            try:
                lines = marker.read_text().split("\n")
                if len(lines) >= 2 and lines[0].strip().isdigit() and lines[1].startswith("/"):
                    return int(lines[0]), lines[1].strip()
            except FileNotFoundError:
                pass
            time.sleep(0.05)
        raise CDPError("chromium wrote no DevToolsActivePort within %g s" % timeout)

    async def _connect(self, url: str) -> _Connection:
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        return _Connection(ws, session)

    def run(self, coro: Any, timeout: float = 60) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    @staticmethod
    async def _cancel_tasks() -> None:
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def new_page(self) -> "Page":
        return Page(self)

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                self.run(conn.send("Browser.close", timeout=5), timeout=10)
            except Exception:  # noqa: BLE001 - the process is killed below anyway
                pass
            try:
                self.run(conn.close(), timeout=5)
            except Exception:  # noqa: BLE001
                pass
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        if self.process.stderr:
            self.process.stderr.close()
        try:
            self.run(self._cancel_tasks(), timeout=10)
        except Exception:  # noqa: BLE001
            pass
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()
        shutil.rmtree(self.profile, ignore_errors=True)


class Page:
    """One tab: navigate, evaluate JavaScript, set files, screenshots, network log."""

    def __init__(self, browser: Chromium):
        self.browser = browser
        self.events: asyncio.Queue = asyncio.Queue()
        self.requests: list[dict] = []  # Network.requestWillBeSent params, in order
        self.console: list[str] = []
        self.exceptions: list[str] = []
        self.session_id = browser.run(self._open())

    async def _open(self) -> str:
        conn = self.browser.conn
        target = await conn.send("Target.createTarget", {"url": "about:blank"})
        self.target_id = target["targetId"]
        attached = await conn.send("Target.attachToTarget", {"targetId": self.target_id, "flatten": True})
        session_id = attached["sessionId"]
        queue: asyncio.Queue = asyncio.Queue()
        conn.listeners.append((session_id, queue))
        self._pump = asyncio.get_running_loop().create_task(self._collect(queue))
        for domain in ("Page", "Runtime", "Network", "DOM"):
            await conn.send(domain + ".enable", {}, session_id)
        await conn.send("Browser.setDownloadBehavior",
                        {"behavior": "allow", "downloadPath": str(self.browser.downloads), "eventsEnabled": True})
        return session_id

    async def _collect(self, queue: asyncio.Queue) -> None:
        while True:
            event = await queue.get()
            method, params = event.get("method"), event.get("params", {})
            if method == "Network.requestWillBeSent":
                request = dict(params["request"])
                if request.get("hasPostData") and "postData" not in request:
                    try:
                        body = await self.browser.conn.send("Network.getRequestPostData",
                                                            {"requestId": params["requestId"]}, self.session_id)
                        request["postData"] = body.get("postData", "")
                    except CDPError:
                        request["postData"] = "<unavailable>"
                self.requests.append(request)
            elif method == "Runtime.consoleAPICalled":
                self.console.append(" ".join(str(a.get("value", a.get("description", ""))) for a in params["args"]))
            elif method == "Runtime.exceptionThrown":
                details = params["exceptionDetails"]
                self.exceptions.append(details.get("exception", {}).get("description") or details.get("text", ""))
            await self.events.put(event)

    def send(self, method: str, params: dict | None = None, timeout: float = 30) -> dict:
        return self.browser.run(self.browser.conn.send(method, params, self.session_id, timeout), timeout + 5)

    def navigate(self, url: str, ready: str = "document.documentElement.dataset.ready === 'true'",
                 timeout: float = 20) -> None:
        """Open ``url`` and wait until the JavaScript expression ``ready`` is true."""
        answer = self.send("Page.navigate", {"url": url})
        if answer.get("errorText"):
            raise CDPError("navigation to %s failed: %s" % (url, answer["errorText"]))
        self.wait_for(ready, timeout, "page %s to be ready" % url)

    def evaluate(self, expression: str, timeout: float = 30) -> Any:
        """Value of a JavaScript expression (promises are awaited); JS errors raise CDPError."""
        result = self.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                                "returnByValue": True, "userGesture": True}, timeout)
        if "exceptionDetails" in result:
            details = result["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            raise CDPError("JavaScript failed: %s\nin: %s" % (text, expression[:500]))
        return result["result"].get("value")

    def wait_for(self, expression: str, timeout: float = 20, what: str | None = None) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = self.evaluate(expression, timeout=10)
                if last:
                    return last
            except CDPError as exc:  # e.g. during navigation
                last = exc
            time.sleep(0.05)
        raise CDPError("timed out after %g s waiting for %s (last: %r; exceptions: %s)"
                       % (timeout, what or expression, last, self.exceptions[-3:]))

    def type_into(self, selector: str, text: str) -> None:
        """Focus ``selector``, clear it and type ``text`` as keyboard input (fires input events)."""
        self.evaluate("(() => { const e = document.querySelector(%s); e.focus(); e.select(); })()"
                      % json.dumps(selector))
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", "key": "Backspace", "code": "Backspace",
                                             "windowsVirtualKeyCode": 8})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", "key": "Backspace", "code": "Backspace",
                                             "windowsVirtualKeyCode": 8})
        self.send("Input.insertText", {"text": text})

    def set_file(self, selector: str, path: str | os.PathLike) -> None:
        """Choose ``path`` in the file input ``selector`` (as a person would in the file dialog)."""
        doc = self.send("DOM.getDocument", {"depth": 0})
        node = self.send("DOM.querySelector", {"nodeId": doc["root"]["nodeId"], "selector": selector})
        if not node.get("nodeId"):
            raise CDPError("no element matches %s" % selector)
        self.send("DOM.setFileInputFiles", {"files": [str(path)], "nodeId": node["nodeId"]})

    def screenshot(self, path: str | os.PathLike, full_page: bool = True) -> None:
        params: dict[str, Any] = {"format": "png"}
        if full_page:
            metrics = self.send("Page.getLayoutMetrics")
            size = metrics.get("cssContentSize") or metrics["contentSize"]
            params.update(captureBeyondViewport=True,
                          clip={"x": 0, "y": 0, "width": size["width"], "height": size["height"], "scale": 1})
        data = self.send("Page.captureScreenshot", params)["data"]
        Path(path).write_bytes(base64.b64decode(data))

    def pdf(self, path: str | os.PathLike) -> bytes:
        data = base64.b64decode(self.send("Page.printToPDF", {"printBackground": True}, timeout=60)["data"])
        Path(path).write_bytes(data)
        return data

    def set_viewport(self, width: int, height: int) -> None:
        self.send("Emulation.setDeviceMetricsOverride",
                  {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False})

    def close(self) -> None:
        try:
            self.browser.run(self.browser.conn.send("Target.closeTarget", {"targetId": self.target_id}), 10)
        except Exception:  # noqa: BLE001
            pass
        self.browser.loop.call_soon_threadsafe(self._pump.cancel)
