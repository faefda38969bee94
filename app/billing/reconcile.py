"""Reconciling a provider's own usage with the calls we made to it, per UTC day and upstream model.

The provider's file (`date,upstream_model,images[,cost]`) says what it will bill; our side is the
channel's possibly-billed upstream attempts (`possibly_billed`: it answered, or it went silent
after the request was sent), channel tests' included. The rules finance relies on
(docs/finance.md says the same):

- The days compared are the ones the file covers, first date to last date inclusive, in UTC.
- `ours` counts the images the upstream returned. An ambiguous attempt (timed out or cut off
  after sending) returned nothing we know of, yet the provider may have made and billed its
  images: such attempts are counted in `ambiguous`, and the images they asked for in
  `ambiguous_images`. A row matches when ours <= theirs <= ours + ambiguous_images, so a billed
  timeout is explained rather than flagged, and anything beyond it is flagged.
- Costs are compared only when both sides have one. The provider's cost is rounded half-up to
  four places (our precision); ours is the sum of the attempts' `upstream_cost`, or null when any
  of them has none (a partial sum would look like a difference). An ambiguous attempt may add
  the channel's current price for the images it asked for.
- Several file rows for one day and model (sizes, projects) are added up; a cost is known only
  if every one of them has one.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import ColumnElement, Integer, case, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import FOUR_PLACES, MAX_AMOUNT
from app.billing.models import UpstreamAttempt, UsageRecord
from app.db import Fixed4
from app.errors import InvalidValue

REQUIRED = ("date", "upstream_model", "images")
OPTIONAL = ("cost",)
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
MAX_MODEL_LENGTH = 200  # the length of UpstreamAttempt.upstream_model
_HEADER_HELP = "{problem}: the first line must be a header naming the columns date,upstream_model,images[,cost]."

Key = tuple[date, str]


@dataclass(frozen=True)
class ProviderUsage:
    images: int = 0
    cost: Decimal | None = None


@dataclass(frozen=True)
class OurUsage:
    images: int = 0
    ambiguous: int = 0
    ambiguous_images: int = 0
    cost: Decimal | None = None


@dataclass(frozen=True)
class ProviderFile:
    usage: dict[Key, ProviderUsage]
    ignored_columns: list[str] = field(default_factory=list)

    @property
    def first_day(self) -> date:
        return min(day for day, _ in self.usage)

    @property
    def last_day(self) -> date:
        return max(day for day, _ in self.usage)


@dataclass(frozen=True)
class ReconciledRow:
    day: date
    upstream_model: str
    ours: int
    theirs: int
    ambiguous: int
    ambiguous_images: int
    cost_ours: Decimal | None
    cost_theirs: Decimal | None
    ok: bool

    @property
    def difference(self) -> int:
        return self.theirs - self.ours

    @property
    def cost_difference(self) -> Decimal | None:
        if self.cost_ours is None or self.cost_theirs is None:
            return None
        return self.cost_theirs - self.cost_ours


@dataclass(frozen=True)
class Reconciliation:
    first_day: date
    last_day: date
    rows: list[ReconciledRow]
    ignored_columns: list[str]

    @property
    def ok(self) -> bool:
        return all(row.ok for row in self.rows)


def parse_provider_csv(raw: bytes) -> ProviderFile:
    """The provider's usage file, or a 400 naming the line and the column that is wrong."""
    try:
        text = raw.decode("utf-8-sig")  # a spreadsheet's byte-order mark is not part of the header
    except UnicodeDecodeError as exc:
        raise InvalidValue(f"The file is not UTF-8 text (byte {exc.start}).", param="body") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        if header is None:
            raise InvalidValue(_HEADER_HELP.format(problem="The file is empty"), param="body")
        columns = _columns(header, reader.line_num)
        usage: dict[Key, ProviderUsage] = {}
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue
            key, line_usage = _parse_row(row, columns, len(header), reader.line_num)
            usage[key] = _add(usage.get(key), line_usage)
    except csv.Error as exc:
        raise InvalidValue(f"line {reader.line_num}: not valid CSV ({exc}).", param="body") from None
    if not usage:
        raise InvalidValue("The file has a header but no rows of usage.", param="body")
    known = (*REQUIRED, *OPTIONAL)
    ignored = [name for name in (cell.strip() for cell in header) if name and name.lower() not in known]
    return ProviderFile(usage=usage, ignored_columns=ignored)


