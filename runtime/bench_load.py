"""The load process of ``evledger bench cluster``: signed deposits, closed and open loops.

Runs in a process of its own (``multiprocessing`` spawn, see ``runtime.bench_cluster``)
and executes the phases the orchestrator sends over a pipe, answering with counts
and latencies.  Everything is signed for real (entries and HTTP requests, Ed25519);
to keep this process cheap, batches reuse a few pre-built item lists under a fresh
signature each (so each batch has its own codes), spliced into canonical bytes.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import time
from typing import Any

CATEGORY = "general"


def percentile(values: list[float], q: float) -> float | None:
    """The ``q``-quantile (0..1) by nearest rank; ``None`` for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


def latency_summary(values_s: list[float]) -> dict[str, Any]:
    ms = [v * 1000 for v in values_s]
    return {"samples": len(ms), "p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99),
            "max_ms": max(ms) if ms else None}


class _Identity:
    def __init__(self, name: str, seed_hex: str):
        from ledger.crypto import SecretKey

        self.name = name
        self.key = SecretKey(bytes.fromhex(seed_hex))


class _BodyMaker:
    """Signed deposit-request bodies, cheap to make many of, spliced into canonical bytes.

    Batches: a few item lists of ``size`` items are built once (random digests)
    with their wire arrays encoded once; each body is a *fresh* signed deposit over
    one of them (its own ``client_time``, so its own signature and codes).
    Singles: a fresh random digest each time, signed like any other deposit.
    """

    def __init__(self, size: int, lists: int = 16):
        from ledger.codec import array_header, encode
        from ledger.model import DepositItem, items_root

        self.size = size
        self.pools = []
        for _ in range(lists):
            items = [DepositItem(os.urandom(32), None, CATEGORY, None, {}, None) for _ in range(size)]
            self.pools.append((items_root(items), self._items_bytes(items), self._private_bytes(size)))
        self.prefix = (array_header(3) + encode("deposit-request") + encode(1) + array_header(1) + array_header(5)
                       + encode("entry-record") + encode(1))
        self.single_private = self._private_bytes(1)
        self.counter = 0
        self.t0 = int(time.time() * 1000)

    @staticmethod
    def _items_bytes(items) -> bytes:
        from ledger.codec import array_header, encode

        return array_header(len(items)) + b"".join(encode(item.wire()) for item in items)

    @staticmethod
    def _private_bytes(count: int) -> bytes:
        from ledger.codec import array_header, encode

        return array_header(count) + encode(None) * count

    def _signed(self, who: _Identity, chain_id: str, count: int, root: bytes, items_bytes: bytes,
                private_bytes: bytes) -> bytes:
        from ledger.codec import encode
        from ledger.model import Deposit, Entry

        self.counter += 1
        deposit = Deposit(depositor=who.name, client_time=self.t0 + self.counter, item_count=count, items_root=root)
        entry = Entry.sign(deposit, who.key, chain_id)
        return self.prefix + encode(entry.wire()) + items_bytes + private_bytes

    def batch(self, who: _Identity, chain_id: str) -> bytes:
        root, items_bytes, private_bytes = self.pools[self.counter % len(self.pools)]
        return self._signed(who, chain_id, self.size, root, items_bytes, private_bytes)

    def single(self, who: _Identity, chain_id: str) -> bytes:
        from ledger.model import DepositItem, items_root

        items = [DepositItem(os.urandom(32), None, CATEGORY, None, {}, None)]
        return self._signed(who, chain_id, 1, items_root(items), self._items_bytes(items), self.single_private)


