"""Budget periods: UTC calendar days, ISO weeks (Monday to Sunday) and months, and what a budget
has spent in one.

A budget period is named by its window, "<period>:<first day>" ("month:2026-12-01"). The window
is frozen onto a request when its hold is placed, so a hold that ends after midnight still gives
back to the period it was taken from. What a window has spent (charges plus open holds) is kept in
`budget_spend`; the hold path moves it (app/billing/budget_holds.py), the admin API reads it and,
when a budget is set in the middle of a period, counts it again from the requests (`tie_pending`,
`recount_spend`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy import ColumnElement, and_, case, func, select, type_coerce, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import BudgetSpend, UsageRecord
from app.db import Fixed4

PERIODS = ("day", "week", "month")
# For messages: "the account's monthly budget".
ADJECTIVES = {"day": "daily", "week": "weekly", "month": "monthly"}


@dataclass(frozen=True, slots=True)
class Budget:
    """A spending limit of an account or a key per UTC calendar `period` (day | week | month)."""

    credits: Decimal
    period: str


@dataclass(frozen=True, slots=True)
class BudgetStatus:
    """A budget in the period containing a moment: what it allows, has spent (charges plus open
    holds) and has left, and when it resets."""

    credits: Decimal
    period: str
    window_start: datetime
    resets_at: datetime
    spent: Decimal
    remaining: Decimal


def window_start(period: str, at: datetime) -> datetime:
    """Midnight UTC of the first day of the `period` that contains `at`."""
    day = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        return day
    if period == "week":
        return day - timedelta(days=day.weekday())
    if period == "month":
        return day.replace(day=1)
    raise ValueError(f"unknown budget period {period!r}; use one of {', '.join(PERIODS)}")


def window_end(period: str, at: datetime) -> datetime:
    """Midnight UTC that starts the next period: when the budget resets."""
    start = window_start(period, at)
    if period == "day":
        return start + timedelta(days=1)
    if period == "week":
        return start + timedelta(days=7)
    return (start + timedelta(days=32)).replace(day=1)


def window_of(period: str, at: datetime) -> str:
    """The name of the period containing `at`, e.g. "week:2026-11-30"."""
    return f"{period}:{window_start(period, at).date().isoformat()}"


def window_bounds(window: str) -> tuple[str, datetime, datetime]:
    """The period, first instant and reset instant of a window name ("month:2026-12-01")."""
    period, _, day = window.partition(":")
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    return period, start, window_end(period, start)


async def spent_in(session: AsyncSession, scope_id: str, window: str) -> Decimal:
    """What `scope_id` has spent (charges plus open holds) in `window`; 0 before its first hold."""
    spent = await session.scalar(
        select(BudgetSpend.spent).where(BudgetSpend.scope == scope_id, BudgetSpend.window == window)
    )
    return spent if spent is not None else Decimal(0)


async def budget_status(
    session: AsyncSession, scope_id: str, credits: Decimal, period: str, now: datetime
) -> BudgetStatus:
    """The budget `credits` per `period` of the account or key `scope_id`, in the period containing `now`."""
    spent = await spent_in(session, scope_id, window_of(period, now))
    return BudgetStatus(
        credits=credits,
        period=period,
        window_start=window_start(period, now),
        resets_at=window_end(period, now),
        spent=spent,
        remaining=max(credits - spent, Decimal(0)),
    )


async def tie_pending(session: AsyncSession, scope_id: str, period: str, now: datetime) -> None:
    """Tie the pending requests of the account or key `scope_id` created in the period containing
    `now` to that period's window, so that ending them gives back to it what they did not spend,
    as if their hold had been placed under the budget. The first step of a resync."""
    window = window_of(period, now)
    start, end = window_start(period, now), window_end(period, now)
    for owner, frozen in _OWNERS:
        await session.execute(
            update(UsageRecord)
            .where(owner == scope_id, UsageRecord.status == "pending", _created_in(start, end))
            .values({frozen: window})
            .execution_options(synchronize_session=False)
        )


async def recount_spend(session: AsyncSession, scope_id: str, period: str, now: datetime) -> Decimal:
    """Count the spend of the period containing `now` again from the requests of `scope_id`
    created in it: the credits of those that succeeded plus the holds of those still pending
    (tied by `tie_pending` first). Returns it.

    A budget set (or moved to another period) mid-period calls both, in the order every
    settlement takes its locks: the requests (`tie_pending`), then the account or key row (the
    change itself, flushed between the two), then the spend row here. PostgreSQL then never sees
    a settlement and a budget change wait for each other. A request ending meanwhile is counted
    ended, or ends afterwards and gives back; a hold placed meanwhile adds to the row after this
    count, or is in it.
    """
    window = window_of(period, now)
    start, end = window_start(period, now), window_end(period, now)
    await ensure_spend_row(session, scope_id, window)
    here = and_(BudgetSpend.scope == scope_id, BudgetSpend.window == window)
    await session.execute(update(BudgetSpend).where(here).values(spent=BudgetSpend.spent))  # the row lock
    counted = case(
        (UsageRecord.status == "succeeded", UsageRecord.credits),
        (UsageRecord.status == "pending", UsageRecord.hold_credits),
        else_=0,
    )
    total = type_coerce(func.coalesce(func.sum(counted), 0), Fixed4())
    spent = Decimal(0)
    for owner, _ in _OWNERS:
        # One sum per owner column, each on its own index (an OR of the two would scan).
        spent += await session.scalar(select(total).where(owner == scope_id, _created_in(start, end))) or 0
    await session.execute(
        update(BudgetSpend).where(here).values(spent=spent).execution_options(synchronize_session=False)
    )
    return spent


# An account's or a key's requests, and the column freezing the window each counts against.
_OWNERS = (
    (UsageRecord.account_id, UsageRecord.account_budget_window),
    (UsageRecord.key_id, UsageRecord.key_budget_window),
)


def _created_in(start: datetime, end: datetime) -> ColumnElement[bool]:
    return and_(UsageRecord.created_at >= start, UsageRecord.created_at < end)


async def ensure_spend_row(session: AsyncSession, scope_id: str, window: str) -> None:
    """Create the spend row of `scope_id` in `window` unless it exists (concurrent callers too)."""
    insert = sqlite_insert if session.get_bind().dialect.name == "sqlite" else pg_insert
    await session.execute(
        insert(BudgetSpend)
        .values(scope=scope_id, window=window, spent=Decimal(0), alerted=0)
        .on_conflict_do_nothing(index_elements=["scope", "window"])
    )
