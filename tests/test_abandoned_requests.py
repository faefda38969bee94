"""A caller that leaves, or cancels its task, after the upstream call went out still gets (and
pays for) its images once; one that leaves before anything was sent pays nothing.

The upstream bills the gateway as soon as it generates, so abandoning a request mid-call must not
make the operator pay for images the caller then gets for free by retrying.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream, Reply
from tests.support.harness import Harness, running_app
from tests.support.raw_asgi import call_generation_raw

# The lease is long enough that a loaded machine never lets it lapse mid-call (a lapsed lease is
# claimed again and calls the upstream a second time, which is the crash path, not this one); the
# heartbeat that notices a cancel runs every lease / 3 = 1 s, well inside the upstream's delays.
TASK_SETTINGS = {"worker_poll_s": 0.05, "task_lease_s": 3.0, "channel_slot_wait_s": 8.0}


@pytest.fixture
async def gateway(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings.model_copy(update=TASK_SETTINGS)) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


async def called(ups: Upstreams, channel: str) -> None:
    """Wait until the channel's upstream has received a call (it runs in a thread of its own)."""
    for _ in range(500):
        if ups.calls(channel):
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{channel} was never called")


def slow(delay_s: float) -> Any:
    return lambda received: Reply(json=ok(received).json, delay_s=delay_s)


def leaving_after(body: bytes, seconds: float) -> Any:
    """An ASGI `receive` for a client that sends its body, then disconnects `seconds` later."""
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(seconds)
        return {"type": "http.disconnect"}

    return receive


async def discard(_message: dict[str, Any]) -> None:
    return None


async def test_leaving_after_the_upstream_call_went_out_finishes_charges_once_and_replays(
    gateway: tuple[Harness, Upstreams],
) -> None:
    gw, ups = gateway
    await ups.channel(gw, "slow", slow(1.0))
    account_id, key = await gw.account_with_key(credits=100)
    body = orjson.dumps({"prompt": "x", "n": 2})
    headers = [(b"idempotency-key", b"leave-1")]

    await asyncio.wait_for(call_generation_raw(gw, key, leaving_after(body, 0.3), discard, headers), timeout=10)

    (row,) = await gw.usage_rows()
    assert (row["status"], row["images_delivered"], row["credits"]) == ("succeeded", "2", "16")
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("84", "0")
    # The caller comes back with the same Idempotency-Key: its images, no second call or charge.
    again = await gw.http.post(
        "/v1/images/generations",
        content=body,
        headers={"authorization": f"Bearer {key}", "content-type": "application/json", "idempotency-key": "leave-1"},
    )
    assert again.status_code == 200, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert len(again.json()["data"]) == 2
    assert ups.calls("slow") == 1
    assert (await gw.account(account_id))["balance"] == "84"
    assert await gw.ledger_problems() == []


async def test_leaving_before_anything_was_sent_releases_the_hold(gateway: tuple[Harness, Upstreams]) -> None:
    gw, ups = gateway
    await ups.channel(gw, "narrow", slow(1.5), max_concurrency=1)
    account_id, key = await gw.account_with_key(credits=100)
    occupying = asyncio.ensure_future(gw.generate(key, {"prompt": "first"}))
    await called(ups, "narrow")

    # This one waits for the channel's only slot, and its caller leaves while it waits.
    body = orjson.dumps({"prompt": "second"})
    await asyncio.wait_for(call_generation_raw(gw, key, leaving_after(body, 0.3), discard), timeout=10)

    assert (await occupying).status_code == 200
    rows = {row["status"]: row for row in await gw.usage_rows()}
    assert set(rows) == {"succeeded", "canceled"}
    assert rows["canceled"]["credits"] == "0"
    assert ups.calls("narrow") == 1
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("92", "0")
    assert await gw.ledger_problems() == []


async def wait_for_task(gw: Harness, key: str, task_id: str, *statuses: str, timeout_s: float = 15) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        response = await gw.http.get(f"/v1/tasks/{task_id}", headers={"authorization": f"Bearer {key}"})
        task: dict[str, Any] = response.json()
        if task["status"] in statuses:
            return task
        assert time.monotonic() < deadline, f"task stuck in {task['status']}"
        await asyncio.sleep(0.05)


async def test_canceling_a_task_whose_upstream_call_is_out_still_delivers_it_once(
    gateway: tuple[Harness, Upstreams],
) -> None:
    gw, ups = gateway
    await ups.channel(gw, "slow", slow(3.0))
    account_id, key = await gw.account_with_key(credits=100)
    task = (await gw.generate(key, {"prompt": "x", "async": True})).json()
    await called(ups, "slow")

    canceled = await gw.http.post(f"/v1/tasks/{task['id']}/cancel", headers={"authorization": f"Bearer {key}"})
    assert canceled.status_code == 200

    done = await wait_for_task(gw, key, task["id"], "succeeded", "canceled", "failed")
    assert done["status"] == "succeeded"
    assert done["billing"]["credits"] == "8"
    assert len(done["result"]["data"]) == 1
    assert ups.calls("slow") == 1
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("92", "0")
    assert await gw.ledger_problems() == []


async def test_canceling_a_task_before_its_upstream_call_stops_it_and_charges_nothing(
    gateway: tuple[Harness, Upstreams],
) -> None:
    gw, ups = gateway
    await ups.channel(gw, "narrow", slow(4.0), max_concurrency=1)
    account_id, key = await gw.account_with_key(credits=100)
    occupying = asyncio.ensure_future(gw.generate(key, {"prompt": "first"}))
    await called(ups, "narrow")
    task = (await gw.generate(key, {"prompt": "second", "async": True})).json()
    await wait_for_task(gw, key, task["id"], "running")

    await gw.http.post(f"/v1/tasks/{task['id']}/cancel", headers={"authorization": f"Bearer {key}"})

    done = await wait_for_task(gw, key, task["id"], "succeeded", "canceled", "failed")
    assert (done["status"], done["error"]["code"]) == ("canceled", "canceled")
    assert (await occupying).status_code == 200
    assert ups.calls("narrow") == 1
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("92", "0")
    assert await gw.ledger_problems() == []