class _Loader:
    """The load process's state: an HTTP client (``runtime.bench_http``), identities and counters."""

    def __init__(self, apis: list[str], chain_id: str, identities: list[_Identity], batch: int):
        self.apis, self.chain_id, self.identities = apis, chain_id, identities
        self.maker = _BodyMaker(batch)
        self.session = None
        self.rr = 0

    async def open(self) -> None:
        from runtime.bench_http import Client

        self.session = Client(timeout_s=60.0)

    async def close(self) -> None:
        await self.session.close()

    async def get_json(self, api: str, path: str) -> tuple[int, Any]:
        """GET ``path``; (status, decoded JSON body or ``None`` when it is not JSON)."""
        resp = await self.session.call("GET", api, path)
        try:
            return resp.status, json.loads(resp.body)
        except ValueError:
            return resp.status, None

    def body(self, kind: str, who: _Identity) -> bytes:
        return self.maker.single(who, self.chain_id) if kind == "single" else self.maker.batch(who, self.chain_id)

    async def submit(self, api: str, who: _Identity, body: bytes) -> tuple[int, Any, float]:
        """POST one body; (status, answer or None, Retry-After seconds)."""
        from runtime.auth import sign_request

        headers = sign_request(who.key, who.name, self.chain_id, "POST", "/v1/deposits", body,
                               int(time.time() * 1000))
        headers["Content-Type"] = "application/msgpack"
        resp = await self.session.call("POST", api, "/v1/deposits", body, headers)
        retry = resp.headers.get("retry-after")
        doc = json.loads(resp.body) if resp.status in (200, 202) else None
        return resp.status, doc, float(retry) if retry and retry.isascii() and retry.isdigit() else 0.0

    async def height_of(self, api: str, code: str, wait_ms: int = 0) -> int | None:
        """The code's height once committed at ``api``, else ``None``; ``wait_ms`` lets the node
        answer as soon as it commits (``GET /v1/deposits/{code}?wait_ms=``) instead of at once."""
        status, doc = await self.get_json(api, "/v1/deposits/" + code + ("?wait_ms=%d" % wait_ms if wait_ms else ""))
        if status != 200 or not isinstance(doc, dict):
            return None
        return doc.get("height") if doc.get("state") == "committed" else None

    def next_api(self, exclude: frozenset[str] = frozenset()) -> str:
        for _ in range(len(self.apis)):
            self.rr += 1
            api = self.apis[self.rr % len(self.apis)]
            if api not in exclude:
                return api
        raise RuntimeError("no node to send to")


class _Tracker:
    """Follows sampled deposit codes to commit at the node each was submitted to.

    Each sample is followed by a task of its own: it asks the node for the code with
    ``wait_ms`` (``WAIT_MS``), so the node answers as soon as it has appended the
    block holding the code, and stamps the sample with the
    time its own answer arrived.  So a latency is high by at most one request, and a
    slow sample, or a slow answer, does not delay the others.  A request that comes
    back without the commit (the wait ran out, an error) is asked again after
    ``interval`` s.  (Polling only the oldest outstanding sample, as this did before,
    recorded every sample queued behind a slow one as slow too; polling each sample
    on a timer loaded the node it measured and added up to an interval.)
    ``in_order`` polls the oldest sample every ``interval`` s instead, for the
    failover phase, which samples every request and only needs the first commit
    after the kill: the survivors it measures should not hold hundreds of waits.

    :meth:`run` returns once ``done`` is set (the phase decides when it ends).
    """

    MAX_POLL_S = 0.05
    WAIT_MS = 5_000  # short: a follower cancelled at the end of a phase leaves its wait parked at the node

    def __init__(self, loader: _Loader, interval: float, in_order: bool = False):
        self.loader, self.interval, self.in_order = loader, interval, in_order
        self.outstanding: list[tuple[str, str, float]] = []  # (api, code, submitted at), in submit order
        self.latencies: list[float] = []
        self.commits: list[tuple[float, float]] = []  # (submitted, committed)
        self.done = False
        self._followers: set[asyncio.Task] = set()

    def add(self, api: str, code: str, submitted: float) -> None:
        sample = (api, code, submitted)
        self.outstanding.append(sample)
        if not self.in_order:
            task = asyncio.ensure_future(self._follow(sample))
            self._followers.add(task)
            task.add_done_callback(self._followers.discard)

    async def _committed(self, sample: tuple[str, str, float], wait_ms: int = 0) -> bool:
        try:
            return await self.loader.height_of(sample[0], sample[1], wait_ms) is not None
        except Exception:  # noqa: BLE001 - a node gone (failover) or busy: try again
            return False

    def _record(self, sample: tuple[str, str, float], now: float) -> None:
        self.latencies.append(now - sample[2])
        self.commits.append((sample[2], now))

    async def _follow(self, sample: tuple[str, str, float]) -> None:
        while not self.done:
            committed = await self._committed(sample, self.WAIT_MS)
            now = time.monotonic()
            if committed:
                self._record(sample, now)
                self.outstanding.remove(sample)
                return
            await asyncio.sleep(self.interval)

    async def run(self) -> None:
        """Poll in order (``in_order``) or wait for the followers, until ``done``."""
        while not self.done:
            while self.in_order and self.outstanding and await self._committed(self.outstanding[0]):
                self._record(self.outstanding.pop(0), time.monotonic())
            # Independent samples poll in their own tasks: here only ``done`` is watched.
            await asyncio.sleep(self.interval if self.in_order else self.MAX_POLL_S)
        for task in list(self._followers):
            task.cancel()


