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


# The columns written, in the CSV's order, as plain rows (whole ORM entities took ~40 % of an
# export's CPU), then the attempt's id for the next page's position.
_SELECTED = (
    UpstreamAttempt.request_id, UpstreamAttempt.account_id,
    # The request's model by its primary key, one row at a time: a channel test's attempt has no
    # request, and an inner join would drop it.
    select(UsageRecord.model).where(UsageRecord.id == UpstreamAttempt.request_id).scalar_subquery(),
    UpstreamAttempt.n, UpstreamAttempt.channel_name, UpstreamAttempt.provider, UpstreamAttempt.upstream_model,
    UpstreamAttempt.started_at, UpstreamAttempt.latency_ms, UpstreamAttempt.outcome, UpstreamAttempt.http_status,
    UpstreamAttempt.error_code, UpstreamAttempt.images, UpstreamAttempt.possibly_billed,
    UpstreamAttempt.upstream_cost, UpstreamAttempt.id,
)  # fmt: skip


def _row(selected: Sequence[Any]) -> list[object]:
    (request_id, account_id, model, n, channel, provider, upstream_model, started_at, latency_ms, outcome,
     http_status, error_code, images, possibly_billed, upstream_cost, _) = selected  # fmt: skip
    # Channel, upstream model and error code come from operators and upstreams: neutralised like
    # every text cell of the usage export. A channel test's attempt has no request, account or model.
    return [
        request_id or "", account_id, spreadsheet_safe(model or ""), n, spreadsheet_safe(channel), provider,
        spreadsheet_safe(upstream_model), started_at.isoformat(), latency_ms, outcome,
        http_status if http_status is not None else "", spreadsheet_safe(error_code or ""), images,
        "true" if possibly_billed else "false", render(upstream_cost) if upstream_cost is not None else "",
    ]  # fmt: skip


async def export_attempts_csv(db: Database, start: datetime | None, end: datetime | None) -> AsyncIterator[str]:
    """Every upstream attempt that started in [start, end), oldest first, with its request's model.
    Channel tests' attempts are in it too (no request id, account or model): the provider bills
    them like any other call."""
    pages = Keyset(_SELECTED, UpstreamAttempt.started_at, UpstreamAttempt.id, start, end)
    async for chunk in paged_csv(db, COLUMNS, pages, _row):
        yield chunk
