"""Holds: reserve credits before an upstream call, then capture or release them exactly once.

A hold is a `UsageRecord` in status `pending` plus the same amount added to `Account.held`.
Placing it is one conditional UPDATE that cannot overdraw; ending it is a compare-and-set on the
record's status, so a hold is captured, released or expired exactly once even when a crashed
request, a sweeper and a retry race for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from operator import attrgetter
from typing import Any, cast

from sqlalchemy import String, Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.attempt_rows import AttemptRecord, write_attempts
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


# A usage record as a hold opens it. A new usage column is one line here (and in the model).
_OPENED = Columns[HoldTerms](
    _usage,
    id=attrgetter("request_id"),
    account_id=attrgetter("account_id"),
    key_id=attrgetter("key_id"),
    endpoint=attrgetter("endpoint"),
    model=attrgetter("model"),
    status=lambda _: "pending",
    hold_credits=attrgetter("hold_credits"),
    unit_credits=attrgetter("unit_credits"),
    model_multiplier=attrgetter("model_multiplier"),
    images_requested=attrgetter("images_requested"),
    images_delivered=lambda _: 0,
    credits=_zero,
    attempts=lambda _: 0,
    channels_tried=lambda _: [],
    hold_until=attrgetter("hold_until"),
    user=attrgetter("user"),
    metadata=attrgetter("metadata"),
    client_request_id=attrgetter("client_request_id"),
    created_at=_now,
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
    .returning(_accounts.c.balance),
    returns=[Fixed4()],
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
    .returning(_usage.c.account_id, _usage.c.hold_credits),
    returns=[String(), Fixed4()],
)
_RECORD_CHARGE = HotStatement(insert(_ledger).values(_CHARGE_ENTRY.binds()))


async def place_hold(session: AsyncSession, terms: HoldTerms) -> None:
    """Reserve `terms.hold_credits` or raise 402; also opens the usage record."""
    held = await _HOLD.run(session, {"account": terms.account_id, "amount": terms.hold_credits})
    if not held:
        raise InsufficientCredits(
            f"This request needs {render(terms.hold_credits)} credits available; the account has less. "
            "Add credits or request fewer images."
        )
    await _OPEN.run(session, _OPENED.params(terms))


async def capture(session: AsyncSession, request_id: str, outcome: Outcome) -> Decimal | None:
    """Charge `outcome.credits` and free the rest of the hold. Returns the new balance, or None
    when the hold had already ended (nothing is charged twice)."""
    ended = await _end(session, request_id, "succeeded", outcome)
    if ended is None:
        return None
    account_id, hold = ended
    await write_attempts(session, request_id, account_id, outcome.attempt_records)
    charged = await _CHARGE.run(session, {"account": account_id, "hold": hold, "charge": outcome.credits})
    balance: Decimal = charged[0][0]
    await _RECORD_CHARGE.run(session, _CHARGE_ENTRY.params(_Charged(account_id, request_id, outcome, balance)))
    return balance


async def release(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> bool:
    """End the hold without a charge (failure, filtered, cancel, expiry). True if it was open."""
    if status not in FINAL_FAILURE_STATUSES:
        raise ValueError(f"not a failure status: {status}")
    ended = await _end(session, request_id, status, outcome)
    if ended is None:
        return False
    account_id, hold = ended
    await write_attempts(session, request_id, account_id, outcome.attempt_records)
    await _UNHOLD.run(session, {"account": account_id, "hold": hold})
    return True


async def _end(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> tuple[str, Decimal] | None:
    """The compare-and-set that ends a hold: only a pending record moves, so only once."""
    rows = await _END.run(session, {"request": request_id, "status": status, **_ENDED.params(outcome)})
    if not rows:
        return None
    return rows[0][0], rows[0][1]