async def _closed_loop(loader: _Loader, kind: str, seconds: float, concurrency: int, window: int) -> dict:
    """``concurrency`` workers, each sending its next request when the last is answered,
    while the node's backlog (items admitted, not yet committed) is under ``window``.

    Admission answers 202 long before commit; without the window a closed loop
    measures how fast nodes admit, and the growing backlog starves consensus.
    """
    deadline = time.monotonic() + seconds
    counts = {"requests": 0, "accepted_items": 0, "busy": 0, "errors": 0, "held_s": 0.0}
    statuses: dict[str, int] = {}
    gate = {"open": True}

    async def pending(api: str) -> int | None:
        try:
            return (await loader.get_json(api, "/v1/status"))[1]["pending"]
        except Exception:  # noqa: BLE001 - a node busy or gone: the others decide
            return None

    async def monitor() -> None:
        # The largest backlog of any node: the primary holds every pending request,
        # a backup those submitted to it (and the primary's).
        while time.monotonic() < deadline:
            known = [p for p in await asyncio.gather(*map(pending, loader.apis)) if p is not None]
            if known:
                gate["open"] = max(known) < window
            await asyncio.sleep(0.02)

    async def worker(index: int) -> None:
        who = loader.identities[index % len(loader.identities)]
        while time.monotonic() < deadline:
            if not gate["open"]:
                counts["held_s"] += 0.005
                await asyncio.sleep(0.005)
                continue
            api = loader.next_api()
            body = loader.body(kind, who)
            try:
                status, doc, retry = await loader.submit(api, who, body)
            except Exception as exc:  # noqa: BLE001 - counted and reported
                counts["errors"] += 1
                statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                await asyncio.sleep(0.05)
                continue
            counts["requests"] += 1
            statuses[str(status)] = statuses.get(str(status), 0) + 1
            if status in (200, 202):
                counts["accepted_items"] += len(doc["deposits"])
            elif status in (429, 503):
                counts["busy"] += 1
                await asyncio.sleep(min(retry or 0.05, 0.5))
            else:
                counts["errors"] += 1

    await asyncio.gather(monitor(), *(worker(i) for i in range(concurrency)))
    return {**counts, "statuses": statuses, "window_items": window}


async def _open_loop(loader: _Loader, kind: str, seconds: float, rate: float, sample_every: float,
                     poll: float, exclude: frozenset[str] = frozenset(), max_in_flight: int = 2000,
                     on_tick=None, in_order: bool = False) -> tuple[dict, _Tracker]:
    """Send ``rate`` requests/s for ``seconds``; follow one request's first code every ``sample_every`` s."""
    start = time.monotonic()
    deadline = start + seconds
    tracker = _Tracker(loader, poll, in_order)
    tracking = asyncio.ensure_future(tracker.run())
    counts = {"requests": 0, "accepted_items": 0, "busy": 0, "errors": 0, "skipped": 0}
    statuses: dict[str, int] = {}
    in_flight: set[asyncio.Task] = set()
    next_sample = start
    who_index = 0

    async def one(api: str, who: _Identity, sample: bool) -> None:
        body = loader.body(kind, who)
        submitted = time.monotonic()
        try:
            status, doc, _ = await loader.submit(api, who, body)
        except Exception as exc:  # noqa: BLE001
            counts["errors"] += 1
            statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
            return
        counts["requests"] += 1
        statuses[str(status)] = statuses.get(str(status), 0) + 1
        if status in (200, 202):
            counts["accepted_items"] += len(doc["deposits"])
            if sample:
                tracker.add(api, doc["deposits"][-1]["code"], submitted)
        elif status in (429, 503):
            counts["busy"] += 1
        else:
            counts["errors"] += 1

    i = 0
    while True:
        now = time.monotonic()
        if now >= deadline:
            break
        if on_tick is not None:
            on_tick(now)
        due = start + i / rate
        if due > now:
            await asyncio.sleep(min(due - now, 0.01))
            continue
        i += 1
        if len(in_flight) >= max_in_flight:
            counts["skipped"] += 1
            continue
        sample = now >= next_sample
        if sample:
            next_sample = now + sample_every
        who = loader.identities[who_index % len(loader.identities)]
        who_index += 1
        task = asyncio.ensure_future(one(loader.next_api(exclude), who, sample))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    if in_flight:
        await asyncio.wait(in_flight, timeout=30)
    tracker_deadline = time.monotonic() + 30
    while tracker.outstanding and time.monotonic() < tracker_deadline:
        await asyncio.sleep(0.01)
    tracker.done = True
    await tracking
    return {**counts, "statuses": statuses, "achieved_rps": counts["requests"] / seconds}, tracker


