"""SQLite's transaction protocol. This module owns it; the rest of `app/db/` only calls in here.

SQLite has one write lock, and pysqlite's own transaction handling defers BEGIN until the first
write, which would let two transactions both read a balance before either writes (a hold's
conditional UPDATE, app/billing/holds.py, relies on holding the lock from its first read). So:

1. The driver runs in autocommit (`isolation_level = None`) and WAL mode: the gateway, not
   pysqlite, says when a transaction begins, and readers never wait for the writer.
2. Reading sessions (engines carrying `READ_ONLY`) begin with a plain, deferred BEGIN: a snapshot
   that blocks nobody.
3. Every other transaction begins with BEGIN IMMEDIATE, taking the write lock up front. The units
   of work of `Database.transaction` send it themselves (`begin_immediate`) in one hop to the
   driver's thread; through SQLAlchemy's begin event it would take three. Their engine carries
   `OWN_BEGIN`, which keeps the event listener out of the way.
4. Hot statements (app/db/hot_sql.py) run straight on the aiosqlite connection inside that open
   transaction (`execute`), one hop each, and commit or roll back with it.
5. A connection returned to the pool is rolled back only when it still holds a transaction.
6. Writers queue for the lock in the event loop, in the write gate (app/db/write_gate.py), one at
   a time (`WRITERS_AT_ONCE`), instead of busy-waiting in driver threads.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, create_async_engine
from sqlalchemy.pool import ConnectionPoolEntry, PoolResetState

READ_ONLY = "gateway_read_only"  # execution option of the sessions that only read
OWN_BEGIN = "gateway_own_begin"  # execution option: the unit of work sends BEGIN IMMEDIATE itself
WRITERS_AT_ONCE = 1  # only one connection can hold the write lock anyway


def make_engine(url: str) -> AsyncEngine:
    # Reset on return is decided in `_on_reset`, without a driver round trip when idle.
    engine = create_async_engine(url, connect_args={"timeout": 60}, pool_reset_on_return=None)
    _install(engine)
    return engine


def writer_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine `Database.transaction` opens its sessions on: they call `begin_immediate`."""
    return engine.execution_options(**{OWN_BEGIN: True})


async def begin_immediate(session: AsyncSession) -> None:
    """Take the write lock for the session's transaction, in one hop to the driver's thread.

    Every statement that follows, ORM or driver SQL, runs inside it on this same connection.
    """
    raw = await (await session.connection()).get_raw_connection()
    await raw.driver_connection.execute_fetchall("BEGIN IMMEDIATE")  # type: ignore[union-attr]


async def execute(connection: AsyncConnection, sql: str, values: tuple[Any, ...]) -> list[Any]:
    """Run one statement inside the connection's open transaction; the rows, in one hop."""
    raw = await connection.get_raw_connection()
    driver: Any = raw.driver_connection
    return list(await driver.execute_fetchall(sql, values))


def _install(engine: AsyncEngine) -> None:
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
