"""Clients waiting for deposit codes to commit (``GET /v1/deposits/{code}?wait_ms=N``).

Theory of operation
-------------------
A client that has just submitted a deposit wants to know when it commits.  Polling
costs the node a request each time and answers late by up to the poll interval; a
waiting request costs one future and is answered in the turn of the event loop in
which the block holding the code is appended.

:meth:`CommitWaiters.wait` registers a future under the code's store key and waits
for it at most the given time; :meth:`CommitWaiters.committed` is told the code keys
of every block the node appends (after the append's write, so a view read then sees
the deposit committed) and wakes their waiters.  Registration happens before the
first ``await``, so a block appended between the caller's check and its wait cannot
be missed: both run on the one event loop.

At most ``limit`` requests wait at once on a node; one more gets
:class:`TooManyWaiters` (the API answers 503 with ``Retry-After``), so waiting
clients cannot grow the node's memory without bound.  ``wanted()`` is false when
nobody waits, and the node then skips listing a block's codes altogether.
"""

from __future__ import annotations

import asyncio
from typing import Iterable


class TooManyWaiters(Exception):
    """``limit`` requests are already waiting for commits on this node."""


class CommitWaiters:
    def __init__(self, limit: int):
        self.limit = limit
        self._waiting: dict[bytes, list[asyncio.Future]] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def wanted(self) -> bool:
        return self._count > 0

    async def wait(self, code_key: bytes, timeout_s: float) -> bool:
        """Wait until ``code_key`` commits (``True``) or ``timeout_s`` passes (``False``)."""
        if self._count >= self.limit:
            raise TooManyWaiters("%d requests are already waiting for commits on this node" % self._count)
        future = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(code_key, []).append(future)
        self._count += 1
        try:
            await asyncio.wait_for(future, timeout_s)
            return True
        except asyncio.TimeoutError:
            return False
        finally:
            self._count -= 1
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
                        future.set_result(None)
