"""What the commands share: settings, the database opened for the length of a command (checked to
be a gateway's database first), and printing only once the command's unit of work is over.

A command is a reading or a change. Both open GATEWAY_DATABASE_URL (by default the SQLite file in
GATEWAY_DATA_DIR) and bring a migrated database to the newest schema, as the gateway does on start.
A database that has never been migrated is most likely the wrong one (the command was run from
another directory, or without the gateway's environment), so the command says so on stderr with
the URL it opened. A reading then stops (exit 1) without creating anything: there is nothing to
read. A change goes on and migrates it: it is how a new installation is set up from a script.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime
from typing import TYPE_CHECKING

from app.cli.output import Output, emit
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import Database

    Command = Callable[[AsyncSession, argparse.Namespace], Awaitable[Output]]
    DatabaseCommand = Callable[[Database, argparse.Namespace], Awaitable[int]]
    Subcommands = argparse._SubParsersAction[argparse.ArgumentParser]

Run = Callable[[argparse.Namespace], int]


class Stop(Exception):
    """Ends a command with `status`, after `message` (if any) on stderr: no traceback."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def settings_with_data_dir() -> Settings:
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return settings


async def migrate(settings: Settings) -> None:
    from app.bootstrap import migrate as apply_migrations

    await apply_migrations(settings.database_url)


def reading(command: Command) -> Run:
    """A command that reads: one session, its output printed after the session is closed."""

    async def run(db: Database, args: argparse.Namespace) -> Output:
        async with db.sessions() as session:
            return await command(session, args)

    return _printing(run, changes=False)


def changing(command: Command) -> Run:
    """A command that changes something: one unit of work, its output printed only once that is
    committed. A reader that goes away early (`| head -1`) cannot roll the change back."""

    async def run(db: Database, args: argparse.Namespace) -> Output:
        async with change_session(db) as session:
            return await command(session, args)

    return _printing(run, changes=True)


@asynccontextmanager
async def change_session(db: Database) -> AsyncIterator[AsyncSession]:
    """The unit of work of a change made from the command line (committed when the block ends).
    Its changes are in the audit log like the admin API's, with the system user as the actor."""
    import getpass

    from app.operators.audit import watch
    from app.operators.audited import AUDITED

    try:
        user = getpass.getuser()
    except (OSError, KeyError):  # no login name (a container's bare uid)
        user = "unknown"
    async with db.transaction() as session:
        watch(session, f"cli:{user}", AUDITED)
        yield session


def with_database(command: DatabaseCommand, *, changes: bool = True) -> Run:
    """A command that runs its own sessions (streaming exports, long work) and prints itself."""

    def run(args: argparse.Namespace) -> int:
        from app.db import Database

        async def go() -> int:
            settings = await opened_settings(changes=changes)
            db = Database(settings.database_url)
            try:
                return await command(db, args)
            finally:
                await db.dispose()

        return asyncio.run(go())

    return run


def _printing(command: Callable[[Database, argparse.Namespace], Awaitable[Output]], *, changes: bool) -> Run:
    async def produce(db: Database, args: argparse.Namespace) -> int:
        output = await command(db, args)
        # Printed here, after the unit of work: nothing the output does can undo the change.
        emit(output, as_json=bool(getattr(args, "json", False)))
        return output.status

    return with_database(produce, changes=changes)


async def opened_settings(*, changes: bool) -> Settings:
    from pydantic import ValidationError
    from sqlalchemy.exc import SQLAlchemyError

    from app.cli.database_check import never_migrated, shown_url, sqlite_file

    try:
        settings = Settings()
    except ValidationError as exc:  # named by variable, not as if an option were wrong
        problems = "; ".join(f"GATEWAY_{'_'.join(map(str, e['loc'])).upper()}: {e['msg']}" for e in exc.errors())
        raise Stop(f"error: the settings are not valid: {problems}", status=2) from None
    where = shown_url(settings.database_url)
    try:
        unmigrated = await never_migrated(settings.database_url)
    except (OSError, SQLAlchemyError) as exc:
        raise Stop(f"error: cannot open the database at {where}: {_reason(exc)}") from None
    if unmigrated:
        if not changes:
            raise Stop(
                f"warning: the database at {where} has never been migrated; run `image-gateway migrate` or start "
                "the gateway (or set GATEWAY_DATABASE_URL / GATEWAY_DATA_DIR to the gateway's database)"
            )
        print(
            f"warning: the database at {where} has never been migrated; migrating it now (a new, empty gateway). "
            "If you meant the gateway's database, set GATEWAY_DATABASE_URL or GATEWAY_DATA_DIR.",
            file=sys.stderr,
        )
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    database_file = sqlite_file(settings.database_url)
    if database_file is not None:
        database_file.parent.mkdir(parents=True, exist_ok=True)
    await migrate(settings)
    return settings


def _reason(exc: BaseException) -> str:
    """The driver's own words (SQLAlchemy wraps them with a statement and a link)."""
    original = getattr(exc, "orig", None) or exc
    return str(original).strip().splitlines()[0] if str(original).strip() else type(original).__name__


def utc_datetime(text: str) -> datetime:
    """`app.billing.usage_report.utc_datetime`, imported only when a date is given. Keeps the
    name: argparse reports a bad value as "invalid utc_datetime value"."""
    from app.billing.usage_report import utc_datetime as parse

    return parse(text)
