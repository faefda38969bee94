"""Calls the adapters for a request: channels in order, failover, circuit breaking, a deadline.

Order: highest priority first, weighted random within a priority, skipping channels whose circuit
is open or that are cooling after a 429, unless every channel is open (the last one standing is
never ejected). Failover happens on retryable errors, and on answers that blame the channel
itself (401/403/404: its credentials or its model mapping), within `max_attempts` and the
request's deadline. The channel that actually served is returned, because its multiplier
decides the charge.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from app.errors import (
    MAX_RETRY_AFTER_S,
    GatewayError,
    NoChannelAvailable,
    RateLimited,
    UpstreamFailed,
    UpstreamTimedOut,
)
from app.images import ImageRequest, ImageResult
from app.observability.metrics import Metrics
from app.providers.base import ImageProvider
from app.providers.credentials import scrub_secrets
from app.providers.errors import (
    ContentFiltered,
    UpstreamAmbiguous,
    UpstreamError,
    UpstreamRejected,
    UpstreamRetryable,
)
from app.routing.attempts import Attempt, attempt_of, filtered_attempt
from app.routing.breaker import BreakerState
from app.routing.channel_faults import ChannelFaults
from app.routing.health import HealthStore
from app.routing.selection import Candidate, order_candidates
from app.routing.slots import ChannelSlots
from app.specs import CatalogSnapshot, ChannelSpec

# Upstream statuses that mean the channel itself is broken (credentials, retired model), not
# this request: they count against the channel's health, toward disabling it (ChannelFaults), and
# the request fails over to another channel (nothing was generated, so nothing was billed).
CHANNEL_FAULT_STATUSES = frozenset({401, 403, 404})

log = logging.getLogger("app.routing")


@dataclass
class Routed:
    result: ImageResult
    channel: ChannelSpec
    upstream_model: str
    attempts: list[Attempt] = field(default_factory=list)
    placeholder: bool = False  # served by a stand-in adapter (ImageProvider.placeholder)


@dataclass
class Dispatch:
    """Whether an upstream call of this request has gone out. From then on the upstream may
    generate and bill, so the request is finished even if its caller leaves (see
    GenerationService.execute); before it, a cancellation simply stops the request."""

    sent: bool = False


class RoutingFailed(Exception):
    def __init__(self, error: GatewayError, attempts: list[Attempt]) -> None:
        super().__init__(error.message)
        self.error = error
        self.attempts = attempts


@dataclass
class _Run:
    """The bookkeeping of one request's trip through the channels."""

    deadline: float
    attempts: list[Attempt] = field(default_factory=list)
    calls: int = 0
    last: UpstreamError | None = None
    last_channel: ChannelSpec | None = None
    rate_limits: list[float | None] = field(default_factory=list)
    busy: int = 0
    dispatch: Dispatch = field(default_factory=Dispatch)

    def remaining(self) -> float:
        return self.deadline - time.monotonic()


