"""Ends holds left open by a crashed process, so reserved credits come back."""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import ColumnElement, and_, or_, select

from app.billing import holds
from app.billing.models import UsageRecord
from app.db import Database, utcnow

log = logging.getLogger("app.billing.sweeper")


def stale_hold_condition(hold_timeout_s: float) -> ColumnElement[bool]:
    """Pending holds past their deadline (records from before deadlines existed: past the timeout)."""
    now = utcnow()
    return and_(
        UsageRecord.status == "pending",
        or_(
            UsageRecord.hold_until < now,
            and_(UsageRecord.hold_until.is_(None), UsageRecord.created_at < now - timedelta(seconds=hold_timeout_s)),
        ),
    )


async def expire_stale_holds(db: Database, hold_timeout_s: float) -> int:
    """Release every hold past its deadline. Each release is its own compare-and-set, so a
    request that settles at the same moment wins or loses cleanly: never both."""
    async with db.sessions() as session:
        stale = (
            await session.scalars(select(UsageRecord.id).where(stale_hold_condition(hold_timeout_s)).limit(1000))
        ).all()
    expired = 0
    for request_id in stale:
        async with db.transaction() as session:
            outcome = holds.Outcome(attempts=0, channels_tried=[], latency_ms=0, error_code="hold_expired")
            if await holds.release(session, request_id, "expired", outcome):
                expired += 1
    if expired:
        log.warning("released %d hold(s) left open by a crashed process", expired)
    return expired
