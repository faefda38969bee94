"""Bringing a database up to date: Alembic migrations, then the first-start catalog.

Safe to run from several processes at once: on PostgreSQL an advisory lock serialises them, and
on SQLite the first write transaction does.
"""

from __future__ import annotations

import os
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.defaults import LOCAL_CHANNEL, default_model_rows, extra_first_start_channels
from app.catalog.models import CatalogModel, Channel
from app.db import Database, new_id, utcnow
from app.files.service import ensure_signing_key

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_LOCK_ID = 7_271_001  # arbitrary constant naming "image-gateway migrations" for pg_advisory_lock


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def _upgrade(connection: Connection) -> None:
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


async def migrate(database_url: str) -> None:
    """Apply every migration, then create the default catalog if this is the first start."""
    db = Database(database_url)
    try:
        async with db.engine.connect() as connection:
            postgres = connection.dialect.name == "postgresql"
            if postgres:
                await connection.execute(text(f"SELECT pg_advisory_lock({_LOCK_ID})"))
                await connection.commit()
            try:
                await connection.run_sync(_upgrade)
                await connection.commit()
                async with AsyncSession(bind=connection) as session, session.begin():
                    await seed_first_start(session)
                    await ensure_signing_key(session)
                await connection.commit()
            finally:
                if postgres:
                    await connection.execute(text(f"SELECT pg_advisory_unlock({_LOCK_ID})"))
                    await connection.commit()
    finally:
        await db.dispose()


async def seed_first_start(session: AsyncSession) -> bool:
    """On an empty catalog: the default models and a `local` channel serving all of them (plus
    a `gemini` channel when GEMINI_API_KEY is set). Returns whether it seeded."""
    if await session.scalar(select(func.count()).select_from(CatalogModel)):
        return False
    now = utcnow()
    for fields in default_model_rows():
        session.add(CatalogModel(updated_at=now, **fields))
    for fields in [LOCAL_CHANNEL, *extra_first_start_channels(os.environ)]:
        session.add(Channel(id=new_id("ch"), created_at=now, updated_at=now, **fields))
    await session.flush()
    return True