class ChannelRouter:
    def __init__(
        self,
        providers: dict[str, ImageProvider],
        health: HealthStore,
        *,
        max_attempts: int,
        deadline_s: float,
        slot_wait_s: float = 2.0,
        metrics: Metrics,
        rng: random.Random | None = None,
        faults: ChannelFaults | None = None,
    ) -> None:
        self.providers = providers
        self.faults = faults
        self.health = health
        self.slots = ChannelSlots()
        self.max_attempts = max_attempts
        self.deadline_s = deadline_s
        self.slot_wait_s = slot_wait_s
        self._rng = rng or random.Random()
        self.metrics = metrics

    def provider_for(self, channel: ChannelSpec) -> ImageProvider | None:
        return self.providers.get(channel.provider)

    def is_placeholder(self, channel: ChannelSpec) -> bool:
        provider = self.provider_for(channel)
        return provider is not None and provider.placeholder

    def serving(self, snapshot: CatalogSnapshot, model_id: str) -> list[Candidate]:
        """The channels a request for the model may be routed to: the enabled ones that serve it,
        without the placeholder adapters whenever any other enabled channel maps the model.

        A real channel counts even while it cannot be called (open circuit, unreadable secret):
        its caller then gets an honest error, never a stand-in image charged as a real one.
        """
        served = snapshot.channels_for(model_id)
        if not any(self.is_placeholder(channel) for channel, _ in served):
            return served
        mapped_by_real = any(
            channel.enabled and channel.upstream_model(model_id) is not None and not self.is_placeholder(channel)
            for channel in snapshot.channels
        )
        if not mapped_by_real:
            return served
        return [(channel, upstream) for channel, upstream in served if not self.is_placeholder(channel)]

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

    async def run(self, request: ImageRequest, candidates: list[Candidate], dispatch: Dispatch | None = None) -> Routed:
        run = _Run(deadline=time.monotonic() + self.deadline_s, dispatch=dispatch or Dispatch())
        ordered = order_candidates(candidates, self._rng)
        states = await self.health.states(channel.id for channel, _ in ordered)
        for channel, upstream in self._admissible(ordered, states):
            if run.calls >= self.max_attempts or run.remaining() <= 0:
                break
            if not await self._may_try(channel, states[channel.id]):
                continue
            async with self.slots.slot(channel, min(self.slot_wait_s, run.remaining())) as got_slot:
                if not got_slot:
                    run.busy += 1
                    self._note(run, attempt_of(channel, upstream, "busy", time.monotonic(), datetime.now(UTC)))
                    continue
                run.calls += 1
                routed = await self._call(run, request, channel, upstream, states[channel.id])
            if routed is not None:
                return routed
        raise RoutingFailed(self._exhausted(run, ordered, states), run.attempts)

    def _admissible(self, ordered: list[Candidate], states: dict[str, BreakerState]) -> list[Candidate]:
        now = time.time()
        open_or_cooling = [c for c in ordered if states[c[0].id].phase(now) in ("open", "cooling")]
        usable = [c for c in ordered if c not in open_or_cooling]
        if usable:
            return usable
        # Every channel is ejected. One whose circuit is open is still tried (the soonest to
        # recover), so a burst of failures can never take a model offline by itself; a channel
        # that is cooling after a 429 is not, because the upstream told us when to come back.
        open_only = [c for c in ordered if states[c[0].id].phase(now) == "open"]
        return sorted(open_only, key=lambda c: states[c[0].id].available_at(now))[:1]

    async def _may_try(self, channel: ChannelSpec, state: BreakerState) -> bool:
        if state.phase(time.time()) != "half_open":
            return True
        policy = self.health.policy
        return await self.health.update(channel.id, lambda s, now: s.claim_probe(now, policy))

    async def _call(
        self, run: _Run, request: ImageRequest, channel: ChannelSpec, upstream: str, state: BreakerState
    ) -> Routed | None:
        """One upstream call. Returns the result, None to fail over, or raises RoutingFailed."""
        provider = self.providers[channel.provider]
        started = time.monotonic()
        started_at = datetime.now(UTC)
        run.dispatch.sent = True
        try:
            async with asyncio.timeout(min(channel.timeout_s, run.remaining())):
                result = await provider.generate(request, channel, upstream)
        except ContentFiltered as exc:
            await self._healthy(channel, state, started)
            await self._worked(channel)
            self._note(run, filtered_attempt(channel, upstream, started, started_at, exc))
            return Routed(ImageResult([], exc.reasons), channel, upstream, run.attempts, provider.placeholder)
        except UpstreamRetryable as exc:
            limited = exc.status == 429
            await self._unhealthy(channel, exc, started, rate_limited=limited)
            self._note(
                run, attempt_of(channel, upstream, "rate_limited" if limited else "retryable", started, started_at, exc)
            )
            if limited:
                run.rate_limits.append(exc.retry_after_s)
            run.last, run.last_channel = exc, channel
            return None
        except UpstreamRejected as exc:
            attempt = attempt_of(channel, upstream, "rejected", started, started_at, exc)
            self._note(run, attempt)
            if exc.status not in CHANNEL_FAULT_STATUSES:
                raise RoutingFailed(rejected_error(exc, channel), run.attempts) from exc
            await self._unhealthy(channel, exc, started)
            if self.faults is not None:
                await self.faults.refused(channel, exc.status, attempt.error or "")
            run.last, run.last_channel = exc, channel
            return None
        except (UpstreamAmbiguous, TimeoutError) as exc:
            error = exc if isinstance(exc, UpstreamAmbiguous) else UpstreamAmbiguous("the upstream timed out")
            await self._unhealthy(channel, error, started)
            self._note(run, attempt_of(channel, upstream, "ambiguous", started, started_at, error))
            run.last, run.last_channel = error, channel
            # The upstream may have generated (and billed) this already, so another channel is
            # tried only where the operator allows it for this channel.
            if channel.retry_ambiguous and run.remaining() > 0:
                return None
            raise RoutingFailed(
                UpstreamTimedOut(
                    f"The upstream's outcome is unknown ({scrub_secrets(error.message, channel)[:300]}); "
                    "nothing was charged.",
                    headers={"x-should-retry": "false"},
                ),
                run.attempts,
            ) from exc
        await self._healthy(channel, state, started)
        await self._worked(channel)
        returned = len(result.images) + len(result.filtered_reasons)
        self._note(run, attempt_of(channel, upstream, "ok", started, started_at, images=returned, result=result))
        return Routed(result, channel, upstream, run.attempts, provider.placeholder)

    def _note(self, run: _Run, attempt: Attempt) -> None:
        run.attempts.append(attempt)
        if not attempt.called:
            return
        self.metrics.upstream_call(attempt.channel, attempt.outcome, attempt.latency_ms / 1000)
        if attempt.recorded_outcome != "succeeded":
            # The request id comes from the request's context (observability.logs.request_id_var).
            log.warning(
                "upstream attempt %s on channel %s: %s",
                attempt.recorded_outcome,
                attempt.channel,
                attempt.error or attempt.error_code,
                extra={
                    "channel": attempt.channel,
                    "provider": attempt.provider,
                    "upstream_model": attempt.upstream_model,
                    "outcome": attempt.recorded_outcome,
                    "http_status": attempt.status,
                    "error_code": attempt.error_code,
                    "latency_ms": attempt.latency_ms,
                    "upstream_message": attempt.error,
                },
            )

    async def _healthy(self, channel: ChannelSpec, state: BreakerState, started: float) -> None:
        if not state.is_clean(time.time()):
            await self.health.update(channel.id, lambda s, _now: s.succeeded())
        await self.health.remember(channel.id, True, _ms(started))

    async def _worked(self, channel: ChannelSpec) -> None:
        if self.faults is not None and channel.credential_failures:
            await self.faults.worked(channel)

    async def _unhealthy(
        self, channel: ChannelSpec, exc: UpstreamError, started: float, *, rate_limited: bool = False
    ) -> None:
        policy = self.health.policy
        message = scrub_secrets(exc.message, channel)[:300]
        retry_after = exc.retry_after_s if isinstance(exc, UpstreamRetryable) else None

        def transition(state: BreakerState, now: float) -> None:
            if rate_limited:
                state.rate_limited(now, retry_after, message, policy)
            else:
                state.failed(now, message, policy)

        await self.health.update(channel.id, transition)
        await self.health.remember(channel.id, False, _ms(started))

    def _exhausted(self, run: _Run, ordered: list[Candidate], states: dict[str, BreakerState]) -> GatewayError:
        if run.calls == 0:
            now = time.time()
            soonest = min((states[c.id].available_at(now) for c, _ in ordered), default=now)
            wait = 1 if run.busy else _retry_after(soonest - now)
            if any(states[c.id].phase(now) == "cooling" for c, _ in ordered) and not run.busy:
                return RateLimited(
                    f"Every channel serving this model is rate limited upstream; retry after {wait} s.",
                    headers={"retry-after": str(wait)},
                )
            return NoChannelAvailable(
                f"Every channel serving this model is busy or recovering; retry after {wait} s.",
                headers={"retry-after": str(wait)},
            )
        if run.rate_limits and len(run.rate_limits) == run.calls:
            known = [s for s in run.rate_limits if s is not None]
            wait = _retry_after(min(known) if known else self.health.policy.default_rate_limit_cooldown_s)
            return RateLimited(
                f"Every channel serving this model is rate limited upstream; retry after {wait} s.",
                headers={"retry-after": str(wait)},
            )
        if run.remaining() <= 0:
            return UpstreamTimedOut("The request's deadline passed before any channel answered; nothing was charged.")
        assert run.last is not None and run.last_channel is not None
        if isinstance(run.last, UpstreamRejected):
            # The last channel refused its own credentials or model: the operator must act, and
            # the same request sent again would meet the same channels.
            return rejected_error(run.last, run.last_channel)
        message = scrub_secrets(run.last.message, run.last_channel)
        return UpstreamFailed(f"Every channel failed; last error: {message}")


def rejected_error(exc: UpstreamRejected, channel: ChannelSpec) -> GatewayError:
    """An upstream 4xx: our request was refused, so retrying would fail the same way."""
    message = scrub_secrets(exc.message, channel)
    return UpstreamFailed(f"The upstream rejected the request: {message}", headers={"x-should-retry": "false"})


def _retry_after(seconds: float) -> int:
    return max(1, min(MAX_RETRY_AFTER_S, math.ceil(seconds)))


def _ms(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
