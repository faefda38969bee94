"""What the commands share: settings with the data directory in place, a migrated database for
the length of a command, and JSON on stdout."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import Database

    Command = Callable[[AsyncSession, argparse.Namespace], Awaitable[int]]
    DatabaseCommand = Callable[[Database, argparse.Namespace], Awaitable[int]]
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

Run = Callable[[argparse.Namespace], int]


def settings_with_data_dir() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def migrate(settings: Settings) -> None:
    from app.bootstrap import migrate as apply_migrations

    await apply_migrations(settings.database_url)


def in_transaction(command: Command) -> Run:
    """Run a command in one unit of work (committed when it returns)."""

    async def run(db: Database, args: argparse.Namespace) -> int:
        async with db.transaction() as session:
            return await command(session, args)

    return with_database(run)


def with_database(command: DatabaseCommand) -> Run:
    """Run a command against GATEWAY_DATABASE_URL, migrated first."""

    def run(args: argparse.Namespace) -> int:
        from app.db import Database

        async def go() -> int:
            settings = settings_with_data_dir()
            await migrate(settings)
            db = Database(settings.database_url)
            try:
                return await command(db, args)
            finally:
                await db.dispose()

        return asyncio.run(go())

    return run


def print_json(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    print(json.dumps(data, indent=2, default=str))


def utc_datetime(text: str) -> datetime:
    """`app.billing.usage_report.utc_datetime`, imported only when a date is given. Keeps the
    name: argparse reports a bad value as "invalid utc_datetime value"."""
    from app.billing.usage_report import utc_datetime as parse

    return parse(text)
