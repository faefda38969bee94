"""One call to an upstream channel, as the router saw it and as the request log records it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from app.billing.attempt_rows import AttemptRecord
from app.images import ImageResult
from app.providers.credentials import scrub_secrets
from app.providers.errors import ContentFiltered, UpstreamError
from app.specs import ChannelSpec

# The router's outcome words → the request log's (busy never reaches the log: no call was made).
RECORDED_OUTCOMES = {
    "ok": "succeeded",
    "filtered": "succeeded",
    "retryable": "failed",
    "rate_limited": "failed",
    "rejected": "rejected",
    "ambiguous": "ambiguous",
}


@dataclass
class Attempt:
    channel_id: str
    channel: str
    outcome: str  # ok | filtered | retryable | rate_limited | rejected | ambiguous | busy
    latency_ms: int
    status: int | None = None
    error: str | None = None
    provider: str = ""
    upstream_model: str = ""
    started_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    images: int = 0  # returned by the upstream, filtered ones included where known
    error_code: str | None = None  # the upstream's own code, else our classification
    # The upstream may charge for this call: it answered with a result (images or all
    # filtered), or it went silent after the request was sent. Connect failures, 4xx, 429 and
    # 5xx answers are not billed.
    possibly_billed: bool = False
    # What the call cost upstream: the provider's own figure when it reports one
    # (ImageResult.upstream_cost), else the channel's cost for this upstream model × images
    # returned; None when neither is known.
    upstream_cost: Decimal | None = None
    # The provider's usage block for the call (ImageResult.usage), kept as it answered it.
    usage: dict[str, Any] | None = None

    @property
    def called(self) -> bool:
        """An upstream call was made (a busy channel was skipped without one)."""
        return self.outcome != "busy"

    @property
    def recorded_outcome(self) -> str:
        """succeeded | failed | ambiguous | rejected, as the request log names it."""
        return RECORDED_OUTCOMES[self.outcome]

    def as_row(self) -> AttemptRecord:
        """The attempt as its upstream_attempts row keeps it."""
        return AttemptRecord(
            channel_id=self.channel_id,
            channel_name=self.channel,
            provider=self.provider,
            upstream_model=self.upstream_model,
            started_at=self.started_at,
            latency_ms=self.latency_ms,
            outcome=self.recorded_outcome,
            possibly_billed=self.possibly_billed,
            images=self.images,
            http_status=self.status,
            error_code=self.error_code,
            error=self.error,
            upstream_cost=self.upstream_cost,
            usage=self.usage,
        )

    def as_record(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "channel_id": self.channel_id,
            "channel": self.channel,
            "outcome": self.outcome,
            "latency_ms": self.latency_ms,
        }
        if self.status is not None:
            record["status"] = self.status
        if self.error:
            record["error"] = self.error
        return record


def attempt_of(
    channel: ChannelSpec,
    upstream_model: str,
    outcome: str,
    started: float,
    started_at: datetime,
    exc: UpstreamError | None = None,
    *,
    images: int = 0,
    result: ImageResult | None = None,
) -> Attempt:
    """The attempt record of one call; `result` is the adapter's answer when it gave one (its
    reported cost and usage block are kept)."""
    return Attempt(
        channel_id=channel.id,
        channel=channel.name,
        outcome=outcome,
        latency_ms=int((time.monotonic() - started) * 1000),
        status=exc.status if exc else None,
        error=scrub_secrets(exc.message, channel)[:300] if exc else None,
        provider=channel.provider,
        upstream_model=upstream_model,
        started_at=started_at,
        images=images,
        error_code=_error_code(outcome, exc, channel),
        possibly_billed=_possibly_billed(outcome, exc),
        upstream_cost=_upstream_cost(channel, upstream_model, images, result),
        usage=result.usage if result is not None else None,
    )


def _upstream_cost(
    channel: ChannelSpec, upstream_model: str, images: int, result: ImageResult | None
) -> Decimal | None:
    """What the provider charges for the images it returned (filtered ones included): its own
    figure when it reported one (exact, where the price table is an estimate), else the channel's
    cost table. A call that returned nothing (an error, a timeout) costs 0 here: the images it may
    have made are unknown."""
    if result is not None and result.upstream_cost is not None:
        return result.upstream_cost
    cost = channel.costs.get(upstream_model)
    return None if cost is None else cost * images


# Our name for a failure the upstream gave no code for.
_CLASSIFIED = {
    "filtered": "content_filtered",
    "rate_limited": "rate_limited",
    "retryable": "upstream_error",
    "rejected": "upstream_rejected",
    "ambiguous": "upstream_timeout",
}


def _error_code(outcome: str, exc: UpstreamError | None, channel: ChannelSpec) -> str | None:
    if exc is not None and exc.upstream_code:
        return scrub_secrets(exc.upstream_code, channel)[:60]
    if outcome == "retryable" and exc is not None and exc.status is None:
        return "upstream_unreachable"  # no answer at all: connect or transport failure
    return _CLASSIFIED.get(outcome)


def filtered_attempt(
    channel: ChannelSpec, upstream_model: str, started: float, started_at: datetime, exc: ContentFiltered
) -> Attempt:
    """An answer whose images were all withheld: billed per image it generated, unless the
    upstream refused the prompt before generating anything."""
    if exc.billed:
        return attempt_of(channel, upstream_model, "filtered", started, started_at, images=len(exc.reasons))
    attempt = attempt_of(channel, upstream_model, "filtered", started, started_at)
    attempt.possibly_billed = False
    return attempt


def _possibly_billed(outcome: str, exc: UpstreamError | None) -> bool:
    if outcome in ("ok", "filtered", "ambiguous"):
        return True
    # A 200 the adapter could not use (not JSON, no images) was still a successful call upstream.
    return outcome == "retryable" and exc is not None and exc.status == 200
