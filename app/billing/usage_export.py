"""One CSV row per request for finance, produced in pages so a month never sits in memory."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import datetime

import orjson
from sqlalchemy import and_, or_, select

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


def _row(r: UsageRecord) -> list[object]:
    cells = _cells(r)
    for i in _TEXT_POSITIONS:
        cells[i] = spreadsheet_safe(str(cells[i]))
    return cells


def _cells(r: UsageRecord) -> list[object]:
    return [
        r.id, r.created_at.isoformat(), r.completed_at.isoformat() if r.completed_at else "", r.account_id, r.key_id,
        r.endpoint, r.model, r.upstream_model or "", r.channel_name or "", r.provider or "", r.status,
        r.images_requested, r.images_delivered, render(r.unit_credits), render(r.model_multiplier),
        render(r.channel_multiplier) if r.channel_multiplier is not None else "", render(r.credits), r.attempts,
        r.latency_ms if r.latency_ms is not None else "", r.error_code or "", r.user or "",
        orjson.dumps(r.request_metadata).decode() if r.request_metadata else "", r.client_request_id or "",
    ]  # fmt: skip


async def export_csv(
    db: Database, start: datetime | None, end: datetime | None, account_id: str | None = None
) -> AsyncIterator[str]:
    """CSV text in chunks: the header, then one page of rows at a time, each read in its own short
    transaction (keyset pagination on created_at, id) so no long transaction blocks writers."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(COLUMNS)
    yield buffer.getvalue()
    after: tuple[datetime, str] | None = None
    while True:
        query = select(UsageRecord).order_by(UsageRecord.created_at, UsageRecord.id).limit(PAGE)
        if start is not None:
            query = query.where(UsageRecord.created_at >= start)
        if end is not None:
            query = query.where(UsageRecord.created_at < end)
        if account_id is not None:
            query = query.where(UsageRecord.account_id == account_id)
        if after is not None:
            query = query.where(
                or_(
                    UsageRecord.created_at > after[0],
                    and_(UsageRecord.created_at == after[0], UsageRecord.id > after[1]),
                )
            )
        async with db.sessions() as session:
            rows = (await session.scalars(query)).all()
        if not rows:
            return
        buffer.seek(0)
        buffer.truncate()
        for record in rows:
            writer.writerow(_row(record))
        yield buffer.getvalue()
        after = (rows[-1].created_at, rows[-1].id)
