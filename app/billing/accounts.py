"""Accounts and credit grants. Never commits: the caller's unit of work does."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.models import Account, LedgerEntry
from app.db import credits_literal, new_id, utcnow
from app.errors import InvalidValue, NotFound


def new_webhook_secret() -> str:
    # Standard Webhooks secrets are "whsec_" + base64 of 24–64 random bytes.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def create_account(session: AsyncSession, name: str, credits: Decimal = Decimal(0), actor: str = "") -> Account:
    account = Account(
        id=new_id("acc"),
        name=name,
        balance=Decimal(0),
        held=Decimal(0),
        webhook_secret=new_webhook_secret(),
        created_at=utcnow(),
    )
    session.add(account)
    await session.flush()
    if credits:
        await adjust_credits(session, account.id, credits, note="initial credits", actor=actor)
        await session.refresh(account)
    return account


async def get_account(session: AsyncSession, account_id: str) -> Account:
    account = await session.get(Account, account_id)
    if account is None:
        raise NotFound(f"No account with id {account_id!r}.")
    return account


async def list_accounts(session: AsyncSession) -> Sequence[Account]:
    return (await session.scalars(select(Account).order_by(Account.created_at, Account.id))).all()


async def adjust_credits(session: AsyncSession, account_id: str, amount: Decimal, *, note: str, actor: str) -> Account:
    """Grant (positive) or take back (negative) credits, never below zero available.

    One conditional UPDATE, so a concurrent hold can never be overdrawn by an adjustment.
    """
    if amount == 0:
        raise InvalidValue("amount must not be zero", param="amount")
    await get_account(session, account_id)
    row = (
        await session.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance - Account.held + credits_literal(amount) >= 0)
            .values(balance=Account.balance + credits_literal(amount))
            .returning(Account.balance)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if row is None:
        raise InvalidValue(
            f"An adjustment of {render(amount)} would take available credits below zero.", param="amount"
        )
    session.add(
        LedgerEntry(
            account_id=account_id,
            kind="grant" if amount > 0 else "adjustment",
            amount=amount,
            balance_after=row[0],
            note=note,
            actor=actor,
            created_at=utcnow(),
        )
    )
    await session.flush()
    account = await get_account(session, account_id)
    await session.refresh(account)
    return account


async def ledger_entries(
    session: AsyncSession, account_id: str, *, limit: int = 100, before_id: int | None = None
) -> Sequence[LedgerEntry]:
    """The account's ledger, newest first: grants and adjustments with their note and actor,
    and every charge with its request id."""
    await get_account(session, account_id)
    query = select(LedgerEntry).where(LedgerEntry.account_id == account_id).order_by(LedgerEntry.id.desc()).limit(limit)
    if before_id is not None:
        query = query.where(LedgerEntry.id < before_id)
    return (await session.scalars(query)).all()
