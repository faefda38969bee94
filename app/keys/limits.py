"""Per-key limits: requests per minute, requests in flight, and a lifetime credit cap.

`KeyLimiter.admit` runs before anything is held. A key's `rpm` is a moving one-minute window (the
`limits` library); its `max_concurrency` is a set of leases, one per request in flight. Both live
in this process's memory, or in Redis when `GATEWAY_REDIS_URL` is set so that every replica
counts against the same limit. A lease names its own expiry, so the slots of a process that
crashed mid-request come back after `lease_ttl_s` without anyone releasing them.

With Redis, a limited key's request is refused with 503 `rate_limiter_unavailable` when Redis
cannot be asked (down, too slow, or the process's pool still busy after its wait): the limit
cannot be checked, and not counting silently would lift it. Nothing has been held by then.

Where a key with an `rpm` stands (`RpmWindow`: its limit, what is left, when the next request
comes free) is noted on the request for its `x-ratelimit-*` headers (app/http/rate_limit_headers.py):
by `admit` when it takes a request or refuses one, else read by `rpm_window` without taking any.

`check_credit_cap` runs inside the hold transaction: what the key has been charged plus what it
holds plus this hold must stay within the key's `credit_cap`.
"""

from __future__ import annotations

import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from limits import RateLimitItemPerMinute
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from redis.asyncio import Redis
from sqlalchemy import case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.models import UsageRecord
from app.db import Fixed4
from app.errors import MAX_RETRY_AFTER_S, InsufficientCredits, RateLimited, RateLimiterUnavailable
from app.keys.auth import Caller
from app.keys.models import ApiKey
from app.observability.logs import note
from app.redis_client import REDIS_FAILURES, open_redis

log = logging.getLogger(__name__)

# A request that outlives this has lost its process; generation deadlines are far shorter.
LEASE_TTL_S = 15 * 60
# Nobody can know when a request in flight will finish; image calls take seconds, so ask the
# caller to come back soon rather than guess.
CONCURRENCY_RETRY_AFTER_S = 1
# Redis outages are usually a restart or a failover: seconds, not minutes.
REDIS_RETRY_AFTER_S = 5
# The request's fact (app.observability.logs.note) that carries its key's RpmWindow to the
# middleware that renders the x-ratelimit-* headers.
RPM_WINDOW_FACT = "rpm_window"


@dataclass(frozen=True, slots=True)
class RpmWindow:
    """A key's minute: `limit` requests (its rpm), `remaining` of them free now, and `reset_s`
    until the oldest request in the window leaves it and frees one more (0 with none in it)."""

    limit: int
    remaining: int
    reset_s: float


class KeyLease:
    """One admitted request's concurrency slot. `release()` frees it; calling it again is a no-op."""

    def __init__(self, free: Callable[[], Awaitable[None]] | None = None) -> None:
        self._free = free

    async def release(self) -> None:
        free, self._free = self._free, None
        if free is not None:
            await free()


class InFlight(Protocol):
    """Where a key's leases live."""

    async def acquire(self, key_id: str, limit: int, lease_id: str) -> bool:
        """Add the lease if the key has fewer than `limit` unexpired ones; False otherwise."""
        ...

    async def release(self, key_id: str, lease_id: str) -> None: ...


class MemoryInFlight:
    """Leases of one process: key → {lease id: monotonic expiry}."""

    def __init__(self, lease_ttl_s: float) -> None:
        self._ttl_s = lease_ttl_s
        self._leases: dict[str, dict[str, float]] = {}

    async def acquire(self, key_id: str, limit: int, lease_id: str) -> bool:
        now = time.monotonic()
        leases = self._leases.setdefault(key_id, {})
        for stale in [lease for lease, expires in leases.items() if expires <= now]:
            del leases[stale]
        if len(leases) >= limit:
            return False
        leases[lease_id] = now + self._ttl_s
        return True

    async def release(self, key_id: str, lease_id: str) -> None:
        leases = self._leases.get(key_id)
        if leases is not None:
            leases.pop(lease_id, None)
            if not leases:
                del self._leases[key_id]


