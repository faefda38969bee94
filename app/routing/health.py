"""Where channel health lives: this process's memory, or Redis when replicas share it."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Protocol, TypeVar

import orjson
from redis.asyncio import Redis
from redis.exceptions import WatchError

from app.redis_client import REDIS_FAILURES
from app.routing.breaker import RECENT, BreakerPolicy, BreakerState

T = TypeVar("T")

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthView:
    """What operators see in `GET /admin/channels`."""

    state: str
    consecutive_failures: int
    success_rate: float | None
    latency_ms_p50: int | None
    last_error: str | None
    last_error_at: float | None
    retry_at: float | None

    @classmethod
    def of(cls, state: BreakerState, now: float) -> HealthView:
        outcomes = [ok for ok, _ in state.recent]
        latencies = sorted(ms for ok, ms in state.recent if ok)
        available = state.available_at(now)
        return cls(
            state=state.phase(now),
            consecutive_failures=state.consecutive_failures,
            success_rate=round(sum(outcomes) / len(outcomes), 3) if outcomes else None,
            latency_ms_p50=latencies[len(latencies) // 2] if latencies else None,
            last_error=state.last_error,
            last_error_at=state.last_error_at,
            retry_at=available if available > now else None,
        )


class HealthStore(Protocol):
    policy: BreakerPolicy

    async def states(self, channel_ids: Iterable[str]) -> dict[str, BreakerState]: ...

    async def update(self, channel_id: str, transition: Callable[[BreakerState, float], T]) -> T:
        """Apply `transition(state, now)` atomically; returns what the transition returned."""
        ...

    async def remember(self, channel_id: str, ok: bool, latency_ms: int) -> None:
        """Add one outcome to the channel's recent history (for operators, not for decisions)."""
        ...


class MemoryHealthStore:
    def __init__(self, policy: BreakerPolicy | None = None) -> None:
        self.policy = policy or BreakerPolicy()
        self._states: dict[str, BreakerState] = {}

    async def states(self, channel_ids: Iterable[str]) -> dict[str, BreakerState]:
        return {cid: self._states.get(cid, BreakerState()) for cid in channel_ids}

    async def update(self, channel_id: str, transition: Callable[[BreakerState, float], T]) -> T:
        state = self._states.setdefault(channel_id, BreakerState())
        return transition(state, time.time())  # no await in between: atomic within the process

    async def remember(self, channel_id: str, ok: bool, latency_ms: int) -> None:
        recent = self._states.setdefault(channel_id, BreakerState()).recent
        recent.append((int(ok), latency_ms))
        del recent[:-RECENT]


class RedisHealthStore:
    """Breaker state as one JSON value per channel, changed with WATCH/MULTI so concurrent
    replicas never lose each other's updates.

    Health is advice for routing, not a limit anyone pays for, so a Redis outage must not fail
    requests (health is read before and written after every upstream call, when the images may
    already be paid for). While Redis cannot be asked, this process keeps health in its own memory,
    as it would without Redis, and tries Redis again `REDIS_RETRY_S` after the last failure (not
    on every call, so requests don't each wait out a timeout).
    """

    TTL_S = 24 * 3600
    REDIS_RETRY_S = 5.0

    def __init__(self, redis: Redis, policy: BreakerPolicy | None = None, prefix: str = "igw:health:") -> None:
        self.redis = redis
        self.policy = policy or BreakerPolicy()
        self.prefix = prefix
        self._local = MemoryHealthStore(self.policy)
        self._redis_down_until = 0.0

    async def _shared_or_local(self, shared: Callable[[], Awaitable[T]], local: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() >= self._redis_down_until:
            try:
                return await shared()
            except REDIS_FAILURES as exc:
                self._redis_down_until = time.monotonic() + self.REDIS_RETRY_S
                log.warning(
                    "channel health: Redis unavailable (%s: %s); this process keeps health in memory "
                    "and tries Redis again in %s s",
                    type(exc).__name__,
                    exc,
                    self.REDIS_RETRY_S,
                )
        return await local()

    async def states(self, channel_ids: Iterable[str]) -> dict[str, BreakerState]:
        ids = list(channel_ids)
        if not ids:
            return {}
        return await self._shared_or_local(lambda: self._shared_states(ids), lambda: self._local.states(ids))

    async def update(self, channel_id: str, transition: Callable[[BreakerState, float], T]) -> T:
        return await self._shared_or_local(
            lambda: self._shared_update(channel_id, transition), lambda: self._local.update(channel_id, transition)
        )

    async def remember(self, channel_id: str, ok: bool, latency_ms: int) -> None:
        await self._shared_or_local(
            lambda: self._shared_remember(channel_id, ok, latency_ms),
            lambda: self._local.remember(channel_id, ok, latency_ms),
        )

    async def _shared_states(self, ids: list[str]) -> dict[str, BreakerState]:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.mget([self.prefix + cid for cid in ids])
            for cid in ids:
                pipe.lrange(self.prefix + cid + ":recent", 0, RECENT - 1)
            raw, *recents = await pipe.execute()
        states = {}
        for cid, value, recent in zip(ids, raw, recents, strict=True):
            state = _decode(value)
            state.recent = [_outcome(item) for item in recent]
            states[cid] = state
        return states

    async def _shared_update(self, channel_id: str, transition: Callable[[BreakerState, float], T]) -> T:
        key = self.prefix + channel_id
        for attempt in range(200):
            async with self.redis.pipeline(transaction=True) as pipe:
                try:
                    await pipe.watch(key)
                    state = _decode(await pipe.get(key))
                    result = transition(state, time.time())
                    pipe.multi()
                    pipe.set(key, orjson.dumps(state.to_dict()), ex=self.TTL_S)
                    await pipe.execute()
                    return result
                except WatchError:
                    # Another replica changed it first: back off a little, with jitter, and redo.
                    await asyncio.sleep(random.uniform(0, 0.001 * min(attempt + 1, 20)))
        raise RuntimeError(f"channel health for {channel_id} is too contended to update")

    async def _shared_remember(self, channel_id: str, ok: bool, latency_ms: int) -> None:
        key = self.prefix + channel_id + ":recent"
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.lpush(key, f"{int(ok)}:{latency_ms}")
            pipe.ltrim(key, 0, RECENT - 1)
            pipe.expire(key, self.TTL_S)
            await pipe.execute()


def _outcome(item: bytes | str) -> tuple[int, int]:
    text = item.decode() if isinstance(item, bytes) else item
    ok, _, ms = text.partition(":")
    return int(ok), int(ms)


def _decode(value: bytes | str | None) -> BreakerState:
    if value is None:
        return BreakerState()
    return BreakerState.from_dict(orjson.loads(value))
