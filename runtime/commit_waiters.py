"""Clients waiting for deposit codes to commit (``GET /v1/deposits/{code}?wait_ms=N``).

Theory of operation
-------------------
A client that has just submitted a deposit wants to know when it commits.  Polling
costs the node a request each time and answers late by up to the poll interval; a
waiting request costs one future and is answered in the turn of the event loop
after the one in which the block holding the code is appended.

:meth:`CommitWaiters.wait` registers a future under the code's store key and waits
for it at most the given time; :meth:`CommitWaiters.committed` is told the code keys
of every block the node appends (after the append's write, so a view read then sees
the deposit committed) and wakes their waiters.  Registration happens before the
first ``await``, so a block appended between the caller's check and its wait cannot
be missed: both run on the one event loop.

At most ``limit`` requests wait at once on a node, and at most ``per_source`` from
one client address; one more gets :class:`TooManyWaiters` (the API answers 503 with
``Retry-After``), so waiting clients can hold neither the node's memory nor its file
descriptors, and one address cannot take every place.  (The node also waits only
for codes pending in its own pool: ``runtime/service.py``.)  ``wanted()`` is false
when nobody waits, and the node then skips listing a block's codes altogether.
:meth:`close` answers every waiter at once and every later one too, so a stopping
node does not wait out parked requests.
"""

from __future__ import annotations

import asyncio
from typing import Iterable


class TooManyWaiters(Exception):
    """``limit`` requests are already waiting for commits on this node."""


class CommitWaiters:
    def __init__(self, limit: int, per_source: int):
        self.limit, self.per_source = limit, per_source
        self._waiting: dict[bytes, list[asyncio.Future]] = {}
        self._count = 0
        self._by_source: dict[str, int] = {}
        self._closed = False

    def __len__(self) -> int:
        return self._count

    def wanted(self) -> bool:
        return self._count > 0

    async def wait(self, code_key: bytes, timeout_s: float, source: str = "") -> bool:
        """Wait until ``code_key`` commits (``True``) or ``timeout_s`` passes, or the node
        stops (``False``).  ``source`` is the client's address."""
        if self._closed:
            return False
        if self._count >= self.limit:
            raise TooManyWaiters("%d requests are already waiting for commits on this node" % self._count)
        if self._by_source.get(source, 0) >= self.per_source:
            raise TooManyWaiters("%d requests from this address are already waiting for commits" % self.per_source)
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(code_key, []).append(future)
        self._count += 1
        self._by_source[source] = self._by_source.get(source, 0) + 1
        try:
            return await asyncio.wait_for(future, timeout_s)
        except asyncio.TimeoutError:
            return False
        finally:
            self._count -= 1
            left = self._by_source.pop(source) - 1
            if left:
                self._by_source[source] = left
            futures = self._waiting.get(code_key)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[code_key]

    def committed(self, code_keys: Iterable[bytes]) -> None:
        """Wake whoever waits for any of ``code_keys`` (the codes of a block just appended)."""
        waiting = self._waiting
        for key in code_keys:
            futures = waiting.pop(key, None)
            if futures:
                for future in futures:
                    if not future.done():
                        future.set_result(True)

    def close(self) -> None:
        """Answer every waiter now (not committed), and every later one at once."""
        self._closed = True
        for futures in self._waiting.values():
            for future in futures:
                if not future.done():
                    future.set_result(False)