async def _idle(loader: _Loader, seconds: float) -> dict:
    deadline = time.monotonic() + seconds
    who = loader.identities[0]
    latencies = []
    while time.monotonic() < deadline:
        api = loader.next_api()
        body = loader.body("single", who)
        submitted = time.monotonic()
        status, doc, _ = await loader.submit(api, who, body)
        if status not in (200, 202):
            raise RuntimeError("idle deposit refused: HTTP %d" % status)
        code = doc["deposits"][0]["code"]
        while await loader.height_of(api, code, wait_ms=5_000) is None:  # a 429/503 or a wait run out: ask again
            if time.monotonic() - submitted > 30:
                raise RuntimeError("an idle deposit did not commit within 30 s")
            await asyncio.sleep(0.001)
        latencies.append(time.monotonic() - submitted)
        await asyncio.sleep(0.02)
    return {"latency": latency_summary(latencies), "latencies_s": latencies}


async def _failover(loader: _Loader, victim_api: str, victim_pid: int, watch_api: str, rate: float,
                    before: float, after_limit: float) -> dict:
    exclude = frozenset({victim_api})
    state: dict[str, Any] = {"killed_at": None, "view_changed_at": None}

    def tick(now: float) -> None:
        if state["killed_at"] is None and now - start >= before:
            os.kill(victim_pid, signal.SIGKILL)
            state["killed_at"] = time.monotonic()

    async def watch_view() -> None:
        first = None
        while state["view_changed_at"] is None:
            try:
                doc = (await loader.get_json(watch_api, "/v1/status"))[1]
                if first is None:
                    first = doc["view"]
                elif doc["view"] != first and state["killed_at"] is not None:
                    state["view_changed_at"] = time.monotonic()
                    state["new_primary"] = doc["primary"]
            except Exception:  # noqa: BLE001
                pass
            await asyncio.sleep(0.01)

    start = time.monotonic()
    watcher = asyncio.ensure_future(watch_view())
    counts, tracker = await _open_loop(loader, "single", before + after_limit, rate, 0.0, 0.01, exclude,
                                       on_tick=tick, in_order=True)
    watcher.cancel()
    killed = state["killed_at"]
    after = [c for s, c in tracker.commits if killed is not None and s >= killed]
    resumed = min(after) - killed if after else None
    return {"resume_s": resumed, "view_change_seen_s": None if state["view_changed_at"] is None
            else state["view_changed_at"] - killed, "new_primary": state.get("new_primary"),
            "post_kill_commits": len(after), "load": counts}


def run_load_process(conn, apis: list[str], chain_id: str, identities: list[tuple[str, str]], batch: int) -> None:
    """Entry point of the load process: runs the phases the orchestrator sends, answers with results."""
    try:
        os.nice(0)
    except OSError:
        pass

    async def serve() -> None:
        loader = _Loader(apis, chain_id, [_Identity(n, s) for n, s in identities], batch)
        await loader.open()
        loop = asyncio.get_running_loop()
        try:
            conn.send({"ready": True})
            while True:
                command = await loop.run_in_executor(None, conn.recv)
                what = command["phase"]
                if what == "stop":
                    break
                try:
                    if what == "idle":
                        result = await _idle(loader, command["seconds"])
                    elif what == "closed":
                        result = await _closed_loop(loader, command["kind"], command["seconds"],
                                                    command["concurrency"], command["window"])
                    elif what == "open":
                        counts, tracker = await _open_loop(loader, command["kind"], command["seconds"],
                                                           command["rate"], command["sample_every"],
                                                           command["poll"])
                        result = {**counts, "latency": latency_summary(tracker.latencies)}
                    elif what == "failover":
                        result = await _failover(loader, command["victim_api"], command["victim_pid"],
                                                 command["watch_api"], command["rate"], command["before"],
                                                 command["after"])
                    else:
                        raise ValueError("unknown phase %r" % what)
                    conn.send({"ok": True, "result": result})
                except Exception as exc:  # noqa: BLE001 - reported to the orchestrator
                    conn.send({"ok": False, "error": "%s: %s" % (type(exc).__name__, exc)})
        finally:
            await loader.close()

    asyncio.run(serve())
