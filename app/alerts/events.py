"""The three alert events, typed: what each one's `data` holds and the dedupe key that makes it
"once per crossing". Callers detect the crossing (a compare-and-set of their own) and queue the
event in the same transaction; the receiver gets `{"type", "timestamp", "data"}`.

Amounts are decimal strings, as the admin API renders them (the caller renders them: the alerts
package sits below billing).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypedDict

from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.outbox import queue_alert


class LowBalance(TypedDict):
    account_id: str
    account_name: str
    available: str  # balance − held, when it fell below
    alert_below: str


class BudgetThreshold(TypedDict):
    scope: Literal["account", "key"]
    account_id: str
    account_name: str
    key_id: str | None  # set when scope is "key"
    key_name: str | None
    period: Literal["day", "week", "month"]
    window_start: str  # first day of the period, "2026-12-01" (UTC)
    budget: str
    spent: str
    threshold: Literal[80, 100]  # percent of the budget that `spent` reached


class ChannelDisabled(TypedDict):
    channel_id: str
    channel_name: str
    reason: str


async def queue_low_balance(session: AsyncSession, data: LowBalance, crossed_at: datetime) -> bool:
    """One alert per crossing below `alert_below`: the instant tells a later crossing (after the
    account was topped up and re-armed) from this one."""
    key = f"account.low_balance:{data['account_id']}:{crossed_at.isoformat()}"
    return await queue_alert(session, "account.low_balance", key, dict(data))


async def queue_budget_threshold(session: AsyncSession, data: BudgetThreshold) -> bool:
    """One alert per budget, period window and threshold: passing 80 % twice in one month is one alert."""
    owner = data["key_id"] if data["scope"] == "key" else data["account_id"]
    key = f"budget.threshold:{owner}:{data['period']}:{data['window_start']}:{data['threshold']}"
    return await queue_alert(session, "budget.threshold", key, dict(data))


async def queue_channel_disabled(session: AsyncSession, data: ChannelDisabled, disabled_at: datetime) -> bool:
    """One alert each time the channel is disabled automatically (re-enabled, it may be again)."""
    key = f"channel.disabled:{data['channel_id']}:{disabled_at.isoformat()}"
    return await queue_alert(session, "channel.disabled", key, dict(data))
