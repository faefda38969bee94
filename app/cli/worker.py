"""`image-gateway worker`: task workers, callbacks, retention and the sweeper, without HTTP."""

from __future__ import annotations

import asyncio
import logging
import signal

from app.runtime import open_gateway, task_deps
from app.settings import Settings
from app.tasks.background import Background

log = logging.getLogger("app.tasks")


async def run_worker(settings: Settings) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    async with open_gateway(settings) as gateway:
        background = Background(task_deps(gateway), run_worker=True)
        background.start()
        log.info("worker %s started", background.worker.owner if background.worker else "?")
        await stop.wait()
        log.info("worker stopping: running tasks get %.0f s, then go back to the queue", settings.shutdown_grace_s)
        await background.stop(settings.shutdown_grace_s)
