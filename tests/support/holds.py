"""Hold terms and upstream outcomes for tests that drive app.billing.holds directly."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from app.billing import holds
from app.db import new_id, utcnow


def hold_terms(
    account_id: str,
    hold: str | Decimal = "8",
    *,
    key_id: str = "key_test",
    unit: Decimal = Decimal(8),
    model_multiplier: Decimal = Decimal(1),
    images: int = 1,
    hold_for: timedelta = timedelta(minutes=15),
) -> holds.HoldTerms:
    return holds.HoldTerms(
        request_id=new_id("req"),
        account_id=account_id,
        key_id=key_id,
        endpoint="/v1/images/generations",
        model="imagen4",
        unit_credits=unit,
        model_multiplier=model_multiplier,
        images_requested=images,
        hold_credits=Decimal(hold),
        hold_until=utcnow() + hold_for,
    )


def served(credits: str = "8", images: int = 1) -> holds.Outcome:
    """What the local channel delivered: `images` images costing `credits` in all."""
    return holds.Outcome(
        attempts=1,
        channels_tried=[],
        latency_ms=5,
        channel_id="ch",
        channel_name="local",
        provider="local",
        channel_multiplier=Decimal(1),
        images_delivered=images,
        credits=Decimal(credits),
    )
