"""Budgets on the hold path: a hold takes from each budget of its account and key, ending it
gives back what was not charged, and a budget passing 80 % or 100 % queues `budget.threshold`.

Taking is one conditional upsert per budget, in the transaction of the hold that prevents
overdraft (app/billing/holds.py): the spend row is created or added to only when the result stays
within the budget, so concurrent holds can never take a period past it. On PostgreSQL the upsert
row-locks the spend row until commit; on SQLite the transaction holds the write lock already.
A request without a budget runs none of this.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, cast

from sqlalchemy import String, Table, bindparam, column, select, table, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.events import BudgetThreshold, queue_budget_threshold
from app.billing.amounts import render
from app.billing.budgets import ADJECTIVES, Budget, ensure_spend_row, spent_in, window_bounds, window_end, window_of
from app.billing.models import Account, BudgetSpend
from app.db import Fixed4
from app.db.hot_sql import HotStatement
from app.errors import BudgetExceeded

Scope = Literal["account", "key"]
Period = Literal["day", "week", "month"]
THRESHOLDS = (80, 100)  # percent of the budget; `BudgetSpend.alerted` is the highest announced

_spend = cast(Table, BudgetSpend.__table__)
_accounts = cast(Table, Account.__table__)
# The key's budget and name, read by name: the keys package imports billing, not the reverse.
_keys = table(
    "api_keys",
    column("id", String()),
    column("name", String()),
    column("budget_credits", Fixed4()),
    column("budget_period", String()),
)
_amount = bindparam("amount", type_=Fixed4())
_here = (_spend.c.scope == bindparam("scope", type_=String()), _spend.c.window == bindparam("window", type_=String()))


def _take(insert: Callable[[Table], Any]) -> HotStatement:
    adding = insert(_spend).values(scope=bindparam("scope"), window=bindparam("window"), spent=_amount, alerted=0)
    within = _spend.c.spent + adding.excluded.spent <= bindparam("budget", type_=Fixed4())
    return HotStatement(
        adding.on_conflict_do_update(
            index_elements=[_spend.c.scope, _spend.c.window],
            set_={"spent": _spend.c.spent + adding.excluded.spent},
            where=within,
        ).returning(_spend.c.spent),
        returns=[Fixed4()],
    )


# The upsert is spelled per dialect; both compile to INSERT … ON CONFLICT DO UPDATE … WHERE.
_TAKE = {"sqlite": _take(sqlite_insert), "postgresql": _take(pg_insert)}
_GIVE_BACK = HotStatement(update(_spend).where(*_here).values(spent=_spend.c.spent - _amount))


def _settle(owner: Any) -> HotStatement:
    """Give back, and return what the thresholds need: the spend, what was announced, and the
    budget the scope has now (None when it was removed or now counts another period)."""
    budget = (
        select(owner.c.budget_credits)
        .where(owner.c.id == _spend.c.scope, owner.c.budget_period == bindparam("period", type_=String()))
        .scalar_subquery()
    )
    return HotStatement(
        update(_spend)
        .where(*_here)
        .values(spent=_spend.c.spent - _amount)
        .returning(_spend.c.spent, _spend.c.alerted, budget),
        returns=[Fixed4(), _spend.c.alerted.type, Fixed4()],
    )


_SETTLE: dict[Scope, HotStatement] = {"account": _settle(_accounts), "key": _settle(_keys)}


@dataclass(frozen=True)
class Held:
    """Whose a hold is (account and key) and the budget windows it took from (None: none)."""

    account_id: str
    key_id: str
    account_window: str | None
    key_window: str | None

    def windows(self) -> list[tuple[Scope, str, str]]:
        found: list[tuple[Scope, str, str]] = []
        if self.account_window is not None:
            found.append(("account", self.account_id, self.account_window))
        if self.key_window is not None:
            found.append(("key", self.key_id, self.key_window))
        return found


class BudgetRefused(BudgetExceeded):
    """402 `budget_exceeded`, with what the 100 % alert of the refused period needs."""

    def __init__(self, message: str, *, scope: Scope, owner: Held, window: str, budget: Decimal) -> None:
        super().__init__(message)
        self.scope = scope
        self.owner = owner
        self.window = window
        self.budget = budget


async def take(session: AsyncSession, scope: Scope, owner: Held, budget: Budget, amount: Decimal, now: datetime) -> str:
    """Add `amount` to the spend of `owner`'s account or key (`scope`) in the period containing
    `now`, or raise `BudgetRefused` when it would pass `budget`. Returns the window, to freeze
    onto the usage record."""
    scope_id = _scope_id(scope, owner)
    window = window_of(budget.period, now)
    # More than the whole budget is refused before the upsert, whose INSERT branch has no check.
    if amount <= budget.credits:
        statement = _TAKE[session.get_bind().dialect.name]
        if await statement.run(
            session, {"scope": scope_id, "window": window, "amount": amount, "budget": budget.credits}
        ):
            return window
    left = max(budget.credits - await spent_in(session, scope_id, window), Decimal(0))
    resets = window_end(budget.period, now).strftime("%Y-%m-%dT%H:%M:%SZ")
    raise BudgetRefused(
        f"This request needs {render(amount)} credits; the {scope}'s {ADJECTIVES[budget.period]} budget has "
        f"{render(left)} of {render(budget.credits)} left until {resets}.",
        scope=scope,
        owner=owner,
        window=window,
        budget=budget.credits,
    )


async def give_back(session: AsyncSession, held: Held, amount: Decimal) -> None:
    """A released hold: its whole amount goes back to each window it was taken from."""
    for _, scope_id, window in held.windows():
        await _GIVE_BACK.run(session, {"scope": scope_id, "window": window, "amount": amount})


async def settle(session: AsyncSession, held: Held, unspent: Decimal) -> None:
    """A captured hold: what was held but not charged goes back, then the thresholds the spend
    has reached are announced, each once per window."""
    for scope, scope_id, window in held.windows():
        period = window.partition(":")[0]
        rows = await _SETTLE[scope].run(
            session, {"scope": scope_id, "window": window, "amount": unspent, "period": period}
        )
        if not rows:
            continue  # no spend row (removed by hand): nothing to give back to
        spent, alerted, budget = rows[0]
        if budget is None:
            continue
        reached = [t for t in THRESHOLDS if t > alerted and spent * 100 >= budget * t]
        if reached:
            await _announce(session, scope, held, window, budget, reached)


async def announce_refusal(session: AsyncSession, refused: BudgetRefused) -> None:
    """After a refusal (its transaction rolled back): the period's 100 % alert, once, and its
    80 % one if the spend has reached that but it was never sent. A budget rarely lands exactly on
    100 %, and a team that is cut off must hear about it."""
    scope_id = _scope_id(refused.scope, refused.owner)
    await ensure_spend_row(session, scope_id, refused.window)
    spent = await spent_in(session, scope_id, refused.window)
    reached = [t for t in THRESHOLDS if t == 100 or spent * 100 >= refused.budget * t]
    await _announce(session, refused.scope, refused.owner, refused.window, refused.budget, reached)


def _scope_id(scope: Scope, owner: Held) -> str:
    return owner.account_id if scope == "account" else owner.key_id


async def _announce(
    session: AsyncSession, scope: Scope, owner: Held, window: str, budget: Decimal, thresholds: list[int]
) -> None:
    scope_id = _scope_id(scope, owner)
    for threshold in thresholds:
        # The compare-and-set: of all transactions that see the crossing, one moves `alerted`.
        won = (
            await session.execute(
                update(BudgetSpend)
                .where(BudgetSpend.scope == scope_id, BudgetSpend.window == window, BudgetSpend.alerted < threshold)
                .values(alerted=threshold)
                .returning(BudgetSpend.spent)
                .execution_options(synchronize_session=False)
            )
        ).first()
        if won is None:
            continue
        period, start, _ = window_bounds(window)
        key = scope == "key"
        data = BudgetThreshold(
            scope=scope,
            account_id=owner.account_id,
            account_name=await session.scalar(select(Account.name).where(Account.id == owner.account_id)) or "",
            key_id=owner.key_id if key else None,
            key_name=await session.scalar(select(_keys.c.name).where(_keys.c.id == owner.key_id)) if key else None,
            period=cast(Period, period),
            window_start=start.date().isoformat(),
            budget=render(budget),
            spent=render(won[0]),
            threshold=cast(Literal[80, 100], threshold),
        )
        await queue_budget_threshold(session, data)
