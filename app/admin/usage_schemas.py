"""The usage report as `GET /admin/usage` and `image-gateway usage report` give it: JSON or CSV,
with the names of the accounts, keys and channels it groups by next to their ids."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BaseModel, Field, PlainSerializer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.admin.types import Credits
from app.billing.models import Account
from app.billing.usage_export import spreadsheet_safe
from app.billing.usage_report import GROUPINGS, UsageReport
from app.catalog.models import Channel
from app.keys.models import ApiKey


def exact(amount: Decimal) -> str:
    """A decimal string with every digit kept (revenue has more places than credits), no exponent."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


Money = Annotated[Decimal, PlainSerializer(exact, return_type=str)]
# What naming a grouping adds beside the fields the report itself fills.
NAMES = {"account": ("account_name",), "key": ("key_name",), "channel": ("channel_name",)}
MEASURES = ("requests", "images", "credits", "upstream_cost", "revenue", "margin")


class UsageTotalsOut(BaseModel):
    requests: int = Field(description="Requests created in the range, in any status (still pending included).")
    images: int = Field(description="Images delivered by succeeded requests.")
    credits: Credits = Field(description="Credits charged: the ledger's charges for these requests, negated.")
    upstream_cost: Credits = Field(
        description="What the upstream attempts of these requests cost (the provider's reported cost, else the "
        "channel's `costs` × images returned), in the providers' currency; attempts with neither count 0."
    )
    revenue: Money = Field(description="credits × GATEWAY_CREDIT_VALUE, in currency units.")
    margin: Money = Field(description="revenue − upstream_cost.")


class UsageGroup(BaseModel):
    account_id: str | None = None
    account_name: str | None = Field(None, description="The account's current name.")
    key_id: str | None = None
    key_name: str | None = Field(None, description="The key's current name.")
    model: str | None = None
    channel_id: str | None = None
    channel: str | None = Field(None, description="Name of the channel, as recorded when it was called.")
    channel_name: str | None = Field(None, description="The channel's current name (as recorded, if deleted).")
    day: str | None = Field(None, description="UTC date the request was created, YYYY-MM-DD.")
    upstream_model: str | None = None
    provider: str | None = None
    status: str | None = None
    month: str | None = Field(None, description="UTC month the request was created, YYYY-MM.")
    user: str | None = Field(None, description="The end-user id the caller sent (`user`).")


class UsageRowOut(UsageTotalsOut, UsageGroup):
    """One group: only the fields of the `group_by` values appear (with the names of accounts, keys
    and channels), then the group's totals. Grouped by channel, provider or upstream model, an
    attempt's cost counts under its own channel, so a group can have a cost and no requests."""


class UsageReportOut(BaseModel):
    rows: list[UsageRowOut]
    totals: UsageTotalsOut


def columns_of(group_by: Sequence[str]) -> list[str]:
    """The grouped fields in the rows' own order, then the measures: the CSV header."""
    grouped = {field for name in group_by for field in (*GROUPINGS[name], *NAMES.get(name, ()))}
    return [field for field in UsageGroup.model_fields if field in grouped] + list(MEASURES)


async def usage_report_out(session: AsyncSession, report: UsageReport) -> UsageReportOut:
    """The report with names added: one query per named grouping, none per row."""
    rows = [row.groups for row in report.rows]
    named: list[dict[str, str | None]] = [{} for _ in rows]
    if "account" in report.group_by:
        accounts = await _names(session, Account.id, Account.name, (g["account_id"] for g in rows))
        for names, groups in zip(named, rows, strict=True):
            names["account_name"] = accounts.get(groups["account_id"] or "")
    if "key" in report.group_by:
        keys = await _names(session, ApiKey.id, ApiKey.name, (g["key_id"] for g in rows))
        for names, groups in zip(named, rows, strict=True):
            names["key_name"] = keys.get(groups["key_id"] or "")
    if "channel" in report.group_by:
        channels = await _names(session, Channel.id, Channel.name, (g["channel_id"] for g in rows))
        for names, groups in zip(named, rows, strict=True):
            names["channel_name"] = channels.get(groups["channel_id"] or "", groups["channel"])
    # model_validate marks only the grouped fields as set, so exclude_unset drops the others.
    return UsageReportOut(
        rows=[
            UsageRowOut.model_validate({**row.groups, **names, **asdict(row.totals)})
            for row, names in zip(report.rows, named, strict=True)
        ],
        totals=UsageTotalsOut.model_validate(asdict(report.totals)),
    )


def usage_csv(report: UsageReportOut, group_by: Sequence[str]) -> str:
    """The rows as CSV, one header line; without any grouping, the totals as the one row. Text cells
    that a spreadsheet would run as a formula are neutralised, as in the exports."""
    columns = columns_of(group_by)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(columns)
    rows: list[BaseModel] = list(report.rows) if group_by else [report.totals]
    for row in rows:
        values = row.model_dump(mode="json")
        writer.writerow([_cell(name, values.get(name)) for name in columns])
    return buffer.getvalue()


def _cell(name: str, value: Any) -> object:
    if value is None:
        return ""
    return value if name in MEASURES else spreadsheet_safe(str(value))


async def _names(
    session: AsyncSession,
    id_column: InstrumentedAttribute[str],
    name_column: InstrumentedAttribute[str],
    ids: Iterable[str | None],
) -> dict[str, str]:
    wanted = sorted({i for i in ids if i is not None})
    found: dict[str, str] = {}
    for start in range(0, len(wanted), 500):  # bounded IN lists, whatever the number of groups
        chunk = wanted[start : start + 500]
        rows = await session.execute(select(id_column, name_column).where(id_column.in_(chunk)))
        found.update({row_id: name for row_id, name in rows.all()})
    return found
