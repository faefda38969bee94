"""Proving the money invariants from the database alone (`image-gateway ledger check`)."""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ColumnElement, func, select, type_coerce
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from app.billing.amounts import charge, render
from app.billing.models import Account, LedgerEntry, UsageRecord
from app.billing.sweeper import stale_hold_condition
from app.db import Fixed4


def _sum(column: InstrumentedAttribute[Decimal]) -> ColumnElement[Decimal]:
    return type_coerce(func.sum(column), Fixed4())


async def check_ledger(session: AsyncSession, hold_timeout_s: float) -> list[str]:
    """Every broken invariant, one sentence each. An empty list means the books balance."""
    problems: list[str] = []
    ledger_sums = dict(
        (
            await session.execute(
                select(LedgerEntry.account_id, _sum(LedgerEntry.amount)).group_by(LedgerEntry.account_id)
            )
        ).all()
    )
    open_holds = dict(
        (
            await session.execute(
                select(UsageRecord.account_id, _sum(UsageRecord.hold_credits))
                .where(UsageRecord.status == "pending")
                .group_by(UsageRecord.account_id)
            )
        ).all()
    )
    for account in (await session.scalars(select(Account))).all():
        ledger = ledger_sums.get(account.id) or Decimal(0)
        held = open_holds.get(account.id) or Decimal(0)
        if account.balance != ledger:
            problems.append(
                f"account {account.id}: balance {render(account.balance)} != sum of ledger entries {render(ledger)}"
            )
        if account.held != held:
            problems.append(f"account {account.id}: held {render(account.held)} != open holds {render(held)}")
        if account.held < 0 or account.balance - account.held < 0:
            problems.append(
                f"account {account.id}: overdrawn (balance {render(account.balance)}, held {render(account.held)})"
            )

    stale = (await session.scalars(select(UsageRecord.id).where(stale_hold_condition(hold_timeout_s)))).all()
    problems.extend(f"request {rid}: hold open past its deadline" for rid in stale)

    charges = {
        entry.request_id: entry
        for entry in (await session.scalars(select(LedgerEntry).where(LedgerEntry.kind == "charge"))).all()
    }
    records = await session.stream_scalars(select(UsageRecord).where(UsageRecord.status != "pending"))
    seen: set[str] = set()
    async for record in records:
        seen.add(record.id)
        entry = charges.get(record.id)
        if record.status == "succeeded":
            expected = charge(
                record.unit_credits,
                record.model_multiplier,
                record.channel_multiplier or Decimal(0),
                record.images_delivered,
            )
            if record.credits != expected:
                problems.append(
                    f"request {record.id}: credits {render(record.credits)} != price × multipliers × images {render(expected)}"
                )
            if record.credits > record.hold_credits:
                problems.append(
                    f"request {record.id}: charged {render(record.credits)} above its hold {render(record.hold_credits)}"
                )
            if entry is None:
                problems.append(f"request {record.id}: succeeded but has no charge in the ledger")
            elif entry.amount != -record.credits:
                problems.append(
                    f"request {record.id}: ledger charge {render(-entry.amount)} != usage credits {render(record.credits)}"
                )
        else:
            if record.credits != 0:
                problems.append(f"request {record.id}: {record.status} but records {render(record.credits)} credits")
            if entry is not None:
                problems.append(f"request {record.id}: {record.status} but was charged in the ledger")
    for request_id in charges:
        if request_id not in seen:
            problems.append(f"ledger charge for {request_id} has no settled usage record")
    return problems
