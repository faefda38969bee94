"""Accounts and credit grants. Never commits: the caller's unit of work does."""

from __future__ import annotations

import base64
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.budget_settings import KEEP, Keep, set_budget
from app.billing.budgets import Budget
from app.billing.low_balance import rearm_low_balance
from app.billing.models import Account, LedgerEntry
from app.db import credits_literal, new_id, utcnow
from app.errors import Conflict, InvalidRequest, InvalidValue, NotFound

# After a rotation the replaced secret signs callbacks beside the new one for this long, so a
# receiver can switch over without rejecting a single callback.
PREVIOUS_SECRET_VALID_FOR = timedelta(hours=24)


def new_webhook_secret() -> str:
    # Standard Webhooks secrets are "whsec_" + base64 of 24–64 random bytes.
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def rotate_webhook_secret(session: AsyncSession, account_id: str) -> tuple[Account, datetime]:
    """A new secret for the account's callbacks; the one it replaces keeps signing beside it until
    the returned instant. Rotating again within that time replaces the previous one: only the
    secret in use just before the latest rotation stays valid, never an older one.

    A plain update in the caller's unit of work, no compare-and-set: of two rotations racing, the
    one committed last is the account's, and the secret the other one answered is never used."""
    account = await get_account(session, account_id)
    now = utcnow()
    account.previous_webhook_secret = account.webhook_secret
    account.webhook_secret = new_webhook_secret()
    account.webhook_secret_rotated_at = now
    await session.flush()
    return account, now + PREVIOUS_SECRET_VALID_FOR


def signing_secrets(account: Account, now: datetime) -> list[str]:
    """The secrets a callback is signed with at `now`: the account's, and for a day after a
    rotation also the one it replaced."""
    rotated_at = account.webhook_secret_rotated_at
    previous = account.previous_webhook_secret
    if previous and rotated_at is not None and now < rotated_at + PREVIOUS_SECRET_VALID_FOR:
        return [account.webhook_secret, previous]
    return [account.webhook_secret]


async def create_account(session: AsyncSession, name: str, credits: Decimal = Decimal(0), actor: str = "") -> Account:
    await _ensure_name_free(session, name)
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


async def find_account(session: AsyncSession, ref: str) -> Account:
    """The account with id `ref`, else the one account named `ref` (for the command line)."""
    account = await session.get(Account, ref)
    if account is not None:
        return account
    named = (await session.scalars(select(Account).where(Account.name == ref).limit(2))).all()
    if len(named) > 1:
        # New names are checked to be unique, but databases from before may hold duplicates.
        raise Conflict(f"Several accounts are named {ref!r}; use the account's id.")
    if not named:
        raise NotFound(f"No account with id or name {ref!r}.")
    return named[0]


async def _ensure_name_free(session: AsyncSession, name: str, *, other_than: str | None = None) -> None:
    # Checked here rather than by a unique index: databases from before may hold duplicate names,
    # and a migration must not fail on them. Reports show names beside ids, so two teams must
    # never share one.
    query = select(Account.id).where(Account.name == name).limit(1)
    if other_than is not None:
        query = query.where(Account.id != other_than)
    if await session.scalar(query) is not None:
        raise Conflict(f"An account named {name!r} exists already.", param="name")


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """The fields an update sets; `None` removes a budget or a threshold."""

    name: str | None = None
    budget: Budget | Keep | None = KEEP
    alert_below: Decimal | Keep | None = KEEP


async def update_account(session: AsyncSession, account_id: str, changes: AccountChanges) -> Account:
    account = await get_account(session, account_id)
    if changes.name is None and changes.budget is KEEP and changes.alert_below is KEEP:
        raise InvalidRequest("Nothing to change: send at least one of name, budget, alert_below.")
    if changes.name is not None and changes.name != account.name:
        await _ensure_name_free(session, changes.name, other_than=account_id)
        account.name = changes.name
    if changes.budget is not KEEP:
        await set_budget(session, account, account_id, changes.budget, utcnow())
    if changes.alert_below is not KEEP:
        account.alert_below = changes.alert_below
        await session.flush()
        # A new threshold may already be crossed (alert now) or be met again (arm it again).
        await rearm_low_balance(session, account_id)
    await session.flush()
    await session.refresh(account)
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
    # Credits back above `alert_below` arm the low-balance alert for the next crossing; a
    # take-back below it is a crossing.
    await rearm_low_balance(session, account_id)
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
