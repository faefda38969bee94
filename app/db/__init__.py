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
from typing import Any, Literal

from sqlalchemy import BigInteger, BindParameter, DateTime, event, literal
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState
from sqlalchemy.types import TypeDecorator

from app.db.write_gate import WriteGate

Lane = Literal["admit", "settle"]  # the hot path's two write transactions, see app/db/write_gate.py
SCALE = 10_000  # amounts and multipliers are stored as integers in 1/10,000
READ_ONLY = "gateway_read_only"  # execution option of the sessions that only read
OWN_BEGIN = "gateway_own_begin"  # execution option: Database.transaction emits the BEGIN itself


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


class Base(DeclarativeBase):
    pass


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id(prefix: str, nbytes: int = 12) -> str:
    return f"{prefix}_{secrets.token_hex(nbytes)}"


def make_engine(url: str, pool_size: int = 20, max_overflow: int = 20) -> AsyncEngine:
    if url.startswith("sqlite"):
        # Reset on return is decided in _tune_sqlite, without a driver round trip when idle.
        engine = create_async_engine(url, connect_args={"timeout": 60}, pool_reset_on_return=None)
        _tune_sqlite(engine)
        return engine
    # No pre-ping: it costs a round trip per checkout on the hot path. Connections are recycled
    # instead, and a dead one fails a single transaction, which the money rules already survive.
    return create_async_engine(url, pool_size=pool_size, max_overflow=max_overflow, pool_recycle=1800)


def _tune_sqlite(engine: AsyncEngine) -> None:
    # pysqlite's own transaction handling defers BEGIN until the first write, which lets two
    # transactions both read a balance before either writes. Every transaction here starts with
    # BEGIN IMMEDIATE instead, taking the write lock up front; WAL keeps readers unblocked.
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=60000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        # Reads (Database.sessions) take a deferred snapshot and block nobody; everything else
        # takes the write lock up front.
        options = conn.get_execution_options()
        if not options.get(OWN_BEGIN):
            conn.exec_driver_sql("BEGIN" if options.get(READ_ONLY) else "BEGIN IMMEDIATE")

    @event.listens_for(engine.sync_engine, "reset")
    def _on_reset(dbapi_connection: Any, record: ConnectionPoolEntry, state: PoolResetState) -> None:
        # A connection returned to the pool must hold no transaction (a forgotten one would keep
        # the write lock). Most come back already committed: asking the driver costs nothing,
        # while the pool's unconditional ROLLBACK would be one more hop to its thread.
        driver = record.driver_connection
        if state.asyncio_safe and (driver is None or driver.in_transaction):
            dbapi_connection.rollback()


class Database:
    """An engine plus the session factories every read and every unit of work is opened from."""

    def __init__(self, url: str, pool_size: int = 20, max_overflow: int = 20) -> None:
        self.url = url
        self.engine = make_engine(url, pool_size, max_overflow)
        # `sessions()` is for reading only (on SQLite it does not take the write lock);
        # every write goes through `transaction()`.
        self.sessions = async_sessionmaker(self.engine.execution_options(**{READ_ONLY: True}), expire_on_commit=False)
        self._is_sqlite = url.startswith("sqlite")
        # On SQLite, transaction() sends its own BEGIN IMMEDIATE (see there).
        writer_engine = self.engine.execution_options(**{OWN_BEGIN: True}) if self._is_sqlite else self.engine
        self._writers = async_sessionmaker(writer_engine, expire_on_commit=False)
        # SQLite has one write lock: queue for it here rather than busy-wait in a driver thread.
        # Elsewhere half the pool, so reads and other writes always find a connection.
        self.gate = WriteGate(1 if self._is_sqlite else max(1, pool_size // 2))

    @asynccontextmanager
    async def transaction(self, lane: Lane | None = None) -> AsyncIterator[AsyncSession]:
        """One short unit of work: committed on success, rolled back on any error.

        The generation pipeline names its `lane`: its holds and settlements pass the write gate
        (settlements first). A gated transaction must not wait for another gated one inside it.
        """
        gate = self.gate.slot(urgent=lane == "settle") if lane is not None else nullcontext()
        async with gate, self._writers() as session, session.begin():
            if self._is_sqlite:
                # BEGIN IMMEDIATE in one hop to the driver's thread (through SQLAlchemy's adapter,
                # as the begin listener does, it takes three); every statement that follows,
                # ORM or driver SQL (app/db/hot_sql.py), runs inside it on this same connection.
                raw = await (await session.connection()).get_raw_connection()
                await raw.driver_connection.execute_fetchall("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            yield session

    async def dispose(self) -> None:
        await self.engine.dispose()
