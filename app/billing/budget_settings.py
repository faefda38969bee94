"""Setting and reading the budget of an account or a key (both store `budget_credits` and
`budget_period`; the spend of each period lives in `budget_spend`, app/billing/budgets.py).

Holds count against a budget only while it is set, so a budget set in the middle of a period
first counts what that period has spent already: otherwise a team that spent 900 of a new
1,000-credit monthly budget this morning could spend 1,000 more today.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import Enum
from typing import Final, Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.budgets import Budget, BudgetStatus, budget_status, recount_spend, tie_pending


class Keep(Enum):
    """The type of `KEEP`: "leave this field as it is" in an update, where None means "remove"."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP


class HasBudget(Protocol):
    """An account or a key."""

    budget_credits: Decimal | None
    budget_period: str | None


async def set_budget(
    session: AsyncSession, row: HasBudget, scope_id: str, budget: Budget | None, now: datetime
) -> None:
    """Set (or with None, remove) the budget of `row`, whose spend is kept under `scope_id`."""
    had_period = row.budget_period if row.budget_credits is not None else None
    if budget is None:
        row.budget_credits = None
        row.budget_period = None
        return
    row.budget_credits = budget.credits
    row.budget_period = budget.period
    if budget.period != had_period:
        # A new budget, or one that now counts another period: the spend kept so far (if any)
        # is not this period's, so count it again from the requests themselves.
        # In the order every settlement locks: its request, then the account, then the spend row
        # (app/billing/budgets.py), so the change is not flushed before the requests are tied.
        with session.sync_session.no_autoflush:
            await tie_pending(session, scope_id, budget.period, now)
        await session.flush()
        await recount_spend(session, scope_id, budget.period, now)


async def current_budget(session: AsyncSession, row: HasBudget, scope_id: str, now: datetime) -> BudgetStatus | None:
    """The budget of `row` for the period containing `now`, with what it has spent; None without one."""
    if row.budget_credits is None or row.budget_period is None:
        return None
    return await budget_status(session, scope_id, row.budget_credits, row.budget_period, now)
