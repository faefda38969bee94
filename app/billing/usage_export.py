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
    "channel_multiplier", "credits", "attempts", "latency_ms", "error_code", "user", "metadata",
)  # fmt: skip
PAGE = 1000


def _row(r: UsageRecord) -> list[object]:
    return [
        r.id, r.created_at.isoformat(), r.completed_at.isoformat() if r.completed_at else "", r.account_id, r.key_id,
        r.endpoint, r.model, r.upstream_model or "", r.channel_name or "", r.provider or "", r.status,
        r.images_requested, r.images_delivered, render(r.unit_credits), render(r.model_multiplier),
        render(r.channel_multiplier) if r.channel_multiplier is not None else "", render(r.credits), r.attempts,
        r.latency_ms if r.latency_ms is not None else "", r.error_code or "", r.user or "",
        orjson.dumps(r.request_metadata).decode() if r.request_metadata else "",
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
