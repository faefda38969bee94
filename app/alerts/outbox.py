"""Queueing an alert: one row in the caller's transaction, so the alert exists exactly when the
change that caused it committed. Delivery is app/alerts/delivery.py's."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.alerts.models import Alert
from app.db import new_id, utcnow

ALERT_TYPES = ("account.low_balance", "budget.threshold", "channel.disabled")


async def queue_alert(session: AsyncSession, type_: str, dedupe_key: str, data: dict[str, Any]) -> bool:
    """Queue `{"type": type_, "data": data}` unless an alert with `dedupe_key` exists already.

    True when this call queued it. Callers detect the crossing with a compare-and-set of their own
    (so only one transaction sees it); the unique key is the last line of defence, checked here
    before the insert so a duplicate never aborts the caller's transaction.
    """
    if type_ not in ALERT_TYPES:
        raise ValueError(f"unknown alert type {type_!r}")
    exists = await session.scalar(select(Alert.id).where(Alert.dedupe_key == dedupe_key))
    if exists is not None:
        return False
    session.add(
        Alert(
            id=new_id("alrt"),
            type=type_,
            dedupe_key=dedupe_key,
            data=data,
            status="pending",
            attempts=0,
            next_at=utcnow(),
            created_at=utcnow(),
        )
    )
    await session.flush()
    return True