# One sorted set per key: members are lease ids, scores their expiry in Redis server time (so
# replicas with skewed clocks agree). Dropping expired leases, counting and adding happen in one
# script, which Redis runs atomically.
ACQUIRE_LEASE = """
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local ttl_ms = tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[1]) then
  return 0
end
redis.call('ZADD', KEYS[1], now_ms + ttl_ms, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ttl_ms)
return 1
"""


class RedisInFlight:
    def __init__(self, redis: Redis, prefix: str, lease_ttl_s: float) -> None:
        self._redis = redis
        self._prefix = prefix
        self._ttl_ms = max(1, int(lease_ttl_s * 1000))
        self._acquire = redis.register_script(ACQUIRE_LEASE)

    async def acquire(self, key_id: str, limit: int, lease_id: str) -> bool:
        admitted = await self._acquire(keys=[self._prefix + key_id], args=[limit, lease_id, self._ttl_ms])
        return bool(admitted)

    async def release(self, key_id: str, lease_id: str) -> None:
        await self._redis.zrem(self._prefix + key_id, lease_id)


class KeyLimiter:
    """Admits a caller's request under its key's `rpm` and `max_concurrency`, or raises 429
    (503 when Redis cannot be asked).

    `redis` is the process's shared client (the gateway passes its one client; the limiter never
    closes it), a URL for a limiter with a client of its own (closed by `aclose`), or None to
    count in this process's memory.
    """

    def __init__(
        self, redis: Redis | str | None, *, prefix: str = "igw:keylimits:", lease_ttl_s: float = LEASE_TTL_S
    ) -> None:
        self._owned: Redis | None = None
        if isinstance(redis, str):
            redis = self._owned = open_redis(redis)
        self.redis = redis
        self._rpm_storage: Storage
        if redis is None:
            self._rpm_storage = MemoryStorage()
            self._in_flight: InFlight = MemoryInFlight(lease_ttl_s)
        else:
            # The limits library runs its moving-window scripts over the same connection pool (its
            # redis-py bridge takes `connection_pool`, and then uses the URI for nothing but its
            # scheme; the options annotation only lists scalars).
            self._rpm_storage = RedisStorage(
                "async+redis://",
                implementation="redispy",
                key_prefix=prefix + "rpm",
                connection_pool=redis.connection_pool,  # type: ignore[arg-type]
            )
            self._in_flight = RedisInFlight(redis, prefix + "inflight:", lease_ttl_s)
        self._window = MovingWindowRateLimiter(self._rpm_storage)

    def connection_pools(self) -> list[object]:
        """The Redis connection pools the leases and the rpm window run on (none in memory)."""
        if self.redis is None:
            return []
        assert isinstance(self._rpm_storage, RedisStorage)
        rpm_client = self._rpm_storage.bridge.connection_getter(False)  # type: ignore[attr-defined]
        return [self.redis.connection_pool, rpm_client.connection_pool]

    async def admit(self, caller: Caller) -> KeyLease:
        """Take a concurrency slot and one request of the minute's allowance, or raise
        `RateLimited` with `Retry-After`. A request refused for concurrency does not use up the
        allowance, and one refused for rpm gives its slot back. Raises `RateLimiterUnavailable`
        (503) when Redis cannot be asked; nothing is taken then."""
        if caller.rpm is None and caller.max_concurrency is None:
            return KeyLease()
        try:
            return await self._admit(caller)
        except REDIS_FAILURES as exc:
            log.warning("key limits: Redis unavailable (%s: %s); refusing a limited request", type(exc).__name__, exc)
            raise RateLimiterUnavailable(
                f"The rate limiter that enforces this key's rpm/max_concurrency cannot reach Redis "
                f"({type(exc).__name__}); nothing was held or charged. Retry in {REDIS_RETRY_AFTER_S} s.",
                headers={"Retry-After": str(REDIS_RETRY_AFTER_S)},
            ) from exc

    async def _admit(self, caller: Caller) -> KeyLease:
        lease = KeyLease()
        if caller.max_concurrency is not None:
            lease_id = secrets.token_hex(8)
            if not await self._in_flight.acquire(caller.key_id, caller.max_concurrency, lease_id):
                raise RateLimited(
                    f"This key already has {caller.max_concurrency} request(s) in flight, its max_concurrency. "
                    "Retry when one finishes.",
                    headers={"Retry-After": str(CONCURRENCY_RETRY_AFTER_S)},
                )

            async def free() -> None:
                try:
                    await self._in_flight.release(caller.key_id, lease_id)
                except REDIS_FAILURES as exc:
                    # The request itself is done (and settled); its slot comes back when the
                    # lease expires instead of failing the request after the fact.
                    log.warning(
                        "key limits: could not release a lease of key %s (%s); it expires on its own",
                        caller.key_id,
                        type(exc).__name__,
                    )

            lease = KeyLease(free)
        try:
            if caller.rpm is not None:
                await self._take_one_of_rpm(caller.key_id, caller.rpm)
        except BaseException:
            await lease.release()
            raise
        return lease

    async def _take_one_of_rpm(self, key_id: str, rpm: int) -> None:
        item = RateLimitItemPerMinute(rpm)
        if await self._window.hit(item, key_id):
            try:
                note(**{RPM_WINDOW_FACT: await self._stats(key_id, rpm)})
            except REDIS_FAILURES as exc:
                # The request was counted; only its headers are lost, not worth refusing it for.
                log.warning("key limits: could not read key %s's window (%s)", key_id, type(exc).__name__)
            return
        window = await self._stats(key_id, rpm)
        note(**{RPM_WINDOW_FACT: window})
        wait = min(MAX_RETRY_AFTER_S, max(1, math.ceil(window.reset_s)))
        raise RateLimited(
            f"This key allows {rpm} request(s) per minute (its rpm) and has used them. Retry in {wait} s.",
            headers={"Retry-After": str(wait)},
        )

    async def rpm_window(self, caller: Caller) -> RpmWindow | None:
        """Where a key with an `rpm` stands, without taking a request of it: None for a key without
        one, or when Redis cannot be asked (the answer then goes without its headers)."""
        if caller.rpm is None:
            return None
        try:
            return await self._stats(caller.key_id, caller.rpm)
        except REDIS_FAILURES as exc:
            log.warning("key limits: could not read key %s's window (%s)", caller.key_id, type(exc).__name__)
            return None

    async def _stats(self, key_id: str, rpm: int) -> RpmWindow:
        stats = await self._window.get_window_stats(RateLimitItemPerMinute(rpm), key_id)
        remaining = max(0, stats.remaining)
        # An empty window's "reset" would be a minute from now; nothing is waiting to come free.
        reset_s = 0.0 if remaining >= rpm else max(0.0, stats.reset_time - time.time())
        return RpmWindow(limit=rpm, remaining=remaining, reset_s=reset_s)

    async def aclose(self) -> None:
        if self._owned is not None:
            await self._owned.aclose()


