"""Admission to the hot path's write transactions: a bounded number at once, settlements first.

Under a burst (thousands of callers arriving together) every caller wants a hold transaction,
and the answers coming back from the upstream want settle transactions. Left to the connection
pool's FIFO queue, settlements wait behind every hold queued before them, so nothing completes
while the burst lasts; on SQLite, concurrent writers also busy-wait for the single write lock in
sleeps of up to 100 ms. The gate queues callers in the event loop instead: at most `capacity`
hot-path transactions run at once (one on SQLite, where only one can write anyway), and a freed
slot goes to a waiting settlement before any waiting hold.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class WriteGate:
    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._urgent: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        await self._acquire(urgent)
        try:
            yield
        finally:
            self._hand_on()

    async def _acquire(self, urgent: bool) -> None:
        if self._free > 0 and not self._urgent and not self._normal:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._urgent if urgent else self._normal
        queue.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self._hand_on()  # the slot arrived together with the cancellation: pass it on
            elif waiter in queue:
                queue.remove(waiter)
            raise

    def _hand_on(self) -> None:
        for queue in (self._urgent, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
