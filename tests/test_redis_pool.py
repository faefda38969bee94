"""Redis under load and Redis gone: one pooled client per process, bursts wait for a connection
instead of failing, and an unreachable Redis is a 503 that holds and charges nothing."""

from __future__ import annotations

import asyncio
import secrets
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis.asyncio import BlockingConnectionPool, Redis

from app.errors import RateLimiterUnavailable
from app.keys.auth import Caller
from app.keys.limits import KeyLimiter
from app.redis_client import open_redis
from app.settings import Settings
from tests.support.databases import REDIS_URL
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app
from tests.support.processes import free_port


def _with(settings: Settings, **changes: Any) -> Settings:
    return Settings(**{**settings.model_dump(), **changes}, _env_file=None)


async def _forget(key_ids: list[str], channel_ids: list[str]) -> None:
    """Delete what a test left in the shared Redis. Key and channel ids are random per test
    database, so parallel workers never share these keys while the test runs."""
    redis = Redis.from_url(REDIS_URL)
    try:
        patterns = [f"*{key_id}*" for key_id in key_ids] + [f"igw:health:{cid}*" for cid in channel_ids]
        for pattern in patterns:
            keys = [key async for key in redis.scan_iter(match=pattern)]
            if keys:
                await redis.delete(*keys)
    finally:
        await redis.aclose()


@pytest.fixture
async def small_pool(settings: Settings) -> AsyncIterator[Harness]:
    """The gateway on the real Redis with a deliberately small pool: 5 connections for everything.
    Keys stay cached for the whole test, so a burst reaches Redis at once rather than queueing
    on the database for key lookups."""
    small = _with(settings, redis_url=REDIS_URL, redis_max_connections=5, cache_ttl_s=600)
    async with running_app(small) as harness:
        yield harness


@pytest.fixture
async def redis_down(settings: Settings) -> AsyncIterator[Harness]:
    """The gateway configured with a Redis URL where nothing listens."""
    async with running_app(_with(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0")) as harness:
        yield harness


async def test_a_burst_on_a_limited_key_waits_for_the_small_pool_instead_of_failing(
    small_pool: Harness, upstream: FakeUpstream
) -> None:
    gw = small_pool
    # A fake upstream answering at once: the burst is about Redis, not about drawing images.
    channel = await Upstreams(upstream).channel(gw, "fast", ok, only=True)
    account_id, key = await gw.account_with_key(credits=10_000, rpm=100_000, max_concurrency=1_000)
    caller = await gw.gateway.keys.lookup(key)  # now cached
    assert caller is not None
    try:
        responses = await asyncio.gather(*(gw.generate(key, {"prompt": f"burst {i}"}) for i in range(300)))
        failures = [(r.status_code, r.text[:200]) for r in responses if r.status_code != 200]
        assert failures == []
        account = await gw.account(account_id)
        assert (account["balance"], account["held"]) == (str(10_000 - 300 * 8), "0")
        assert await gw.ledger_problems() == []
    finally:
        await _forget([caller.key_id], [channel["id"]])


async def test_unreachable_redis_is_a_503_that_holds_and_charges_nothing(redis_down: Harness) -> None:
    gw = redis_down
    account_id, key = await gw.account_with_key(credits=100, rpm=10)
    before = await gw.admin("GET", f"/admin/accounts/{account_id}/ledger")

    started = time.monotonic()
    refused = await gw.generate(key, {"prompt": "x"})
    assert time.monotonic() - started < 5  # fails fast instead of hanging on the dead address

    assert refused.status_code == 503, refused.text
    error = refused.json()["error"]
    assert error["code"] == "rate_limiter_unavailable"
    assert "Redis" in error["message"]
    assert 1 <= int(refused.headers["retry-after"]) <= 120
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("100", "0")
    after = await gw.admin("GET", f"/admin/accounts/{account_id}/ledger")
    assert after.json() == before.json()
    assert await gw.ledger_problems() == []

    # The Google relay answers in its own shape, with the same status.
    relayed = await gw.http.post(
        "/v1beta/models/imagen4:predict",
        json={"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 1}},
        headers={"x-goog-api-key": key},
    )
    assert relayed.status_code == 503, relayed.text
    assert relayed.json()["error"]["status"] == "UNAVAILABLE"
    assert "retry-after" in relayed.headers


@pytest.fixture
def silent_redis() -> Iterator[str]:
    """A Redis URL whose port accepts connections (the kernel completes them) but never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"redis://127.0.0.1:{listener.getsockname()[1]}/0"


async def test_a_redis_that_never_answers_fails_within_its_timeout(settings: Settings, silent_redis: str) -> None:
    async with running_app(_with(settings, redis_url=silent_redis, redis_timeout_s=0.3)) as gw:
        account_id, key = await gw.account_with_key(credits=100, max_concurrency=2)
        started = time.monotonic()
        refused = await gw.generate(key, {"prompt": "x"})
        assert time.monotonic() - started < 3  # one timeout and one retry, not redis-py's 5 s default
        assert refused.status_code == 503, refused.text
        assert refused.json()["error"]["code"] == "rate_limiter_unavailable"
        assert (await gw.account(account_id))["held"] == "0"


def _limited_caller() -> Caller:
    return Caller(
        key_id=f"key_{secrets.token_hex(6)}",
        account_id="acc_pool",
        key_name="pool",
        prefix="igw_pool",
        models=None,
        rpm=1_000,
        max_concurrency=10,
        credit_cap=None,
        expires_at=None,
        revoked=False,
    )


async def test_a_pool_still_busy_after_its_wait_refuses_with_503_not_an_error() -> None:
    redis = open_redis(REDIS_URL, max_connections=1, pool_wait_s=0.2)
    limiter = KeyLimiter(redis, prefix=f"igw:test:{secrets.token_hex(4)}:")
    caller = _limited_caller()
    try:
        # A blocking pop holds the pool's only connection for a second, longer than the wait.
        busy = asyncio.ensure_future(redis.blpop([f"igw:test:nothing:{secrets.token_hex(4)}"], timeout=1))
        await asyncio.sleep(0.1)
        with pytest.raises(RateLimiterUnavailable) as refused:
            await limiter.admit(caller)
        assert refused.value.status == 503
        assert refused.value.headers["Retry-After"] == "5"
        # Once the connection is back, the same limiter admits again.
        await busy
        await (await limiter.admit(caller)).release()
    finally:
        await _forget([caller.key_id], [])
        await limiter.aclose()
        await redis.aclose()


async def test_channel_health_falls_back_to_process_memory_while_redis_is_down(redis_down: Harness) -> None:
    gw = redis_down
    account_id, key = await gw.account_with_key(credits=100)  # no rpm, no max_concurrency

    served = await gw.generate(key, {"prompt": "x"})

    assert served.status_code == 200, served.text
    assert (await gw.account(account_id))["balance"] == "92"
    channels = await gw.admin("GET", "/admin/channels")
    assert channels.status_code == 200, channels.text
    ready = await gw.http.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["redis"] != "ok"


async def test_the_process_has_one_redis_client_with_a_blocking_bounded_pool(small_pool: Harness) -> None:
    gateway = small_pool.gateway
    assert gateway.redis is not None
    pool = gateway.redis.connection_pool
    assert isinstance(pool, BlockingConnectionPool)
    assert pool.max_connections == 5
    limiter = gateway.generation.limiter
    assert limiter is not None
    pools = limiter.connection_pools()  # the concurrency leases' and the limits library's rpm window
    assert len(pools) == 2
    assert all(used is pool for used in pools)
    assert getattr(gateway.health, "redis", None) is gateway.redis
