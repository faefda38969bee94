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
from typing import Any, cast

from sqlalchemy import BindParameter, String, Table, bindparam, insert, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.models import Account, LedgerEntry, UsageRecord
from app.db import Fixed4, utcnow
from app.db.hot_sql import HotStatement
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


# Built once and run as driver SQL (app/db/hot_sql.py): on the hot path, SQLAlchemy's per-statement
# work costs more than the statements. Amounts are bound as Fixed4 (see app.db.credits_literal).
_accounts = cast(Table, Account.__table__)
_usage = cast(Table, UsageRecord.__table__)
_ledger = cast(Table, LedgerEntry.__table__)
_amount = bindparam("amount", type_=Fixed4())


def _binds(table: Table, *names: str) -> dict[str, BindParameter[Any]]:
    return {name: bindparam(name, type_=table.c[name].type) for name in names}


_HOLD = HotStatement(
    update(_accounts)
    .where(_accounts.c.id == bindparam("account"), _accounts.c.balance - _accounts.c.held >= _amount)
    .values(held=_accounts.c.held + _amount)
    .returning(_accounts.c.id),
    returns=[String()],
)
_OPEN = HotStatement(
    insert(_usage).values(
        _binds(
            _usage,
            "id",
            "account_id",
            "key_id",
            "endpoint",
            "model",
            "status",
            "hold_credits",
            "unit_credits",
            "model_multiplier",
            "images_requested",
            "images_delivered",
            "credits",
            "attempts",
            "channels_tried",
            "hold_until",
            "user",
            "metadata",
            "created_at",
        )
    )
)
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
    .values(
        _binds(
            _usage,
            "status",
            "completed_at",
            "attempts",
            "channels_tried",
            "latency_ms",
            "upstream_model",
            "channel_id",
            "channel_name",
            "provider",
            "channel_multiplier",
            "images_delivered",
            "credits",
            "error_code",
        )
    )
    .returning(_usage.c.account_id, _usage.c.hold_credits),
    returns=[String(), Fixed4()],
)
_RECORD_CHARGE = HotStatement(
    insert(_ledger).values(
        _binds(_ledger, "account_id", "kind", "amount", "balance_after", "request_id", "note", "actor", "created_at")
    )
)


async def place_hold(session: AsyncSession, terms: HoldTerms) -> None:
    """Reserve `terms.hold_credits` or raise 402; also opens the usage record."""
    held = await _HOLD.run(session, {"account": terms.account_id, "amount": terms.hold_credits})
    if not held:
        raise InsufficientCredits(
            f"This request needs {render(terms.hold_credits)} credits available; the account has less. "
            "Add credits or request fewer images."
        )
    await _OPEN.run(
        session,
        {
            "id": terms.request_id,
            "account_id": terms.account_id,
            "key_id": terms.key_id,
            "endpoint": terms.endpoint,
            "model": terms.model,
            "status": "pending",
            "hold_credits": terms.hold_credits,
            "unit_credits": terms.unit_credits,
            "model_multiplier": terms.model_multiplier,
            "images_requested": terms.images_requested,
            "images_delivered": 0,
            "credits": Decimal(0),
            "attempts": 0,
            "channels_tried": [],
            "hold_until": terms.hold_until,
            "user": terms.user,
            "metadata": terms.metadata,
            "created_at": utcnow(),
        },
    )


async def capture(session: AsyncSession, request_id: str, outcome: Outcome) -> Decimal | None:
    """Charge `outcome.credits` and free the rest of the hold. Returns the new balance, or None
    when the hold had already ended (nothing is charged twice)."""
    ended = await _end(session, request_id, "succeeded", outcome)
    if ended is None:
        return None
    account_id, hold = ended
    charged = await _CHARGE.run(session, {"account": account_id, "hold": hold, "charge": outcome.credits})
    balance: Decimal = charged[0][0]
    await _RECORD_CHARGE.run(
        session,
        {
            "account_id": account_id,
            "kind": "charge",
            "amount": -outcome.credits,
            "balance_after": balance,
            "request_id": request_id,
            "note": f"{outcome.images_delivered} image(s)",
            "actor": "gateway",
            "created_at": utcnow(),
        },
    )
    return balance


async def release(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> bool:
    """End the hold without a charge (failure, filtered, cancel, expiry). True if it was open."""
    if status not in FINAL_FAILURE_STATUSES:
        raise ValueError(f"not a failure status: {status}")
    ended = await _end(session, request_id, status, outcome)
    if ended is None:
        return False
    account_id, hold = ended
    await _UNHOLD.run(session, {"account": account_id, "hold": hold})
    return True


async def _end(session: AsyncSession, request_id: str, status: str, outcome: Outcome) -> tuple[str, Decimal] | None:
    """The compare-and-set that ends a hold: only a pending record moves, so only once."""
    rows = await _END.run(
        session,
        {
            "request": request_id,
            "status": status,
            "completed_at": utcnow(),
            "attempts": outcome.attempts,
            "channels_tried": outcome.channels_tried,
            "latency_ms": outcome.latency_ms,
            "upstream_model": outcome.upstream_model,
            "channel_id": outcome.channel_id,
            "channel_name": outcome.channel_name,
            "provider": outcome.provider,
            "channel_multiplier": outcome.channel_multiplier,
            "images_delivered": outcome.images_delivered,
            "credits": outcome.credits,
            "error_code": outcome.error_code,
        },
    )
    if not rows:
        return None
    return rows[0][0], rows[0][1]
