"""Failover, circuit breaking, rate-limit cooldowns, deadlines and disconnects, with fake
upstreams on 127.0.0.1 answering the way broken providers do."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import pytest

from app.settings import Settings
from tests.support.databases import REDIS_URL
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.raw_asgi import call_generation_raw


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    tuned = settings.model_copy(update={"breaker_failures": 3, "breaker_cooldown_s": 1.0, "channel_slot_wait_s": 0.1})
    async with running_app(tuned) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


async def test_503_fails_over_and_the_backup_multiplier_is_charged(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "primary", status(503), priority=10, multiplier="1")
    await ups.channel(gw, "backup", ok, priority=0, multiplier="2.5")
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x", "n": 2})

    assert response.status_code == 200, response.text
    assert response.json()["billing"]["channel_multiplier"] == "2.5"
    assert response.json()["billing"]["credits"] == "40"  # 8 × 1 × 2.5 × 2
    assert (await gw.account(account_id))["balance"] == "60"
    (row,) = await gw.usage_rows()
    assert (row["channel"], row["attempts"], row["channel_multiplier"]) == ("backup", "2", "2.5")
    assert await gw.ledger_problems() == []


async def test_an_open_circuit_stops_calls_and_recovery_closes_it(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    broken = await ups.channel(gw, "flaky", status(500), priority=10)
    await ups.channel(gw, "steady", ok, priority=0)
    _, key = await gw.account_with_key(credits=1000)

    for _ in range(20):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    # Three failures open it; after that only the odd probe gets through (cooldowns double).
    assert ups.calls("flaky") <= 6
    health = (await gw.admin("GET", f"/admin/channels/{broken['id']}")).json()["health"]
    assert health["state"] in ("open", "half_open")
    assert "fake 500" in health["last_error"]

    ups.behaviour["flaky"] = ok
    before = ups.calls("flaky")
    for _ in range(100):  # until the next probe reaches the recovered channel (≤ 10 s)
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
        if ups.calls("flaky") > before:
            break
        await asyncio.sleep(0.1)
    probed = ups.calls("flaky")
    for _ in range(5):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert ups.calls("flaky") - probed == 5  # the probe closed the circuit; priority routes there again
    health = (await gw.admin("GET", f"/admin/channels/{broken['id']}")).json()["health"]
    assert health["state"] == "closed"


async def test_upstream_400_is_not_failed_over(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "strict", status(400), priority=10)
    await ups.channel(gw, "other", ok)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 502
    assert response.headers["x-should-retry"] == "false"
    assert ups.calls("other") == 0
    assert (await gw.account(account_id))["balance"] == "100"


async def test_429_cools_the_channel_for_its_retry_after(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    limited = await ups.channel(gw, "limited", status(429, **{"retry-after": "30"}), priority=10)
    await ups.channel(gw, "spare", ok)
    _, key = await gw.account_with_key(credits=1000)

    for _ in range(5):
        assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert ups.calls("limited") == 1
    health = (await gw.admin("GET", f"/admin/channels/{limited['id']}")).json()["health"]
    assert health["state"] == "cooling"
    assert health["consecutive_failures"] == 0  # a 429 is not a fault of the channel
    assert health["retry_at"] is not None


async def test_only_rate_limited_channels_give_429_with_retry_after(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "a", status(429, **{"retry-after": "12"}))
    await ups.channel(gw, "b", status(429, **{"retry-after": "400"}))
    account_id, key = await gw.account_with_key(credits=100)

    first = await gw.generate(key, {"prompt": "x"})
    assert first.status_code == 429
    assert first.headers["retry-after"] == "12"
    # Both cool down now: the next caller is answered at once, without an upstream call.
    second = await gw.generate(key, {"prompt": "x"})
    assert second.status_code == 429
    assert 1 <= int(second.headers["retry-after"]) <= 12
    assert ups.calls("a") + ups.calls("b") == 2
    assert (await gw.account(account_id))["balance"] == "100"


async def test_slow_upstream_times_out_and_failover_only_where_allowed(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed

    def slow(received: Received) -> Reply:
        return Reply(json=ok(received).json, delay_s=2)

    slow_channel = await ups.channel(gw, "slow", slow, priority=10, timeout_s=0.3)
    await ups.channel(gw, "fast", ok)
    account_id, key = await gw.account_with_key(credits=100)

    timed_out = await gw.generate(key, {"prompt": "x"})
    assert timed_out.status_code == 504
    assert timed_out.json()["error"]["code"] == "upstream_timeout"
    assert timed_out.headers["x-should-retry"] == "false"
    assert ups.calls("fast") == 0
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")

    await gw.admin("PATCH", f"/admin/channels/{slow_channel['id']}", json={"retry_ambiguous": True})
    served = await gw.generate(key, {"prompt": "x"})
    assert served.status_code == 200
    assert ups.calls("fast") == 1
    assert await gw.ledger_problems() == []


async def test_all_channels_down_is_a_clean_502_with_nothing_charged(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    for name in ("one", "two", "three", "four"):
        await ups.channel(gw, name, status(503))
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x"})

    assert response.status_code == 502
    assert response.json()["error"]["code"] == "upstream_error"
    assert sum(ups.calls(n) for n in ("one", "two", "three", "four")) == 3  # GATEWAY_MAX_ATTEMPTS
    (row,) = await gw.usage_rows()
    assert (row["status"], row["credits"], row["attempts"]) == ("failed", "0", "3")
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")


async def test_channel_max_concurrency_moves_extra_requests_on(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed

    def slow(received: Received) -> Reply:
        return Reply(json=ok(received).json, delay_s=0.5)

    await ups.channel(gw, "narrow", slow, priority=10, max_concurrency=1)
    await ups.channel(gw, "wide", ok)
    _, key = await gw.account_with_key(credits=100)

    responses = await asyncio.gather(*(gw.generate(key, {"prompt": f"{i}"}) for i in range(3)))

    assert [r.status_code for r in responses] == [200, 200, 200]
    assert ups.calls("narrow") == 1
    assert ups.calls("wide") == 2


async def test_channel_changes_reach_another_replica_within_five_seconds(
    routed: tuple[Harness, Upstreams], settings: Settings
) -> None:
    gw, ups = routed
    channel = await ups.channel(gw, "only", ok)
    _, key = await gw.account_with_key(credits=100)
    async with running_app(settings) as other_replica:
        local = await other_replica.local_channel()
        assert local["enabled"] is False
        assert (await other_replica.generate(key, {"prompt": "x"})).status_code == 200
        await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={"enabled": False})
        for _ in range(50):
            if (await other_replica.generate(key, {"prompt": "x"})).status_code == 503:
                break
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the other replica still routes to a disabled channel after 5 s")


async def test_upstream_secrets_never_leak(routed: tuple[Harness, Upstreams], caplog: pytest.LogCaptureFixture) -> None:
    gw, ups = routed
    canary = "AIza-CANARY-5ecr3t-0f-7he-ch4nnel"

    def echo_key(received: Received) -> Reply:
        leaked = received.headers.get("x-goog-api-key", "")
        return Reply(
            403 if received.json["instances"][0]["prompt"] == "a" else 500,
            {"error": {"code": 500, "message": f"key {leaked} rejected; {leaked[:15]}", "status": "X"}},
        )

    caplog.set_level(logging.DEBUG)
    channel = await ups.channel(gw, "leaky", echo_key)
    await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={"auth": {"api_key": canary}})
    _, key = await gw.account_with_key(credits=100)

    texts = [(await gw.generate(key, {"prompt": prompt})).text for prompt in ("a", "b", "a")]
    texts.append((await gw.admin("GET", "/admin/channels")).text)
    texts.append((await gw.admin("GET", f"/admin/channels/{channel['id']}")).text)
    texts.append((await gw.admin("GET", "/admin/usage/export")).text)
    texts.append(caplog.text)
    assert any("[redacted]" in text for text in texts)
    for text in texts:
        assert canary not in text
        assert canary[:12] not in text


async def test_replicas_share_channel_health_through_redis(settings: Settings, upstream: FakeUpstream) -> None:
    shared = settings.model_copy(
        update={"redis_url": REDIS_URL, "breaker_failures": 2, "breaker_cooldown_s": 30, "cache_ttl_s": 0.1}
    )
    async with running_app(shared) as first, running_app(shared) as second:
        local = await first.local_channel()
        await first.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        ups = Upstreams(upstream)
        broken = await ups.channel(first, "broken", status(500), priority=10)
        await ups.channel(first, "fine", ok)
        _, key = await first.account_with_key(credits=1000)
        for _ in range(3):
            assert (await first.generate(key, {"prompt": "x"})).status_code == 200
        calls = ups.calls("broken")
        assert calls == 2  # opened by the first replica
        await asyncio.sleep(0.2)  # past the catalog cache, so the second replica knows the channels
        for _ in range(5):
            assert (await second.generate(key, {"prompt": "x"})).status_code == 200
        assert ups.calls("broken") == calls  # the second replica skips it too
        seen = (await second.admin("GET", f"/admin/channels/{broken['id']}")).json()["health"]
        assert seen["state"] == "open"


async def test_client_leaving_mid_body_is_499_not_an_internal_error(
    gw: Harness, caplog: pytest.LogCaptureFixture
) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    sent: list[dict[str, Any]] = []
    messages: list[dict[str, Any]] = [
        {"type": "http.request", "body": b'{"prompt": "', "more_body": True},
        {"type": "http.disconnect"},
    ]
    parts = iter(messages)

    async def receive() -> dict[str, Any]:
        return next(parts)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await call_generation_raw(gw, key, receive, send)

    assert sent[0]["status"] == 499
    assert "unhandled error" not in caplog.text
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")
