"""Upstream attempts as rows, written by the transaction that ends the request's hold.

All of a request's attempts go in with one multi-row INSERT, run as driver SQL like the other
statements of that transaction (app/db/hot_sql.py): one more statement in a transaction that is
open anyway, and none at all for a request that never called an upstream. The statement is built
once per number of rows (a request makes at most `max_attempts` calls, so there are few).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import BindParameter, Table, bindparam, insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import UpstreamAttempt
from app.db.hot_sql import Columns, HotStatement

_attempts = cast(Table, UpstreamAttempt.__table__)


@dataclass(frozen=True)
class AttemptRecord:
    """One upstream call, as the request log keeps it."""

    channel_id: str
    channel_name: str
    provider: str
    upstream_model: str
    started_at: datetime
    latency_ms: int
    outcome: str  # succeeded | failed | ambiguous | rejected
    possibly_billed: bool
    images: int = 0
    http_status: int | None = None
    error_code: str | None = None
    error: str | None = None
    upstream_cost: Decimal | None = None
    usage: dict[str, Any] | None = None  # the provider's own usage block, as it answered it


@dataclass(frozen=True)
class _Row:
    request_id: str | None
    account_id: str
    n: int
    attempt: AttemptRecord


def _of_attempt(name: str) -> Any:
    get = attrgetter(name)
    return lambda row: get(row.attempt)


_ROW = Columns[_Row](
    _attempts,
    request_id=attrgetter("request_id"),
    account_id=attrgetter("account_id"),
    n=attrgetter("n"),
    **{
        name: _of_attempt(name)
        for name in (
            "channel_id", "channel_name", "provider", "upstream_model", "started_at", "latency_ms", "outcome",
            "http_status", "error_code", "error", "images", "possibly_billed", "upstream_cost",
            "usage",
        )
    },
)  # fmt: skip
_COLUMNS = tuple(_ROW.binds())
_INSERTS: dict[int, HotStatement] = {}


def _insert_of(count: int) -> HotStatement:
    statement = _INSERTS.get(count)
    if statement is None:
        # Each row binds its own names (channel_id_0, channel_id_1, ...) with the column's type.
        rows: list[dict[str, BindParameter[Any]]] = [
            {name: bindparam(f"{name}_{i}", type_=_attempts.c[name].type) for name in _COLUMNS} for i in range(count)
        ]
        statement = _INSERTS[count] = HotStatement(insert(_attempts).values(rows))
    return statement


async def write_attempts(
    session: AsyncSession, request_id: str | None, account_id: str, attempts: Sequence[AttemptRecord]
) -> None:
    """Insert the request's attempts, numbered from 1, in one statement (none when empty).

    A channel test's attempt belongs to no request: `request_id` None, `account_id` ""."""
    if not attempts:
        return
    params: dict[str, Any] = {}
    for i, attempt in enumerate(attempts):
        for name, value in _ROW.params(_Row(request_id, account_id, i + 1, attempt)).items():
            params[f"{name}_{i}"] = value
    await _insert_of(len(attempts)).run(session, params)
