"""Stop working for a caller that has gone away, unless the upstream is already working for it.

Uvicorn does not cancel a handler when its client disconnects, so a generation would run (and a
slot on an upstream stay taken) for nobody. The pipeline runs as a task beside a watcher of the
connection, and a disconnect cancels it. What the cancellation means is the pipeline's decision:
before any upstream call it releases the hold and stops; after one went out it finishes the
request (the upstream bills us either way) and returns the result, which is then recorded as if
the caller were still there, so an `Idempotency-Key` retry replays it instead of paying again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable
from typing import TypeVar

from starlette.requests import Request

from app.errors import GatewayError

T = TypeVar("T")
log = logging.getLogger("app.api")


class ClientClosedRequest(GatewayError):
    status = 499  # nginx's name for it; the client never sees this response
    code = "client_closed_request"


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(request))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if task in done:
            return task.result()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            finished = await task
            log.info("client disconnected after the upstream call went out; the request was finished and charged")
            return finished
        log.info("client disconnected; generation cancelled and its hold released")
        raise ClientClosedRequest("The client closed the connection before the images were ready.")
    finally:
        watcher.cancel()
        if not task.done():
            task.cancel()


async def _disconnected(request: Request) -> None:
    """Returns once the client has gone (the body has already been read by then)."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return
