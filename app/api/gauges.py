"""Scrape-time gauges: what the database and the channels' health say right now.

Read by the edge when /metrics is scraped, so that the metrics module below needs none of the
tables and stores it describes.
"""

from __future__ import annotations

import time

from sqlalchemy import func, select, type_coerce

from app.billing.models import UsageRecord
from app.db import Database, Fixed4
from app.observability.metrics import CIRCUIT_STATES, Metrics
from app.routing.health import HealthStore
from app.tasks.models import Task

TASK_STATUSES = ("queued", "running", "succeeded", "failed", "canceled")


async def read_gauges(metrics: Metrics, db: Database, health: HealthStore, channels: dict[str, str]) -> None:
    """Set the open-hold, task and circuit gauges from the database and the health store.
    `channels` maps channel ids to the names the circuit gauge is labelled with."""
    async with db.sessions() as session:
        count, held = (
            await session.execute(
                select(func.count(), type_coerce(func.sum(UsageRecord.hold_credits), Fixed4())).where(
                    UsageRecord.status == "pending"
                )
            )
        ).one()
        by_status = dict((await session.execute(select(Task.status, func.count()).group_by(Task.status))).all())
    metrics.holds_open.set(count)
    metrics.credits_held.set(float(held or 0))
    for status in TASK_STATUSES:
        metrics.tasks.labels(status).set(by_status.get(status, 0))
    now = time.time()
    states = await health.states(channels)
    for channel_id, state in states.items():
        phase = state.phase(now)
        for name in CIRCUIT_STATES:
            metrics.circuit.labels(channels[channel_id], name).set(1 if name == phase else 0)
