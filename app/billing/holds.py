"""Holds: reserve credits before an upstream call, then capture or release them exactly once.

A hold is a `UsageRecord` in status `pending` plus the same amount added to `Account.held`.
Placing it is one conditional UPDATE that cannot overdraw (and, for each budget of the account
or key, one conditional upsert that cannot pass it: app/billing/budget_holds.py); ending it is a
compare-and-set on the record's status, so a hold is captured, released or expired exactly once
even when a crashed request, a sweeper and a retry race for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import Boolean, String, Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import budget_holds
from app.billing.amounts import render
from app.billing.attempt_rows import AttemptRecord, write_attempts
from app.billing.budget_holds import Held
from app.billing.budgets import Budget
from app.billing.low_balance import check_low_balance
from app.billing.models import Account, LedgerEntry, UsageRecord
from app.db import Fixed4, utcnow
from app.db.hot_sql import Columns, HotStatement
from app.errors import InsufficientCredits

FINAL_FAILURE_STATUSES = frozenset({"failed", "filtered", "canceled", "expired"})


@dataclass(frozen=True)
class HoldTerms:
    """What is known and frozen when a request is admitted."""

    request_id: str
    account_id: str
    key_id: str
    endpoint: str
    model: str
    unit_credits: Decimal
    model_multiplier: Decimal
    images_requested: int
    hold_credits: Decimal
    hold_until: datetime
    user: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    client_request_id: str | None = None  # the caller's own id (X-Client-Request-Id)
    # The budgets the hold must stay within (the caller's, as cached with its key).
    account_budget: Budget | None = None
    key_budget: Budget | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened upstream; frozen onto the usage record when the hold ends."""

    attempts: int
    channels_tried: list[dict[str, Any]]
    latency_ms: int
    upstream_model: str | None = None
    channel_id: str | None = None
    channel_name: str | None = None
    provider: str | None = None
    channel_multiplier: Decimal | None = None
    images_delivered: int = 0
    credits: Decimal = Decimal(0)
    error_code: str | None = None
    # One row each in upstream_attempts, written by the statement after the one ending the hold.
    attempt_records: tuple[AttemptRecord, ...] = ()


# Built once and run as driver SQL (app/db/hot_sql.py): on the hot path, SQLAlchemy's per-statement
# work costs more than the statements. Amounts are bound as Fixed4 (see app.db.credits_literal).
# On SQLite they run inside a transaction that took the write lock with its BEGIN IMMEDIATE
# (app/db/sqlite.py), so no two holds can both pass the balance check before either adds.
_accounts = cast(Table, Account.__table__)
_usage = cast(Table, UsageRecord.__table__)
_ledger = cast(Table, LedgerEntry.__table__)
_amount = bindparam("amount", type_=Fixed4())


def _zero(_: object) -> Decimal:
    return Decimal(0)


def _now(_: object) -> datetime:
    return utcnow()


@dataclass(frozen=True, slots=True)
class _Opening:
    """A hold being placed: its terms, the moment, and the budget windows it took from."""

    terms: HoldTerms
    at: datetime
    account_window: str | None = None
    key_window: str | None = None


# A usage record as a hold opens it. A new usage column is one line here (and in the model).
_OPENED = Columns[_Opening](
    _usage,
    id=attrgetter("terms.request_id"),
    account_id=attrgetter("terms.account_id"),
    key_id=attrgetter("terms.key_id"),
    endpoint=attrgetter("terms.endpoint"),
    model=attrgetter("terms.model"),
    status=lambda _: "pending",
    hold_credits=attrgetter("terms.hold_credits"),
    unit_credits=attrgetter("terms.unit_credits"),
    model_multiplier=attrgetter("terms.model_multiplier"),
    images_requested=attrgetter("terms.images_requested"),
    images_delivered=lambda _: 0,
    credits=_zero,
    attempts=lambda _: 0,
    channels_tried=lambda _: [],
    hold_until=attrgetter("terms.hold_until"),
    user=attrgetter("terms.user"),
    metadata=attrgetter("terms.metadata"),
    client_request_id=attrgetter("terms.client_request_id"),
    created_at=attrgetter("at"),
    account_budget_window=attrgetter("account_window"),
    key_budget_window=attrgetter("key_window"),
)
# What ending a hold freezes onto the record, besides its final `status`.
_ENDED = Columns[Outcome](
    _usage,
    completed_at=_now,
    attempts=attrgetter("attempts"),
    channels_tried=attrgetter("channels_tried"),
    latency_ms=attrgetter("latency_ms"),
    upstream_model=attrgetter("upstream_model"),
    channel_id=attrgetter("channel_id"),
    channel_name=attrgetter("channel_name"),
    provider=attrgetter("provider"),
    channel_multiplier=attrgetter("channel_multiplier"),
    images_delivered=attrgetter("images_delivered"),
    credits=attrgetter("credits"),
    error_code=attrgetter("error_code"),
)


@dataclass(frozen=True)
class _Charged:
    account_id: str
    request_id: str
    outcome: Outcome
    balance: Decimal