def _columns(header: list[str], line: int) -> dict[str, int]:
    positions: dict[str, int] = {}
    for index, cell in enumerate(header):
        name = cell.strip().lower()
        if name in positions and name in (*REQUIRED, *OPTIONAL):
            raise InvalidValue(f"line {line}: the header names column {name} twice.", param=name)
        positions.setdefault(name, index)
    missing = [name for name in REQUIRED if name not in positions]
    if missing:
        problem = f"line {line}: the header lacks column {', '.join(missing)}"
        raise InvalidValue(_HEADER_HELP.format(problem=problem), param=missing[0])
    return positions


def _parse_row(row: list[str], columns: dict[str, int], width: int, line: int) -> tuple[Key, ProviderUsage]:
    if len(row) > width:
        raise InvalidValue(f"line {line}: {len(row)} cells, but the header names {width} columns.", param="body")

    def cell(name: str) -> str:
        index = columns.get(name)
        return row[index].strip() if index is not None and index < len(row) else ""

    day_text = cell("date")
    if not _DATE.fullmatch(day_text):
        raise InvalidValue(f"line {line}, column date: expected YYYY-MM-DD, got {day_text!r}.", param="date")
    try:
        day = date.fromisoformat(day_text)
    except ValueError:
        raise InvalidValue(f"line {line}, column date: {day_text!r} is not a date.", param="date") from None
    model = cell("upstream_model")
    if not model or len(model) > MAX_MODEL_LENGTH or "\x00" in model:
        raise InvalidValue(
            f"line {line}, column upstream_model: expected a model name of 1 to {MAX_MODEL_LENGTH} characters.",
            param="upstream_model",
        )
    images = _whole_number(cell("images"), line)
    cost_text = cell("cost")
    cost = _cost(cost_text, line) if cost_text else None
    return (day, model), ProviderUsage(images=images, cost=cost)


def _whole_number(text: str, line: int) -> int:
    # Spreadsheets and BigQuery write counts as "12.0"; a fraction of an image is still an error.
    number = _decimal(text)
    if number is None or number != number.to_integral_value() or number < 0 or number > MAX_AMOUNT:
        raise InvalidValue(
            f"line {line}, column images: expected a whole number of images, 0 or more, got {text!r}.",
            param="images",
        )
    return int(number)


def _cost(text: str, line: int) -> Decimal:
    number = _decimal(text)
    if number is None or number < 0 or number > MAX_AMOUNT:
        raise InvalidValue(
            f"line {line}, column cost: expected a decimal amount, 0 or more (or nothing), got {text!r}.",
            param="cost",
        )
    return number.quantize(FOUR_PLACES, rounding=ROUND_HALF_UP)


def _decimal(text: str) -> Decimal | None:
    try:
        number = Decimal(text)
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _add(known: ProviderUsage | None, more: ProviderUsage) -> ProviderUsage:
    if known is None:
        return more
    cost = None if known.cost is None or more.cost is None else known.cost + more.cost
    return ProviderUsage(images=known.images + more.images, cost=cost)


