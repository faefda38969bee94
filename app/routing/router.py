"""Calls the adapters for a request: ordered channels, failover on retryable errors, a deadline.

The channel that actually served is returned, because its multiplier decides the charge.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field
from typing import Any

from app.catalog.snapshot import ChannelSpec
from app.errors import GatewayError, NoChannelAvailable, UpstreamFailed, UpstreamTimedOut
from app.generation.types import ImageRequest, ImageResult
from app.providers.base import ImageProvider
from app.providers.credentials import scrub_secrets
from app.providers.errors import (
    ContentFiltered,
    UpstreamAmbiguous,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from app.routing.selection import Candidate, order_candidates


@dataclass
class Attempt:
    channel_id: str
    channel: str
    outcome: str  # ok | filtered | retryable | rejected | ambiguous
    latency_ms: int
    status: int | None = None
    error: str | None = None

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


@dataclass
class Routed:
    result: ImageResult
    channel: ChannelSpec
    upstream_model: str
    attempts: list[Attempt] = field(default_factory=list)


class RoutingFailed(Exception):
    def __init__(self, error: GatewayError, attempts: list[Attempt]) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


class ChannelRouter:
    def __init__(
        self,
        providers: dict[str, ImageProvider],
        *,
        max_attempts: int,
        deadline_s: float,
        rng: random.Random | None = None,
    ) -> None:
        self.providers = providers
        self.max_attempts = max_attempts
        self.deadline_s = deadline_s
        self._rng = rng or random.Random()

    def provider_for(self, channel: ChannelSpec) -> ImageProvider | None:
        return self.providers.get(channel.provider)

    def able(self, request: ImageRequest, candidates: list[Candidate]) -> tuple[list[Candidate], set[str]]:
        """Candidates whose adapter can honour every parameter of the request, and the parameters
        that made the others unable."""
        able: list[Candidate] = []
        refused: set[str] = set()
        for channel, upstream in candidates:
            provider = self.provider_for(channel)
            if provider is None:
                continue
            missing = provider.unsupported(request, channel, upstream)
            if missing:
                refused.update(missing)
            else:
                able.append((channel, upstream))
        return able, refused

    async def run(self, request: ImageRequest, candidates: list[Candidate]) -> Routed:
        attempts: list[Attempt] = []
        deadline = time.monotonic() + self.deadline_s
        last: UpstreamError | None = None
        last_channel: ChannelSpec | None = None
        for channel, upstream in order_candidates(candidates, self._rng)[: self.max_attempts]:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            provider = self.providers[channel.provider]
            started = time.monotonic()
            try:
                async with asyncio.timeout(min(channel.timeout_s, remaining)):
                    result = await provider.generate(request, channel, upstream)
            except ContentFiltered as exc:
                attempts.append(_attempt(channel, "filtered", started))
                return Routed(ImageResult([], exc.reasons), channel, upstream, attempts)
            except UpstreamRetryable as exc:
                attempts.append(_attempt(channel, "retryable", started, exc))
                last, last_channel = exc, channel
                continue
            except UpstreamRejected as exc:
                attempts.append(_attempt(channel, "rejected", started, exc))
                raise RoutingFailed(rejected_error(exc, channel), attempts) from exc
            except (UpstreamAmbiguous, TimeoutError) as exc:
                error = exc if isinstance(exc, UpstreamAmbiguous) else UpstreamAmbiguous("timed out")
                attempts.append(_attempt(channel, "ambiguous", started, error))
                # The upstream may have generated (and billed) already: no blind retry.
                raise RoutingFailed(
                    UpstreamTimedOut("The upstream did not answer in time.", headers={"x-should-retry": "false"}),
                    attempts,
                ) from exc
            attempts.append(_attempt(channel, "ok", started))
            return Routed(result, channel, upstream, attempts)
        if last_channel is None or last is None:
            raise RoutingFailed(NoChannelAvailable("No channel is available for this model right now."), attempts)
        message = scrub_secrets(last.message, last_channel)
        raise RoutingFailed(UpstreamFailed(f"Every channel failed; last error: {message}"), attempts)


def rejected_error(exc: UpstreamRejected, channel: ChannelSpec) -> GatewayError:
    """An upstream 4xx: our request was refused, so retrying would fail the same way."""
    message = scrub_secrets(exc.message, channel)
    return UpstreamFailed(f"The upstream rejected the request: {message}", headers={"x-should-retry": "false"})


def _attempt(channel: ChannelSpec, outcome: str, started: float, exc: UpstreamError | None = None) -> Attempt:
    return Attempt(
        channel_id=channel.id,
        channel=channel.name,
        outcome=outcome,
        latency_ms=int((time.monotonic() - started) * 1000),
        status=exc.status if exc else None,
        error=scrub_secrets(exc.message, channel)[:300] if exc else None,
    )
