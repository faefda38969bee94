"""Ends holds left open by a crashed process, so reserved credits come back."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select

from app.billing import holds
from app.billing.models import UsageRecord
from app.db import Database, utcnow

log = logging.getLogger("app.billing.sweeper")


async def expire_stale_holds(db: Database, hold_timeout_s: float) -> int:
    """Release every hold older than the timeout. Each release is its own compare-and-set, so a
    request that settles at the same moment wins or loses cleanly: never both."""
    cutoff = utcnow() - timedelta(seconds=hold_timeout_s)
    async with db.sessions() as session:
        stale = (
            await session.scalars(
                select(UsageRecord.id)
                .where(UsageRecord.status == "pending", UsageRecord.created_at < cutoff)
                .limit(1000)
            )
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


async def run_sweeper(db: Database, hold_timeout_s: float, interval_s: float) -> None:
    while True:
        try:
            await expire_stale_holds(db, hold_timeout_s)
        except Exception:  # a database blip must not end the loop; the next pass retries
            log.exception("hold sweep failed")
        await asyncio.sleep(interval_s)
