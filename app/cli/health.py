"""`image-gateway worker --check`: the healthcheck of a container that runs `worker`, which serves
no HTTP to probe. It checks what a worker needs to make progress, the database (and Redis, when
configured), without importing the application: it runs every few seconds in the container."""

from __future__ import annotations

import sys

from app.settings import Settings


async def dependencies_answer(settings: Settings) -> int:
    """0 when the database (and Redis) answer, else 1 with what failed on stderr. Never migrates
    or writes; one connection each, closed again."""
    from sqlalchemy import text

    from app.db import Database
    from app.redis_client import open_redis_for

    problems: list[str] = []
    db = Database(settings.database_url, pool_size=1, max_overflow=0)
    try:
        async with db.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not healthy"; its type helps the operator
        problems.append(f"database: {type(exc).__name__}")
    finally:
        await db.dispose()
    if settings.redis_url:
        redis = open_redis_for(settings)
        try:
            await redis.ping()
        except Exception as exc:
            problems.append(f"redis: {type(exc).__name__}")
        finally:
            await redis.aclose()
    for problem in problems:
        print(f"unhealthy: {problem}", file=sys.stderr)
    return 1 if problems else 0
