"""The loops a gateway process runs besides serving HTTP: the task worker, callback and alert
delivery, retention and the hold sweeper. `serve` runs them in-process (unless GATEWAY_RUN_WORKER=false,
which keeps only the sweeper); `image-gateway worker` runs them alone on any machine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from app.billing.sweeper import expire_stale_holds
from app.tasks.callbacks import deliver_due_callbacks
from app.tasks.deps import TaskDeps
from app.tasks.retention import purge_expired
from app.tasks.worker import TaskWorker

log = logging.getLogger("app.tasks")
RETENTION_INTERVAL_S = 300.0


class Background:
    def __init__(self, deps: TaskDeps, *, run_worker: bool) -> None:
        self.deps = deps
        self.worker = TaskWorker(deps) if run_worker else None
        self._loops: list[asyncio.Task[None]] = []

    def start(self) -> None:
        self._every("hold-sweeper", self.deps.sweep_interval_s, self._sweep)
        if self.worker is not None:
            self._loops.append(asyncio.create_task(self.worker.run(), name="task-worker"))
            self._every("callbacks", self.deps.worker_poll_s, self._callbacks)
            if self.deps.alerts is not None:
                self._every("alerts", self.deps.worker_poll_s, self.deps.alerts.deliver_due)
            else:
                log.info("alerts are queued but not sent: GATEWAY_ALERT_URL is unset (GET /admin/alerts lists them)")
            self._every("retention", RETENTION_INTERVAL_S, self._retention)

    async def stop(self, grace_s: float) -> None:
        if self.worker is not None:
            await self.worker.stop(grace_s)
        for loop in self._loops:
            loop.cancel()
        for loop in self._loops:
            with contextlib.suppress(asyncio.CancelledError):
                await loop

    def _every(self, name: str, interval_s: float, job: Callable[[], Awaitable[object]]) -> None:
        async def loop() -> None:
            while True:
                try:
                    await job()
                except Exception:  # a database blip must not end the loop; the next round retries
                    log.exception("%s failed", name)
                await asyncio.sleep(interval_s)

        self._loops.append(asyncio.create_task(loop(), name=name))

    async def _sweep(self) -> int:
        return await expire_stale_holds(self.deps.db, self.deps.hold_timeout_s)

    async def _callbacks(self) -> int:
        return await deliver_due_callbacks(self.deps)

    async def _retention(self) -> int:
        return await purge_expired(self.deps.db, self.deps.files.blobs)
