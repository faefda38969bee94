"""Database plumbing: the declarative base, exact-amount column types, engines and transactions.

Services receive an `AsyncSession` and never commit; whoever opened the unit of work (an HTTP
request scope, a CLI command, the generation pipeline's hold/settle steps) commits it.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, nullcontext
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import BigInteger, BindParameter, DateTime, MetaData, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.types import TypeDecorator

from app.db import sqlite
from app.db.write_gate import Priority, WriteGate

SCALE = 10_000  # amounts and multipliers are stored as integers in 1/10,000


class Fixed4(TypeDecorator[Decimal]):
    """A Decimal with four places, stored as an exact integer count of 1/10,000.

    Integers behave identically on SQLite and PostgreSQL, so `balance - held >= x` in SQL is exact
    on both; Python code only ever sees `Decimal`.
    """

    impl = BigInteger
    cache_ok = True

    def process_bind_param(self, value: Decimal | int | None, dialect: Dialect) -> int | None:
        if value is None:
            return None
        scaled = Decimal(value) * SCALE
        if scaled != scaled.to_integral_value():
            raise ValueError(f"{value} has more than four decimal places")
        return int(scaled)

    def process_result_value(self, value: int | None, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(int(value)) / SCALE


def credits_literal(amount: Decimal) -> BindParameter[Decimal]:
    """An amount as a bound parameter of the Fixed4 type.

    Arithmetic on Fixed4 columns (`balance - held`) loses the decorator's type, so a bare Decimal
    compared with it would be bound unscaled. Every amount in a SQL expression goes through here.
    """
    return literal(amount, type_=Fixed4())


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both backends (SQLite forgets the zone otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# Constraint and index names, written down so that a migration can name what it alters. They are
# the names the existing databases already carry: PostgreSQL's own defaults for keys and foreign
# keys, SQLAlchemy's `ix_<table>_<column>` for indexes (on SQLite, where constraints have no
# name, migrations alter tables in batch mode). Check constraints are named by hand
# (`ck_<table>_<rule>`), so they have no template.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "%(table_name)s_%(column_0N_name)s_key",
    "fk": "%(table_name)s_%(column_0N_name)s_fkey",
    "pk": "%(table_name)s_pkey",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def make_engine(url: str, pool_size: int = 20, max_overflow: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        return sqlite.make_engine(url)
    # No pre-ping: it costs a round trip per checkout on the hot path. Connections are recycled
    # instead, and a dead one fails a single transaction, which the money rules already survive.
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)


class Database:
    """An engine plus the session factories every read and every unit of work is opened from.

    On SQLite, how these transactions begin and take the write lock is app/db/sqlite.py's job.
    """

    def __init__(self, url: str, pool_size: int = 20, max_overflow: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size, max_overflow)
        # `sessions()` is for reading only (on SQLite it does not take the write lock);
        # every write goes through `transaction()`.
        self.sessions = async_sessionmaker(
            self.engine.execution_options(**{sqlite.READ_ONLY: True}), expire_on_commit=False
        )
        self._is_sqlite = url.startswith("sqlite")
        writers = sqlite.writer_engine(self.engine) if self._is_sqlite else self.engine
        self._writers = async_sessionmaker(writers, expire_on_commit=False)
        # Elsewhere than SQLite, half the pool, so reads and other writes always find a connection.
        self.gate = WriteGate(sqlite.WRITERS_AT_ONCE if self._is_sqlite else max(1, pool_size // 2))

    @asynccontextmanager
    async def transaction(self, priority: Priority | None = None) -> AsyncIterator[AsyncSession]:
        """One short unit of work: committed on success, rolled back on any error.

        With a `priority` it passes the write gate first (the generation pipeline's holds and
        settlements; see app/db/write_gate.py). A gated transaction must not wait for another
        gated one inside it.
        """
        gate = self.gate.slot(priority) if priority is not None else nullcontext()
        async with gate, self._writers() as session, session.begin():
            if self._is_sqlite:
                await sqlite.begin_immediate(session)
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
