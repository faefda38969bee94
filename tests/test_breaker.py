"""The circuit breaker's transitions, and that both health stores apply them atomically."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from app.routing.breaker import BreakerPolicy, BreakerState
from app.routing.health import HealthStore, MemoryHealthStore, RedisHealthStore
from tests.support.databases import REDIS_URL

POLICY = BreakerPolicy(failure_threshold=3, base_cooldown_s=10, max_cooldown_s=40)


def test_opens_after_threshold_and_probes_once_after_cooldown() -> None:
    state = BreakerState()
    for _ in range(2):
        state.failed(100.0, "500", POLICY)
    assert state.phase(100.0) == "closed"
    state.failed(100.0, "500", POLICY)
    assert state.phase(105.0) == "open"
    assert state.available_at(105.0) == 110.0
    assert state.phase(110.0) == "half_open"
    assert state.claim_probe(110.0, POLICY) is True
    assert state.claim_probe(110.5, POLICY) is False  # one probe at a time


def test_failed_probe_reopens_with_a_longer_cooldown_and_success_closes() -> None:
    state = BreakerState()
    for _ in range(3):
        state.failed(0.0, "500", POLICY)
    assert state.open_until == 10.0
    assert state.claim_probe(10.0, POLICY)
    state.failed(10.0, "500", POLICY)
    assert state.open_until == 30.0  # 20 s the second time
    assert state.claim_probe(30.0, POLICY)
    state.failed(30.0, "500", POLICY)
    assert state.open_until == 70.0  # capped at 40 s
    assert state.claim_probe(70.0, POLICY)
    state.succeeded()
    assert state.phase(70.0) == "closed" and state.level == 0 and state.consecutive_failures == 0


def test_rate_limit_cools_without_counting_as_failure() -> None:
    state = BreakerState()
    state.rate_limited(0.0, 30.0, "429", POLICY)
    assert state.phase(10.0) == "cooling"
    assert state.consecutive_failures == 0
    assert state.phase(30.0) == "closed"
    state.rate_limited(0.0, 9999.0, "429", POLICY)
    assert state.cooling_until == 120.0  # Retry-After is honoured up to two minutes


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[HealthStore]:
    if request.param == "memory":
        yield MemoryHealthStore(POLICY)
        return
    redis = Redis.from_url(REDIS_URL)
    prefix = f"igw:test:{secrets.token_hex(4)}:"
    yield RedisHealthStore(redis, POLICY, prefix=prefix)
    keys = await redis.keys(prefix + "*")
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def test_concurrent_updates_are_not_lost(store: HealthStore) -> None:
    def fail(state: BreakerState, now: float) -> bool:
        state.failed(now, "boom", BreakerPolicy(failure_threshold=1000))
        return True

    await asyncio.gather(*(store.update("ch_1", fail) for _ in range(50)))
    states = await store.states(["ch_1", "ch_2"])
    assert states["ch_1"].consecutive_failures == 50
    assert states["ch_2"].consecutive_failures == 0


async def test_only_one_replica_wins_the_probe(store: HealthStore) -> None:
    def open_now(state: BreakerState, now: float) -> bool:
        for _ in range(3):
            state.failed(now - 100, "x", POLICY)
        return True

    await store.update("ch_p", open_now)
    results = await asyncio.gather(
        *(store.update("ch_p", lambda s, now: s.claim_probe(now, POLICY)) for _ in range(10))
    )
    assert results.count(True) == 1


async def test_recent_outcomes_are_bounded_and_newest_first(store: HealthStore) -> None:
    for i in range(120):
        await store.remember("ch_r", i % 4 != 0, i)
    recent = (await store.states(["ch_r"]))["ch_r"].recent
    assert len(recent) == 50
    assert {ms for _, ms in recent} == set(range(70, 120))
