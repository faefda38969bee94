"""What a cancellation means to a request in flight.

Before anything went upstream it stops the request; once a call is out the upstream may generate
and bill whether anyone waits or not, so the request is finished and its result kept. The
pipeline (`service.GenerationService.execute`) decides which applies; this module carries it out.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger("app.generation")
_T = TypeVar("_T")


async def outlive_caller(work: asyncio.Future[_T], stop: Callable[[], bool], *, stoppable: bool = True) -> _T:
    """Await `work` and decide what a cancellation of the awaiting task means.

    When `stop()` says so, the cancellation goes on: `work` is cancelled too (or, when not
    `stoppable`, awaited to its end, its failure raised first). Otherwise `work` runs to its end
    and its result is returned as if nobody had left; the cancellation is taken back, so that
    timeouts further up the task still tell their own cancellations apart.
    """
    taken_back = 0
    try:
        while True:
            try:
                return await asyncio.shield(work)
            except asyncio.CancelledError:
                if work.cancelled():
                    raise
                if stop():
                    if stoppable:
                        work.cancel()
                    await asyncio.wait({work})
                    if not stoppable:
                        work.result()
                    elif not work.cancelled():
                        work.exception()  # retrieved and dropped: the cancellation is the outcome now
                    raise
                if taken_back == 0:
                    log.info("the caller left after the upstream call went out; finishing the request")
                taken_back += 1
    finally:
        current = asyncio.current_task()
        if current is not None:
            for _ in range(taken_back):
                current.uncancel()
