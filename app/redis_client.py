"""The one Redis client of a gateway process, shared by the key limiter and the channel health
store (and `/readyz`).

The pool is bounded and *blocking*: when every connection is busy a call waits its turn (up to
`pool_wait_s`) instead of failing at once, so a burst queues for a few milliseconds rather than
turning into errors. Every call has a socket timeout, so a Redis that is down or unreachable fails
in about `timeout_s` instead of hanging the request.
"""

from __future__ import annotations

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from app.settings import Settings

# What a Redis call raises when Redis is down, unreachable, too slow, or the pool stayed exhausted
# for the whole wait (redis-py wraps most socket errors; OSError covers the rest and TimeoutError).
REDIS_FAILURES: tuple[type[Exception], ...] = (RedisError, OSError)


def open_redis_for(settings: Settings) -> Redis:
    """The gateway's client for `GATEWAY_REDIS_URL`, sized and timed by the `GATEWAY_REDIS_*` settings."""
    assert settings.redis_url is not None
    return open_redis(
        settings.redis_url,
        max_connections=settings.redis_max_connections,
        pool_wait_s=settings.redis_pool_wait_s,
        timeout_s=settings.redis_timeout_s,
    )


def open_redis(url: str, *, max_connections: int = 100, pool_wait_s: float = 5.0, timeout_s: float = 2.0) -> Redis:
    """A client over a blocking pool of at most `max_connections`; closing it closes the pool."""
    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=max_connections,
        timeout=pool_wait_s,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        # One immediate retry on a fresh connection (a pooled connection that Redis closed, say
        # after a restart), never redis-py's default of many retries with growing back-off: a
        # request must learn quickly that Redis is gone.
        retry=Retry(NoBackoff(), 1),
    )
    return Redis.from_pool(pool)
