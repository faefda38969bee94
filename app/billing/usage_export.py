"""One CSV row per request for finance, produced in pages so a month never sits in memory."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Row, Select, Text, and_, cast, or_, select
from sqlalchemy.orm import InstrumentedAttribute

from app.billing.amounts import render
from app.billing.models import UsageRecord
from app.db import Database

COLUMNS = (
    "request_id", "created_at", "completed_at", "account_id", "key_id", "endpoint", "model", "upstream_model",
    "channel", "provider", "status", "images_requested", "images_delivered", "unit_credits", "model_multiplier",
    "channel_multiplier", "credits", "attempts", "latency_ms", "error_code", "user", "metadata", "client_request_id",
)  # fmt: skip
PAGE = 1000

# Spreadsheets run a cell that starts with one of these as a formula (CSV injection), so a text
# cell starting with one gets a leading "'". Every text column is neutralised: `user` and
# `metadata` come from the caller, model and channel names from operators, and nobody should have
# to remember which. The numeric columns are left alone: the gateway writes them itself, and a
# negative amount must stay a number finance can add up; ids and timestamps are ours and never
# start with these characters.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NUMERIC_COLUMNS = frozenset(
    {"images_requested", "images_delivered", "unit_credits", "model_multiplier", "channel_multiplier", "credits",
     "attempts", "latency_ms"}
)  # fmt: skip
_TEXT_POSITIONS = tuple(i for i, name in enumerate(COLUMNS) if name not in NUMERIC_COLUMNS)


def spreadsheet_safe(value: str) -> str:
    return f"'{value}" if value.startswith(FORMULA_STARTS) else value


# The columns read, one per CSV column and in its order: plain rows, not `UsageRecord` entities.
# Building entities was ~40 % of the export's CPU (45 µs a row), decoding `channels_tried`, which is
# not exported, included (tests/benchmarks/RESULTS.md). `metadata` is read as its JSON text (a
# CAST, since asyncpg would decode a JSON column itself) and decoded by orjson.
_SELECTED = (
    UsageRecord.id, UsageRecord.created_at, UsageRecord.completed_at, UsageRecord.account_id, UsageRecord.key_id,
    UsageRecord.endpoint, UsageRecord.model, UsageRecord.upstream_model, UsageRecord.channel_name,
    UsageRecord.provider, UsageRecord.status, UsageRecord.images_requested, UsageRecord.images_delivered,
    UsageRecord.unit_credits, UsageRecord.model_multiplier, UsageRecord.channel_multiplier, UsageRecord.credits,
    UsageRecord.attempts, UsageRecord.latency_ms, UsageRecord.error_code, UsageRecord.user,
    cast(UsageRecord.request_metadata, Text), UsageRecord.client_request_id,
)  # fmt: skip


def _row(selected: Sequence[Any]) -> list[object]:
    cells = _cells(selected)
    for i in _TEXT_POSITIONS:
        cells[i] = spreadsheet_safe(str(cells[i]))
    return cells


def _cells(r: Sequence[Any]) -> list[object]:
    (request_id, created_at, completed_at, account_id, key_id, endpoint, model, upstream_model, channel, provider,
     status, requested, delivered, unit_credits, model_multiplier, channel_multiplier, credits, attempts, latency_ms,
     error_code, user, metadata, client_request_id) = r  # fmt: skip
    return [
        request_id, created_at.isoformat(), completed_at.isoformat() if completed_at else "", account_id, key_id,
        endpoint, model, upstream_model or "", channel or "", provider or "", status, requested, delivered,
        render(unit_credits), render(model_multiplier),
        render(channel_multiplier) if channel_multiplier is not None else "", render(credits), attempts,
        latency_ms if latency_ms is not None else "", error_code or "", user or "", _metadata_cell(metadata),
        client_request_id or "",
    ]  # fmt: skip


def _metadata_cell(stored: str | None) -> str:
    """The caller's metadata as compact JSON, "" when it has none. Re-encoded rather than copied:
    the stored text has the spacing of whoever wrote it (`{"a": "b"}` from SQLAlchemy)."""
    decoded = orjson.loads(stored) if stored else None  # SQL NULL, or JSON null for no metadata
    return orjson.dumps(decoded).decode() if decoded else ""


async def export_csv(
    db: Database, start: datetime | None, end: datetime | None, account_id: str | None = None
) -> AsyncIterator[str]:
    """CSV text in chunks, one request a row (see `paged_csv`)."""
    pages = Keyset(_SELECTED, UsageRecord.created_at, UsageRecord.id, start, end)
    where = [UsageRecord.account_id == account_id] if account_id is not None else []
    async for chunk in paged_csv(db, COLUMNS, pages, _row, where):
        yield chunk


@dataclass(frozen=True)
class Keyset:
    """Pages of a table oldest first, within [start, end), ordered by a moment and then a key."""

    # The columns each row holds (the moment and the key among them): only what is written, as
    # plain rows; whole ORM entities cost ~40 % of an export's CPU.
    columns: tuple[Any, ...]
    moment: InstrumentedAttribute[Any]
    key: InstrumentedAttribute[Any]
    start: datetime | None
    end: datetime | None
    # Another table some columns come from, and how to join it.
    join: tuple[Any, Any] | None = None

    def page_after(self, after: tuple[Any, Any] | None) -> Select[Any]:
        moment, key = self.moment, self.key
        query = select(*self.columns)
        if self.join is not None:
            query = query.join(*self.join)
        query = query.order_by(moment, key).limit(PAGE)
        # One lower bound, where the index scan starts: the last page's position once there is one
        # (it is within the range). With `start` as well, SQLite starts the scan at `start`, and
        # PostgreSQL, which cannot start it at the OR below, does too: each page then re-reads every
        # row before it, and a month of 1M rows takes minutes instead of seconds.
        lower = after[0] if after is not None else self.start
        if lower is not None:
            query = query.where(moment >= lower)
        if self.end is not None:
            query = query.where(moment < self.end)
        if after is not None:
            query = query.where(or_(moment > after[0], and_(moment == after[0], key > after[1])))
        return query

    def position_of(self, row: Row[Any]) -> tuple[Any, Any]:
        return row._mapping[self.moment], row._mapping[self.key]


async def paged_csv(
    db: Database,
    columns: Sequence[str],
    pages: Keyset,
    row: Callable[[Sequence[Any]], list[object]],
    where: Sequence[ColumnElement[bool]] = (),
) -> AsyncIterator[str]:
    """CSV text in chunks: the header, then one page of rows at a time, each read in its own short
    transaction (keyset pagination) so no long transaction blocks writers and a year of rows never
    sits in memory."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    yield buffer.getvalue()
    after: tuple[Any, Any] | None = None
    while True:
        query = pages.page_after(after)
        for condition in where:
            query = query.where(condition)
        async with db.sessions() as session:
            rows = (await session.execute(query)).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for record in rows:
            writer.writerow(row(record))
        yield buffer.getvalue()
        after = pages.position_of(rows[-1])
