"""What a request's hold is ended with: its final status and the frozen facts of how it was
served (the channel, the upstream model, every upstream attempt as its row will keep it)."""

from __future__ import annotations

import time
from decimal import Decimal

from app.billing import holds
from app.errors import GatewayError
from app.generation.results import AllImagesFiltered
from app.routing.attempts import Attempt
from app.routing.router import Routed


def status_of(error: GatewayError) -> str:
    return "filtered" if isinstance(error, AllImagesFiltered) else "failed"


def outcome_of(
    attempts: list[Attempt],
    started: float,
    routed: Routed | None,
    *,
    delivered: int = 0,
    credits: Decimal = Decimal(0),
    error_code: str | None = None,
) -> holds.Outcome:
    channel = routed.channel if routed else None
    calls = [a for a in attempts if a.called]
    # A failed request names the channel it last called: that is where an operator looks first.
    last = calls[-1] if calls and routed is None else None
    return holds.Outcome(
        attempts=len(attempts),
        channels_tried=[a.as_record() for a in attempts],
        latency_ms=int((time.monotonic() - started) * 1000),
        upstream_model=routed.upstream_model if routed else (last.upstream_model if last else None),
        channel_id=channel.id if channel else (last.channel_id if last else None),
        channel_name=channel.name if channel else (last.channel if last else None),
        provider=channel.provider if channel else (last.provider if last else None),
        channel_multiplier=channel.multiplier if channel else None,
        images_delivered=delivered,
        credits=credits,
        error_code=error_code,
        attempt_records=tuple(a.as_row() for a in calls),
    )
