"""Per-channel concurrency limits (`max_concurrency`) within this process.

A request waits briefly for a slot, then moves on to the next channel rather than queueing
behind a saturated one.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from app.specs import ChannelSpec


class ChannelSlots:
    def __init__(self) -> None:
        self._semaphores: dict[str, tuple[int, asyncio.Semaphore]] = {}

    def _semaphore(self, channel: ChannelSpec) -> asyncio.Semaphore | None:
        limit = channel.max_concurrency
        if limit is None:
            return None
        current = self._semaphores.get(channel.id)
        if current is None or current[0] != limit:
            # A changed limit takes effect for new requests; in-flight ones keep the old slot.
            current = (limit, asyncio.Semaphore(limit))
            self._semaphores[channel.id] = current
        return current[1]

    @asynccontextmanager
    async def slot(self, channel: ChannelSpec, wait_s: float) -> AsyncIterator[bool]:
        """Yields True with a slot held, or False when none came free within `wait_s`."""
        semaphore = self._semaphore(channel)
        if semaphore is None:
            yield True
            return
        if semaphore.locked():
            try:
                await asyncio.wait_for(semaphore.acquire(), timeout=max(wait_s, 0.001))
            except TimeoutError:
                yield False
                return
        else:
            await semaphore.acquire()  # free: returns at once
        try:
            yield True
        finally:
            semaphore.release()
