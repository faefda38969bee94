"""Is this a gateway's database? A command run from another directory (or without the gateway's
environment) opens a database nobody set up; this tells it apart without creating anything."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import inspect
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import create_async_engine


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None for another database, or SQLite in memory)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def shown_url(url: str) -> str:
    """The URL as a person can check it: no password, a SQLite file as an absolute path."""
    parsed = make_url(url)
    database_file = sqlite_file(url)
    if database_file is not None:
        parsed = parsed.set(database=str(database_file.absolute()))
    return parsed.render_as_string(hide_password=True)


async def never_migrated(url: str) -> bool:
    """True when no migration ever ran here: a SQLite file that does not exist (left uncreated),
    or a database without Alembic's version table."""
    database_file = sqlite_file(url)
    if database_file is not None and not database_file.exists():
        return True
    engine = create_async_engine(url)
    try:
        async with engine.connect() as connection:
            return not await connection.run_sync(_has_version_table)
    finally:
        await engine.dispose()


def _has_version_table(connection: Connection) -> bool:
    return inspect(connection).has_table("alembic_version")