_CHARGE_ENTRY = Columns[_Charged](
    _ledger,
    account_id=attrgetter("account_id"),
    kind=lambda _: "charge",
    amount=lambda c: -c.outcome.credits,
    balance_after=attrgetter("balance"),
    request_id=attrgetter("request_id"),
    note=lambda c: f"{c.outcome.images_delivered} image(s)",
    actor=lambda _: "gateway",
    created_at=_now,
)

_HOLD = HotStatement(
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"), _accounts.c.balance - _accounts.c.held >= _amount)
    .values(held=_accounts.c.held + _amount)
    .returning(_accounts.c.id),
    returns=[String()],
)
_OPEN = HotStatement(insert(_usage).values(_OPENED.binds()))
_CHARGE = HotStatement(
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"))
    .values(
        held=_accounts.c.held - bindparam("hold", type_=Fixed4()),
        balance=_accounts.c.balance - bindparam("charge", type_=Fixed4()),
    )
    # With what the low-balance alert needs, so that it costs a statement only on a crossing.
    .returning(_accounts.c.balance, _accounts.c.held, _accounts.c.alert_below, _accounts.c.low_balance_alerted),
    returns=[Fixed4(), Fixed4(), Fixed4(), Boolean()],
)
_UNHOLD = HotStatement(
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"))
    .values(held=_accounts.c.held - bindparam("hold", type_=Fixed4()))
)
_END = HotStatement(
    update(_usage)
    .where(_usage.c.id == bindparam("request"), _usage.c.status == "pending")
    .values(status=bindparam("status", type_=_usage.c.status.type), **_ENDED.binds())
    .returning(
        _usage.c.account_id,
        _usage.c.hold_credits,
        _usage.c.key_id,
        _usage.c.account_budget_window,
        _usage.c.key_budget_window,
    ),
    returns=[String(), Fixed4(), String(), String(), String()],
)
_RECORD_CHARGE = HotStatement(insert(_ledger).values(_CHARGE_ENTRY.binds()))


async def place_hold(session: AsyncSession, terms: HoldTerms) -> None:
    """Reserve `terms.hold_credits` or raise 402; also opens the usage record.

    With budgets, each takes the amount too (after the account, the order every hold and
    settlement locks in) or raises `BudgetRefused`, whose rollback undoes the account's hold."""
    held = await _HOLD.run(session, {"account": terms.account_id, "amount": terms.hold_credits})
    if not held:
        raise InsufficientCredits(
            f"This request needs {render(terms.hold_credits)} credits available; the account has less. "
            "Add credits or request fewer images."
        )
    opening = _Opening(terms, utcnow())
    if terms.account_budget is not None or terms.key_budget is not None:
        opening = await _take_budgets(session, opening)
    await _OPEN.run(session, _OPENED.params(opening))


async def _take_budgets(session: AsyncSession, opening: _Opening) -> _Opening:
    terms = opening.terms
    owner = Held(terms.account_id, terms.key_id, None, None)
    account_window = key_window = None
    if terms.account_budget is not None:
        account_window = await budget_holds.take(
            session, "account", owner, terms.account_budget, terms.hold_credits, opening.at
        )
    if terms.key_budget is not None:
        key_window = await budget_holds.take(session, "key", owner, terms.key_budget, terms.hold_credits, opening.at)
    return _Opening(terms, opening.at, account_window, key_window)


async def capture(session: AsyncSession, request_id: str, outcome: Outcome) -> Decimal | None:
    """Charge `outcome.credits` and free the rest of the hold. Returns the new balance, or None
    when the hold had already ended (nothing is charged twice)."""
    ended = await _end(session, request_id, "succeeded", outcome)
    if ended is None:
        return None
    held, hold = ended
    account_id = held.account_id
    await write_attempts(session, request_id, account_id, outcome.attempt_records)
    charged = await _CHARGE.run(session, {"account": account_id, "hold": hold, "charge": outcome.credits})
    balance: Decimal = charged[0][0]
    still_held, alert_below, low_balance_alerted = charged[0][1:]
    await _RECORD_CHARGE.run(session, _CHARGE_ENTRY.params(_Charged(account_id, request_id, outcome, balance)))
    if held.account_window is not None or held.key_window is not None:
        await budget_holds.settle(session, held, hold - outcome.credits)
    if alert_below is not None and not low_balance_alerted and balance - still_held < alert_below:
        await check_low_balance(session, account_id)
    return balance


async def release(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> bool:
    """End the hold without a charge (failure, filtered, cancel, expiry). True if it was open."""
    if status not in FINAL_FAILURE_STATUSES:
        raise ValueError(f"not a failure status: {status}")
    ended = await _end(session, request_id, status, outcome)
    if ended is None:
        return False
    held, hold = ended
    await write_attempts(session, request_id, held.account_id, outcome.attempt_records)
    await _UNHOLD.run(session, {"account": held.account_id, "hold": hold})
    if held.account_window is not None or held.key_window is not None:
        await budget_holds.give_back(session, held, hold)
    return True


async def _end(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> tuple[Held, Decimal] | None:
    """The compare-and-set that ends a hold: only a pending record moves, so only once."""
    rows = await _END.run(session, {"request": request_id, "status": status, **_ENDED.params(outcome)})
    if not rows:
        return None
    account_id, hold, key_id, account_window, key_window = rows[0]
    return Held(account_id, key_id, account_window, key_window), hold
