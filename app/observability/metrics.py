"""Prometheus metrics, one registry per app (no module-level state).

Counters and histograms are updated where things happen. Gauges that describe the database
(open holds, tasks by status) and channel health are read at scrape time by the edge
(`app.api.gauges`), so every replica reports the same shared truth and this module needs no
domain's tables.
"""

from __future__ import annotations

from decimal import Decimal

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

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

    def exposition(self) -> bytes:
        """The exposition text of everything recorded so far (gauges set by `app.api.gauges`)."""
        return generate_latest(self.registry)
