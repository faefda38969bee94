"""One CSV row per upstream attempt: the calls a provider may bill, for reconciling its invoice."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select

from app.billing.amounts import render
from app.billing.models import UpstreamAttempt, UsageRecord
from app.billing.usage_export import Keyset, paged_csv, spreadsheet_safe
from app.db import Database

COLUMNS = (
    "request_id", "account_id", "model", "n", "channel", "provider", "upstream_model", "started_at", "latency_ms",
    "outcome", "http_status", "error_code", "images", "possibly_billed", "upstream_cost",
)  # fmt: skip


def _row(selected: Sequence[Any]) -> list[object]:
    attempt: UpstreamAttempt = selected[0]
    model: str | None = selected[1]  # None for a channel test's attempt: it served no request
    # Channel, upstream model and error code come from operators and upstreams: neutralised like
    # every text cell of the usage export.
    return [
        attempt.request_id or "", attempt.account_id, spreadsheet_safe(model or ""), attempt.n,
        spreadsheet_safe(attempt.channel_name), attempt.provider, spreadsheet_safe(attempt.upstream_model),
        attempt.started_at.isoformat(), attempt.latency_ms, attempt.outcome,
        attempt.http_status if attempt.http_status is not None else "", spreadsheet_safe(attempt.error_code or ""),
        attempt.images, "true" if attempt.possibly_billed else "false",
        render(attempt.upstream_cost) if attempt.upstream_cost is not None else "",
    ]  # fmt: skip


async def export_attempts_csv(db: Database, start: datetime | None, end: datetime | None) -> AsyncIterator[str]:
    """Every upstream attempt that started in [start, end), oldest first, with its request's model.
    Channel tests' attempts are in it too (no request id, account or model): the provider bills
    them like any other call."""
    pages = Keyset(
        UpstreamAttempt,
        UpstreamAttempt.started_at,
        UpstreamAttempt.id,
        start,
        end,
        # The request's model by its primary key, one row at a time: a channel test's attempt
        # has no request, and an inner join would drop it.
        also=(select(UsageRecord.model).where(UsageRecord.id == UpstreamAttempt.request_id).scalar_subquery(),),
    )
    async for chunk in paged_csv(db, COLUMNS, pages, _row):
        yield chunk
