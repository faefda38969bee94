"""Prometheus metrics, one registry per app (no module-level state).

Counters and histograms are updated where things happen; gauges that describe the database
(open holds, tasks by status) and channel health are read at scrape time, so every replica
reports the same shared truth.
"""

from __future__ import annotations

import time
from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import func, select, type_coerce

from app.billing.models import UsageRecord
from app.db import Database, Fixed4
from app.routing.health import HealthStore
from app.tasks.models import Task

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CIRCUIT_STATES = ("closed", "half_open", "open", "cooling")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "gateway_http_requests", "HTTP requests answered", ["route", "method", "status"], registry=r
        )
        self.http_latency = Histogram(
            "gateway_http_request_seconds", "Time to answer", ["route"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.generations = Counter(
            "gateway_generations", "Generation requests by model and outcome", ["model", "outcome"], registry=r
        )
        self.images = Counter("gateway_images_delivered", "Images delivered", ["model", "channel"], registry=r)
        self.credits = Counter("gateway_credits_charged", "Credits charged", ["model", "channel"], registry=r)
        self.upstream_requests = Counter(
            "gateway_upstream_requests", "Calls to upstream channels by outcome", ["channel", "outcome"], registry=r
        )
        self.upstream_latency = Histogram(
            "gateway_upstream_seconds", "Upstream call latency", ["channel"], buckets=LATENCY_BUCKETS, registry=r
        )
        self.holds_open = Gauge("gateway_holds_open", "Credit holds not yet settled", registry=r)
        self.credits_held = Gauge("gateway_credits_held", "Credits reserved by open holds", registry=r)
        self.tasks = Gauge("gateway_tasks", "Tasks by status", ["status"], registry=r)
        self.circuit = Gauge(
            "gateway_channel_circuit", "1 for the channel's current circuit state", ["channel", "state"], registry=r
        )

    def upstream_call(self, channel: str, outcome: str, seconds: float) -> None:
        self.upstream_requests.labels(channel, outcome).inc()
        self.upstream_latency.labels(channel).observe(seconds)

    def settled(self, model: str, channel: str, images: int, credits: Decimal) -> None:
        self.generations.labels(model, "succeeded").inc()
        self.images.labels(model, channel).inc(images)
        self.credits.labels(model, channel).inc(float(credits))

    def ended(self, model: str, outcome: str) -> None:
        self.generations.labels(model, outcome).inc()

    async def render(self, db: Database, health: HealthStore, channels: dict[str, str]) -> bytes:
        """The exposition text, with the database and health gauges read now."""
        async with db.sessions() as session:
            count, held = (
                await session.execute(
                    select(func.count(), type_coerce(func.sum(UsageRecord.hold_credits), Fixed4())).where(
                        UsageRecord.status == "pending"
                    )
                )
            ).one()
            by_status = dict((await session.execute(select(Task.status, func.count()).group_by(Task.status))).all())
        self.holds_open.set(count)
        self.credits_held.set(float(held or 0))
        for status in ("queued", "running", "succeeded", "failed", "canceled"):
            self.tasks.labels(status).set(by_status.get(status, 0))
        now = time.time()
        states = await health.states(channels)
        for channel_id, state in states.items():
            phase = state.phase(now)
            for name in CIRCUIT_STATES:
                self.circuit.labels(channels[channel_id], name).set(1 if name == phase else 0)
        return generate_latest(self.registry)
