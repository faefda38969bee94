"""Logging defaults that keep secrets out of logs.

Some libraries log what they send at INFO or DEBUG: httpx logs each request URL (a channel using
`?key=` auth would put its key there), the database drivers log statement parameters (channel
credentials are written to the database). They are held at WARNING whatever the root level.
"""

from __future__ import annotations

import logging

CHATTY_LIBRARIES = ("httpx", "httpcore", "aiosqlite", "asyncpg", "sqlalchemy.engine", "sqlalchemy.pool")


def quiet_secret_bearing_loggers() -> None:
    for name in CHATTY_LIBRARIES:
        logging.getLogger(name).setLevel(logging.WARNING)
