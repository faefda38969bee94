"""The write gate that orders the hot path's transactions (app/db/write_gate.py)."""

from __future__ import annotations

import asyncio

from app.db.write_gate import Priority, WriteGate


async def test_a_freed_slot_goes_to_a_settlement_before_earlier_holds() -> None:
    gate = WriteGate(1)
    order: list[str] = []
    release_first = asyncio.Event()

    async def run(name: str, priority: Priority, until: asyncio.Event | None = None) -> None:
        async with gate.slot(priority):
            order.append(name)
            if until is not None:
                await until.wait()

    first = asyncio.create_task(run("hold-1", "normal", until=release_first))
    await asyncio.sleep(0)
    waiting = [asyncio.create_task(run("hold-2", "normal")), asyncio.create_task(run("hold-3", "normal"))]
    await asyncio.sleep(0)
    settle = asyncio.create_task(run("settle", "high"))
    await asyncio.sleep(0)
    assert order == ["hold-1"]
    release_first.set()
    await asyncio.gather(first, settle, *waiting)
    assert order == ["hold-1", "settle", "hold-2", "hold-3"]


async def test_capacity_bounds_how_many_run_at_once() -> None:
    gate = WriteGate(3)
    running = peak = 0

    async def work() -> None:
        nonlocal running, peak
        async with gate.slot("normal"):
            running += 1
            peak = max(peak, running)
            await asyncio.sleep(0.01)
            running -= 1

    await asyncio.gather(*(work() for _ in range(20)))
    assert peak == 3


async def test_a_waiter_cancelled_in_the_queue_leaves_no_slot_behind() -> None:
    gate = WriteGate(1)
    held = asyncio.Event()
    done = asyncio.Event()

    async def holder() -> None:
        async with gate.slot("normal"):
            held.set()
            await done.wait()

    owner = asyncio.create_task(holder())
    await held.wait()
    doomed = asyncio.create_task(gate.slot("high").__aenter__())
    await asyncio.sleep(0)
    doomed.cancel()
    done.set()
    await owner
    # The slot went back to the gate, not to the cancelled waiter: the next caller gets it at once.
    async with asyncio.timeout(1):
        async with gate.slot("normal"):
            pass
