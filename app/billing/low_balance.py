"""The `account.low_balance` alert: once each time an account's available credits fall below its
`alert_below`, re-armed when they are back at or above it.

Both moves are compare-and-sets on `low_balance_alerted`, so when several replicas settle
requests of the same account at once, exactly one of them sees the crossing and queues the alert.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.events import LowBalance, queue_low_balance
from app.billing.amounts import render
from app.billing.models import Account
from app.db import utcnow


async def check_low_balance(session: AsyncSession, account_id: str) -> bool:
    """Queue the alert if the account has just crossed below `alert_below`. True if queued."""
    available = Account.balance - Account.held
    crossed = (
        await session.execute(
            update(Account)
            .where(
                Account.id == account_id,
                Account.alert_below.is_not(None),
                available < Account.alert_below,
                Account.low_balance_alerted.is_(False),
            )
            .values(low_balance_alerted=True)
            .returning(Account.name, Account.balance, Account.held, Account.alert_below)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if crossed is None:
        return False
    name, balance, held, alert_below = crossed
    data = LowBalance(
        account_id=account_id,
        account_name=name,
        available=render(balance - held),
        # Never None here: the WHERE above moved the flag only for an account with a threshold.
        alert_below=render(alert_below) if alert_below is not None else "",
    )
    return await queue_low_balance(session, data, utcnow())


async def rearm_low_balance(session: AsyncSession, account_id: str) -> None:
    """After credits were added or `alert_below` changed: arm the alert again if the account is
    at or above its threshold, else check for a crossing now."""
    await session.execute(
        update(Account)
        .where(
            Account.id == account_id,
            Account.low_balance_alerted.is_(True),
            (Account.alert_below.is_(None)) | (Account.balance - Account.held >= Account.alert_below),
        )
        .values(low_balance_alerted=False)
        .execution_options(synchronize_session=False)
    )
    await check_low_balance(session, account_id)
