"""Admission to the hot path's write transactions: a bounded number at once, "high" first.

Under a burst (thousands of callers arriving together) every caller wants a hold transaction,
and the answers coming back from the upstream want settle transactions. Left to the connection
pool's FIFO queue, settlements wait behind every hold queued before them, so nothing completes
while the burst lasts; on SQLite, concurrent writers also busy-wait for the single write lock in
sleeps of up to 100 ms. The gate queues callers in the event loop instead: at most `capacity`
gated transactions run at once (one on SQLite, where only one can write anyway), and a freed
slot goes to a waiting "high" transaction before any waiting "normal" one.

The generation pipeline places holds at "normal" and settles (captures or releases) at "high":
a settlement ends a request whose upstream work is done and frees its credits and its caller,
while a hold only starts new work, so letting settlements pass keeps requests completing
during a burst instead of piling up half-done.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

Priority = Literal["normal", "high"]


class WriteGate:
    def __init__(self, capacity: int) -> None:
        self._free = capacity
        self._high: deque[asyncio.Future[None]] = deque()
        self._normal: deque[asyncio.Future[None]] = deque()

    @asynccontextmanager
    async def slot(self, priority: Priority) -> AsyncIterator[None]:
        await self._acquire(priority)
        try:
            yield
        finally:
            self._hand_on()

    async def _acquire(self, priority: Priority) -> None:
        if self._free > 0 and not self._high and not self._normal:
            self._free -= 1
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        queue = self._high if priority == "high" else self._normal
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
        for queue in (self._high, self._normal):
            while queue:
                waiter = queue.popleft()
                if not waiter.done():
                    waiter.set_result(None)
                    return
        self._free += 1