async def check_credit_cap(session: AsyncSession, caller: Caller, hold: Decimal) -> None:
    """Raise 402 unless charged + held + `hold` fits the key's credit_cap. Call it in the hold
    transaction, before `place_hold`."""
    cap = caller.credit_cap
    if cap is None:
        return
    # Lock the key's row so concurrent holds of one key queue up on PostgreSQL and cannot both
    # fit under the cap (SQLite's BEGIN IMMEDIATE already serialises every hold).
    await session.execute(select(ApiKey.id).where(ApiKey.id == caller.key_id).with_for_update())
    charged = case((UsageRecord.status == "succeeded", UsageRecord.credits), else_=None)
    open_hold = case((UsageRecord.status == "pending", UsageRecord.hold_credits), else_=None)
    spent, held = (
        await session.execute(
            select(type_coerce(func.sum(charged), Fixed4()), type_coerce(func.sum(open_hold), Fixed4())).where(
                # account_id first: it leads the usage index, and a key belongs to one account.
                UsageRecord.account_id == caller.account_id,
                UsageRecord.key_id == caller.key_id,
                UsageRecord.status.in_(("succeeded", "pending")),
            )
        )
    ).one()
    spent, held = spent or Decimal(0), held or Decimal(0)
    if spent + held + hold > cap:
        raise InsufficientCredits(
            f"This key's credit cap is {render(cap)} credits: it has spent {render(spent)} and holds "
            f"{render(held)} for requests in flight, so this request's {render(hold)} does not fit. "
            "Raise the key's credit_cap or use another key."
        )
