"""Usage totals for finance, grouped by any of account, key, model, channel and UTC day.

What the numbers mean:
- `requests` counts every usage record created in the range, whatever its status (succeeded,
  failed, filtered, canceled, expired, or still pending): it is "how many requests came in", and
  it equals the number of rows `GET /admin/usage/export` returns for the same range.
- `images` and `credits` count only what was delivered and charged (succeeded records), so
  `credits` equals the ledger's charges for those requests, negated.
- `channel` is the name of the channel that served, as frozen on the record (the CSV's `channel`
  column); requests that never reached a channel group under null.
- `day` is the UTC calendar date of `created_at`, as `YYYY-MM-DD`.

The range is half-open, `start <= created_at < end`; naive datetimes mean UTC. Aggregation runs
in SQL, so a month of traffic never sits in memory.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import UsageRecord
from app.db import Fixed4
from app.errors import InvalidValue

# group_by name → the output field it fills, in the order the contract lists them.
GROUPINGS: dict[str, str] = {
    "account": "account_id",
    "key": "key_id",
    "model": "model",
    "channel": "channel",
    "day": "day",
}


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    images: int
    credits: Decimal


@dataclass(frozen=True)
class UsageRow:
    groups: dict[str, str | None]  # output field (account_id, key_id, model, channel, day) → value
    totals: UsageTotals


@dataclass(frozen=True)
class UsageReport:
    group_by: tuple[str, ...]
    rows: list[UsageRow]
    totals: UsageTotals


def as_utc(value: datetime | None) -> datetime | None:
    """Naive datetimes are read as UTC; aware ones keep their instant."""
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_datetime(text: str) -> datetime:
    """An ISO 8601 date or datetime from the command line, naive meaning UTC."""
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def parse_group_by(value: str | None) -> tuple[str, ...]:
    """`"account,model"` → `("account", "model")`; unknown names are a 400 naming `group_by`."""
    names: list[str] = []
    for part in (value or "").split(","):
        name = part.strip().lower()
        if not name:
            continue
        if name not in GROUPINGS:
            raise InvalidValue(
                f"Unknown group_by value {name!r}; use any of {', '.join(GROUPINGS)} (comma-separated).",
                param="group_by",
            )
        if name not in names:
            names.append(name)
    return tuple(names)


def check_range(start: datetime | None, end: datetime | None) -> tuple[datetime | None, datetime | None]:
    """The range in UTC; an end before its start is a 400 naming `end`."""
    start, end = as_utc(start), as_utc(end)
    if start is not None and end is not None and end < start:
        raise InvalidValue("end must not be before start.", param="end")
    return start, end


async def usage_report(
    session: AsyncSession,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    group_by: Sequence[str] = (),
    account_id: str | None = None,
) -> UsageReport:
    """Totals for `start <= created_at < end` (either bound optional), one row per group."""
    start, end = check_range(start, end)
    group_by = parse_group_by(",".join(group_by))
    dialect = session.get_bind().dialect.name
    keys = [_group_column(name, dialect) for name in group_by]
    measures = _measures()

    scope: list[ColumnElement[bool]] = []
    if start is not None:
        scope.append(UsageRecord.created_at >= start)
    if end is not None:
        scope.append(UsageRecord.created_at < end)
    if account_id is not None:
        scope.append(UsageRecord.account_id == account_id)

    # Totals come from their own query rather than from adding up rows, so that a report whose
    # rows do not add up would show it instead of hiding it.
    total_row = (await session.execute(select(*measures).where(*scope))).one()
    totals = _totals(total_row[0], total_row[1], total_row[2])
    rows: list[UsageRow] = []
    if keys:
        grouped = select(*keys, *measures).where(*scope).group_by(*keys)
        width = len(keys)
        for row in (await session.execute(grouped)).all():
            groups = {GROUPINGS[name]: _text(value) for name, value in zip(group_by, row[:width], strict=True)}
            rows.append(UsageRow(groups=groups, totals=_totals(*row[width:])))
        # Sorted here, not in SQL: PostgreSQL and SQLite disagree on where NULLs sort.
        rows.sort(key=lambda r: [(v is not None, v or "") for v in r.groups.values()])
    return UsageReport(group_by=group_by, rows=rows, totals=totals)


def _group_column(name: str, dialect: str) -> ColumnElement[Any]:
    column: ColumnElement[Any]
    if name == "account":
        column = UsageRecord.account_id.expression
    elif name == "key":
        column = UsageRecord.key_id.expression
    elif name == "model":
        column = UsageRecord.model.expression
    elif name == "channel":
        column = UsageRecord.channel_name.expression
    else:
        column = _utc_day(dialect)
    return column


def _utc_day(dialect: str) -> ColumnElement[str]:
    if dialect == "postgresql":
        # timestamptz → UTC wall-clock time first, so the session's TimeZone setting cannot move
        # a request to another day.
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM-DD")
    # SQLite keeps UTCDateTime as UTC text ("2026-11-01 23:59:59.999999"); date() reads it as is.
    return func.date(UsageRecord.created_at)


def _measures() -> tuple[ColumnElement[int], ColumnElement[int], ColumnElement[Decimal]]:
    succeeded = UsageRecord.status == "succeeded"
    delivered = case((succeeded, UsageRecord.images_delivered), else_=0)
    charged = case((succeeded, UsageRecord.credits), else_=None)
    return (
        type_coerce(func.count(UsageRecord.id), Integer()),
        type_coerce(func.coalesce(func.sum(delivered), 0), Integer()),
        # Credits are integer 1/10,000s in SQL; the Fixed4 type turns the sum back into a Decimal.
        type_coerce(func.sum(charged), Fixed4()),
    )


def _totals(requests: int | None, images: int | None, credits: Decimal | None) -> UsageTotals:
    return UsageTotals(requests=int(requests or 0), images=int(images or 0), credits=credits or Decimal(0))


def _text(value: object) -> str | None:
    return None if value is None else str(value)
