"""Core statements compiled once per dialect and run as driver SQL, for the per-request money path.

Each request runs two short write transactions of a few statements. Through SQLAlchemy's full
execution path each statement costs cache-key generation, a compiled-cache lookup, parameter and
result processing and, on SQLite, four thread hops through the async adapter: together more
than the statements themselves (tests/benchmarks/RESULTS.md). Here the statement is compiled
once, its parameters are converted with the column types' own bind processors (so what is stored
is byte for byte what the ORM would store), and it runs:

- on SQLite, straight on the aiosqlite connection inside the session's transaction, which is
  always open (the protocol is app/db/sqlite.py's), so the statements commit or roll back with it;
- elsewhere, through `exec_driver_sql`, which keeps the driver adapter's own transaction handling
  (asyncpg starts its transaction lazily, on the first statement the adapter sees).

`Columns` lists what an INSERT or UPDATE writes and where each value comes from; the statement's
bind list and the parameters of each run are both made from it, so a new column is one line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from sqlalchemy import BindParameter, Table, bindparam
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import UpdateBase
from sqlalchemy.types import TypeEngine

from app.db import sqlite

_Source = TypeVar("_Source")

Processor = Callable[[Any], Any] | None
_GIVEN = object()  # the caller passes this parameter


@dataclass(frozen=True)
class _Prepared:
    sql: str
    names: tuple[str, ...]
    fixed: tuple[Any, ...]  # the values of literals compiled into the statement ("pending"), else _GIVEN
    binds: tuple[Processor, ...]
    results: tuple[Processor, ...]


class HotStatement:
    """One INSERT/UPDATE, optionally RETURNING columns of the given types."""

    def __init__(self, statement: UpdateBase, returns: Sequence[TypeEngine[Any]] = ()) -> None:
        self._statement = statement
        self._returns = tuple(returns)
        # By dialect name. Module-level statements share it across engines, which is safe: what
        # it holds follows from the statement and the dialect alone.
        self._prepared: dict[str, _Prepared] = {}

    async def run(self, session: AsyncSession, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Execute with `params` (Python values, as for `session.execute`); the rows it returned."""
        connection = await session.connection()
        dialect = connection.dialect
        prepared = self._prepare(dialect)
        values = tuple(
            _convert(params[name] if fixed is _GIVEN else fixed, convert)
            for name, fixed, convert in zip(prepared.names, prepared.fixed, prepared.binds, strict=True)
        )
        if dialect.name == "sqlite":
            rows = await sqlite.execute(connection, prepared.sql, values)
        else:
            result = await connection.exec_driver_sql(prepared.sql, values)
            rows = list(result.all()) if self._returns else []
        return [tuple(v if p is None else p(v) for v, p in zip(row, prepared.results, strict=True)) for row in rows]

    def _prepare(self, dialect: Dialect) -> _Prepared:
        prepared = self._prepared.get(dialect.name)
        if prepared is None:
            compiled = self._statement.compile(dialect=dialect)
            names = tuple(compiled.positiontup or ())
            unset = [n for n in names if not compiled.binds[n].required and compiled.binds[n].value is None]
            if unset:
                # A column default SQLAlchemy would compute per execution; this path would store NULL.
                raise ValueError(f"pass these explicitly: {', '.join(unset)}")
            prepared = _Prepared(
                sql=compiled.string,
                names=names,
                fixed=tuple(_GIVEN if compiled.binds[n].required else compiled.binds[n].value for n in names),
                binds=tuple(compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect) for n in names),
                results=tuple(t.dialect_impl(dialect).result_processor(dialect, None) for t in self._returns),
            )
            self._prepared[dialect.name] = prepared
        return prepared


def _convert(value: Any, convert: Processor) -> Any:
    return value if convert is None else convert(value)


class Columns(Generic[_Source]):
    """The columns a hot statement writes, each with the function that reads its value from the
    statement's source object (the one list both the bind list and the parameters come from)."""

    def __init__(self, table: Table, **values: Callable[[_Source], Any]) -> None:
        self._table = table
        self._values = values

    def binds(self) -> dict[str, BindParameter[Any]]:
        """For `insert(table).values(...)` / `update(table).values(...)`: each column bound by name,
        with the column's type."""
        return {name: bindparam(name, type_=self._table.c[name].type) for name in self._values}

    def params(self, source: _Source) -> dict[str, Any]:
        return {name: value(source) for name, value in self._values.items()}
