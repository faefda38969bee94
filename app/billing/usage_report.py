"""Usage totals for finance, grouped by any of account, key, model, channel, UTC day, upstream
model, provider, status, UTC month and end user, with what the upstreams cost and the margin.

What the numbers mean:
- `requests` counts every usage record created in the range, whatever its status (succeeded,
  failed, filtered, canceled, expired, or still pending): it is "how many requests came in", and
  it equals the number of rows `GET /admin/usage/export` returns for the same range.
- `images` and `credits` count only what was delivered and charged (succeeded records), so
  `credits` equals the ledger's charges for those requests, negated.
- `upstream_cost` adds up the `upstream_cost` of every upstream attempt those requests made
  (failed, filtered and failed-over ones included: the provider may bill them). Grouped by
  `channel`, `provider` or `upstream_model`, an attempt counts under its own channel, provider and
  upstream model, not the one that finally served; so a group may have a cost and no requests.
- `revenue` is `credits × credit value` (GATEWAY_CREDIT_VALUE) and `margin` is
  `revenue − upstream_cost`, both exact.
- `channel` is the name of the channel as frozen on the record (the CSV's `channel` column), beside
  its `channel_id`; requests that never reached a channel group under null.
- `day` and `month` are the UTC calendar date (`YYYY-MM-DD`) and month (`YYYY-MM`) of `created_at`.

The range is half-open, `start <= created_at < end`; naive datetimes mean UTC. Aggregation runs
in SQL (the range through `ix_usage_created`, each request's attempts through
`ix_attempts_request`), so a month of traffic never sits in memory: only one row per group does.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import UpstreamAttempt, UsageRecord
from app.db import Fixed4
from app.errors import InvalidValue

# group_by name → the output fields it fills, in the order the contract lists them.
GROUPINGS: dict[str, tuple[str, ...]] = {
    "account": ("account_id",),
    "key": ("key_id",),
    "model": ("model",),
    "channel": ("channel_id", "channel"),
    "day": ("day",),
    "upstream_model": ("upstream_model",),
    "provider": ("provider",),
    "status": ("status",),
    "month": ("month",),
    "user": ("user",),
}
# Groupings an upstream attempt is counted under by its own values (its cost belongs to the channel
# it called), not by those of the request it was made for.
ATTEMPT_GROUPINGS = frozenset({"channel", "provider", "upstream_model"})
DEFAULT_CREDIT_VALUE = Decimal("0.01")
_MONTH = re.compile(r"(\d{4})-(\d{2})")


@dataclass(frozen=True)
class UsageTotals:
    requests: int
    images: int
    credits: Decimal
    upstream_cost: Decimal
    revenue: Decimal
    margin: Decimal


@dataclass(frozen=True)
class UsageRow:
    groups: dict[str, str | None]  # output field (account_id, channel, day, …) → value
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
    """An ISO 8601 date or datetime from the command line, naive meaning UTC; a bare month
    (`2026-12`) is its first instant."""
    if _MONTH.fullmatch(text.strip()):
        return month_start(text)
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def month_start(text: str) -> datetime:
    """`2026-12` → 2026-12-01T00:00Z; ValueError when it is not a month."""
    match = _MONTH.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    year, month = int(match[1]), int(match[2])
    if not (1 <= month <= 12 and year >= 1):
        raise ValueError(f"{text!r} is not a month (YYYY-MM)")
    return datetime(year, month, 1, tzinfo=UTC)


def month_range(text: str) -> tuple[datetime, datetime]:
    """The UTC month as a half-open range; a 400 naming `month` when it is not one."""
    try:
        start = month_start(text)
        end = datetime(start.year + start.month // 12, start.month % 12 + 1, 1, tzinfo=UTC)
    except ValueError:  # not a month, or the month after 9999-12
        raise InvalidValue(f"month must be a UTC month as YYYY-MM, got {text!r}.", param="month") from None
    return start, end


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
    credit_value: Decimal = DEFAULT_CREDIT_VALUE,
) -> UsageReport:
    """Totals for `start <= created_at < end` (either bound optional), one row per group."""
    start, end = check_range(start, end)
    group_by = parse_group_by(",".join(group_by))
    dialect = session.get_bind().dialect.name
    fields = [field for name in group_by for field in GROUPINGS[name]]

    scope: list[ColumnElement[bool]] = []
    if start is not None:
        scope.append(UsageRecord.created_at >= start)
    if end is not None:
        scope.append(UsageRecord.created_at < end)
    if account_id is not None:
        scope.append(UsageRecord.account_id == account_id)

    # Totals come from their own queries rather than from adding up rows, so that a report whose
    # rows do not add up would show it instead of hiding it.
    total_row = (await session.execute(select(*_measures()).where(*scope))).one()
    total_cost = (await session.execute(_cost_query([], scope))).scalar_one()
    totals = _totals(*total_row, upstream_cost=total_cost, credit_value=credit_value)
    if not group_by:
        return UsageReport(group_by=group_by, rows=[], totals=totals)

    measured: dict[tuple[str | None, ...], Sequence[Any]] = {}
    keys = [column for name in group_by for column in _group_columns(name, dialect, attempt=False)]
    grouped = select(*keys, *_measures()).where(*scope).group_by(*keys)
    for row in (await session.execute(grouped)).all():
        measured[_key(row[: len(keys)])] = row[len(keys) :]
    costs: dict[tuple[str | None, ...], Decimal] = {}
    attempt_keys = [column for name in group_by for column in _group_columns(name, dialect, attempt=True)]
    for row in (await session.execute(_cost_query(attempt_keys, scope))).all():
        costs[_key(row[: len(attempt_keys)])] = row[-1]

    rows = [
        UsageRow(
            groups=dict(zip(fields, key, strict=True)),
            totals=_totals(*measured.get(key, (0, 0, None)), upstream_cost=costs.get(key), credit_value=credit_value),
        )
        for key in {**measured, **costs}
    ]
    # Sorted here, not in SQL: PostgreSQL and SQLite disagree on where NULLs sort.
    rows.sort(key=lambda r: [(v is not None, v or "") for v in r.groups.values()])
    return UsageReport(group_by=group_by, rows=rows, totals=totals)


def _cost_query(keys: list[ColumnElement[Any]], scope: list[ColumnElement[bool]]) -> Select[Any]:
    """The upstream cost of the attempts of the requests in scope, summed per group (or in all)."""
    cost = type_coerce(func.sum(UpstreamAttempt.upstream_cost), Fixed4())
    query = (
        select(*keys, cost)
        .select_from(UsageRecord)
        .join(UpstreamAttempt, UpstreamAttempt.request_id == UsageRecord.id)
        .where(*scope, UpstreamAttempt.upstream_cost.is_not(None))
    )
    return query.group_by(*keys) if keys else query


def _group_columns(name: str, dialect: str, *, attempt: bool) -> list[ColumnElement[Any]]:
    """The SQL values a grouping stands for: the attempt's own for channel, provider and upstream
    model when grouping attempts, else the request's."""
    own = attempt and name in ATTEMPT_GROUPINGS
    if name == "channel":
        if own:
            return [UpstreamAttempt.channel_id.expression, UpstreamAttempt.channel_name.expression]
        return [UsageRecord.channel_id.expression, UsageRecord.channel_name.expression]
    if name in ("day", "month"):
        return [_utc_calendar(dialect, month=name == "month")]
    columns: dict[str, Any] = {
        "account": UsageRecord.account_id,
        "key": UsageRecord.key_id,
        "model": UsageRecord.model,
        "status": UsageRecord.status,
        "user": UsageRecord.user,
        "provider": UpstreamAttempt.provider if own else UsageRecord.provider,
        "upstream_model": UpstreamAttempt.upstream_model if own else UsageRecord.upstream_model,
    }
    return [columns[name].expression]


def _utc_calendar(dialect: str, *, month: bool) -> ColumnElement[str]:
    if dialect == "postgresql":
        # timestamptz → UTC wall-clock time first, so the session's TimeZone setting cannot move
        # a request to another day.
        return func.to_char(func.timezone("UTC", UsageRecord.created_at), "YYYY-MM" if month else "YYYY-MM-DD")
    # SQLite keeps UTCDateTime as UTC text ("2026-11-01 23:59:59.999999"); strftime reads it as is.
    return func.strftime("%Y-%m" if month else "%Y-%m-%d", UsageRecord.created_at)


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


def _totals(
    requests: int | None,
    images: int | None,
    credits: Decimal | None,
    *,
    upstream_cost: Decimal | None,
    credit_value: Decimal,
) -> UsageTotals:
    credits = credits or Decimal(0)
    cost = upstream_cost or Decimal(0)
    revenue = credits * credit_value
    return UsageTotals(
        requests=int(requests or 0),
        images=int(images or 0),
        credits=credits,
        upstream_cost=cost,
        revenue=revenue,
        margin=revenue - cost,
    )


def _key(values: Sequence[object]) -> tuple[str | None, ...]:
    return tuple(None if value is None else str(value) for value in values)