async def our_usage(session: AsyncSession, channel_id: str, first_day: date, last_day: date) -> dict[Key, OurUsage]:
    """The channel's possibly-billed attempts that started on those UTC days, summed per day and
    upstream model in SQL (on the index of channel and start time)."""
    start = datetime.combine(first_day, time.min, UTC)
    day = _utc_date(session.get_bind().dialect.name)
    ambiguous = UpstreamAttempt.outcome == "ambiguous"
    # Only an ambiguous attempt looks up the images its request asked for: CASE evaluates the
    # subquery for those rows alone, so the month's other attempts cost no extra lookups. A
    # channel test's attempt has no request; it asked for one image.
    asked = func.coalesce(
        select(UsageRecord.images_requested).where(UsageRecord.id == UpstreamAttempt.request_id).scalar_subquery(), 1
    )
    query = (
        select(
            day,
            UpstreamAttempt.upstream_model,
            type_coerce(func.sum(UpstreamAttempt.images), Integer()),
            type_coerce(func.sum(case((ambiguous, 1), else_=0)), Integer()),
            type_coerce(func.sum(case((ambiguous, asked), else_=0)), Integer()),
            type_coerce(func.sum(UpstreamAttempt.upstream_cost), Fixed4()),
            func.count(UpstreamAttempt.upstream_cost),
            func.count(),
        )
        .where(
            UpstreamAttempt.channel_id == channel_id,
            UpstreamAttempt.started_at >= start,
            UpstreamAttempt.possibly_billed.is_(True),
        )
        .group_by(day, UpstreamAttempt.upstream_model)
    )
    if last_day < date.max:
        query = query.where(UpstreamAttempt.started_at < datetime.combine(last_day + timedelta(days=1), time.min, UTC))
    found: dict[Key, OurUsage] = {}
    for day_text, model, images, ambiguous_count, ambiguous_images, cost, priced, attempts in await session.execute(
        query
    ):
        found[(date.fromisoformat(str(day_text)), model)] = OurUsage(
            images=int(images or 0),
            ambiguous=int(ambiguous_count or 0),
            ambiguous_images=int(ambiguous_images or 0),
            cost=cost if priced == attempts else None,
        )
    return found


def _utc_date(dialect: str) -> ColumnElement[Any]:
    if dialect == "postgresql":
        # timestamptz → UTC wall-clock time first, so the session's TimeZone cannot move a day.
        return func.to_char(func.timezone("UTC", UpstreamAttempt.started_at), "YYYY-MM-DD")
    # SQLite keeps UTCDateTime as UTC text ("2026-11-01 23:59:59.999999"); date() reads it as is.
    return func.date(UpstreamAttempt.started_at)


def compare(
    theirs: Mapping[Key, ProviderUsage], ours: Mapping[Key, OurUsage], unit_costs: Mapping[str, Decimal]
) -> list[ReconciledRow]:
    """One row per day and model that either side has, sorted by day then model."""
    rows: list[ReconciledRow] = []
    for key in sorted(theirs.keys() | ours.keys()):
        day, model = key
        provider, ours_ = theirs.get(key, ProviderUsage()), ours.get(key, OurUsage())
        slack = ours_.ambiguous_images
        ok = ours_.images <= provider.images <= ours_.images + slack
        if provider.cost is not None and ours_.cost is not None:
            allowance = unit_costs.get(model, Decimal(0)) * slack
            ok = ok and ours_.cost <= provider.cost <= ours_.cost + allowance
        rows.append(
            ReconciledRow(
                day=day,
                upstream_model=model,
                ours=ours_.images,
                theirs=provider.images,
                ambiguous=ours_.ambiguous,
                ambiguous_images=slack,
                cost_ours=ours_.cost,
                cost_theirs=provider.cost,
                ok=ok,
            )
        )
    return rows


def unit_costs_of(costs: Mapping[str, object]) -> dict[str, Decimal]:
    """A channel's `costs` (upstream model → decimal string) as Decimals, unreadable ones left out."""
    parsed: dict[str, Decimal] = {}
    for model, value in costs.items():
        number = _decimal(str(value))
        if number is not None and number >= 0:
            parsed[model] = number
    return parsed


async def reconcile(
    session: AsyncSession, channel_id: str, provider: ProviderFile, unit_costs: Mapping[str, Decimal]
) -> Reconciliation:
    """The provider's file beside the channel's attempts on the days the file covers."""
    first, last = provider.first_day, provider.last_day
    ours = await our_usage(session, channel_id, first, last)
    return Reconciliation(
        first_day=first,
        last_day=last,
        rows=compare(provider.usage, ours, unit_costs),
        ignored_columns=provider.ignored_columns,
    )
