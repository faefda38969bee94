"""Testing a channel: one real one-image generation through it alone, charged to no account.

An operator checks a channel before it takes traffic (a disabled one too), or after fixing its key.
The call goes through the channel's own adapter, credentials and guarded image fetcher, exactly as
a request routed there would, but without failover, the circuit breaker or the auto-disable count:
a test reports on the channel, it never changes how traffic is routed. The images are counted and
dropped. The provider bills the call like any other, so it is recorded as an upstream attempt with
no request and no account: the attempts export and invoice reconciliation see it; usage reports,
which are about requests, do not.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select

from app.billing.attempt_rows import write_attempts
from app.catalog.models import Channel
from app.catalog.secrets import SecretCipher
from app.catalog.snapshot import CatalogCache, channel_spec
from app.db import Database
from app.errors import InvalidValue, NotFound
from app.images import ImageRequest
from app.providers.base import ImageProvider
from app.providers.credentials import scrub_secrets
from app.providers.errors import ContentFiltered, UpstreamAmbiguous, UpstreamRejected, UpstreamRetryable
from app.routing.attempts import Attempt, attempt_of
from app.specs import WILDCARD, CatalogSnapshot, ChannelSpec

TEST_PROMPT = "A small red circle centred on a plain white background."

log = logging.getLogger("app.routing")


@dataclass(frozen=True)
class ChannelTestResult:
    ok: bool  # the upstream delivered an image
    latency_ms: int
    http_status: int | None  # the upstream's answer; None when it gave none (unreachable, timeout)
    error: str | None  # why not, without the channel's credentials
    images: int  # delivered (never stored or returned)
    channel: str
    model: str
    upstream_model: str


class ChannelTester:
    def __init__(
        self, db: Database, providers: dict[str, ImageProvider], catalog: CatalogCache, cipher: SecretCipher
    ) -> None:
        self.db = db
        self.providers = providers
        self.catalog = catalog
        self.cipher = cipher

    async def test(self, channel_ref: str, model: str | None = None) -> ChannelTestResult:
        """Test the channel named by id or name with `model` (a catalog id or alias the channel
        maps; by default the first model it maps). 404 for an unknown channel, 400 for a model
        it does not map."""
        channel = await self._channel(channel_ref)
        model_id, upstream = model_to_test(channel, await self.catalog.get(), model)
        provider = self.providers.get(channel.provider)
        request = ImageRequest(model=model_id, prompt=TEST_PROMPT, n=1)
        refusal = _cannot_call(channel, provider, request, upstream)
        if refusal is not None or provider is None:
            # Nothing was sent upstream: nothing to record, nothing billed.
            return ChannelTestResult(False, 0, None, refusal, 0, channel.name, model_id, upstream)
        attempt, delivered, filtered = await _call(provider, request, channel, upstream)
        async with self.db.transaction() as session:
            await write_attempts(session, None, "", [attempt.as_row()])
        result = _result(attempt, delivered, filtered, channel, model_id)
        log.info(
            "channel test of %s (%s): %s",
            channel.name,
            upstream,
            "ok" if result.ok else result.error,
            extra={"channel": channel.name, "upstream_model": upstream, "http_status": result.http_status},
        )
        return result

    async def _channel(self, ref: str) -> ChannelSpec:
        """Read afresh (not from the snapshot): an operator who just changed the key tests the new one."""
        async with self.db.sessions() as session:
            row = await session.get(Channel, ref) or await session.scalar(select(Channel).where(Channel.name == ref))
        if row is None:
            raise NotFound(f"No channel with id or name {ref!r}.")
        return channel_spec(row, self.cipher)


def model_to_test(channel: ChannelSpec, snapshot: CatalogSnapshot, asked: str | None) -> tuple[str, str]:
    """The catalog model to test and the upstream model the channel calls for it."""
    if asked is None:
        mapped = [m for m in channel.models if m != WILDCARD]
        if not mapped and WILDCARD in channel.models:
            mapped = sorted(snapshot.models)  # "*" serves every catalog model: the first, by id
        if not mapped:
            raise InvalidValue(f"Channel {channel.name} maps no model; set its models first.", param="model")
        asked = mapped[0]
    resolved = snapshot.resolve(asked)
    model_id = asked if asked in channel.models or resolved is None else resolved.id
    upstream = channel.upstream_model(model_id)
    if upstream is None or (model_id not in channel.models and resolved is None):
        maps = ", ".join(sorted(channel.models)) or "nothing"
        raise InvalidValue(f"Channel {channel.name} does not map the model {asked!r} (it maps: {maps}).", param="model")
    return model_id, upstream


def _cannot_call(
    channel: ChannelSpec, provider: ImageProvider | None, request: ImageRequest, upstream: str
) -> str | None:
    if channel.unusable:
        return f"The channel cannot be called: {channel.unusable}."
    if provider is None:
        return f"No adapter for provider {channel.provider!r}."
    missing = provider.unsupported(request, channel, upstream)
    if missing:
        return f"The channel cannot honour a default one-image request: {', '.join(missing)}."
    return None


async def _call(
    provider: ImageProvider, request: ImageRequest, channel: ChannelSpec, upstream: str
) -> tuple[Attempt, int, list[str]]:
    """One call, classified the way the router classifies it: (attempt, images delivered,
    reasons given for filtered images)."""
    started, started_at = time.monotonic(), datetime.now(UTC)
    try:
        async with asyncio.timeout(channel.timeout_s):
            result = await provider.generate(request, channel, upstream)
    except ContentFiltered as exc:
        return attempt_of(channel, upstream, "filtered", started, started_at, images=len(exc.reasons)), 0, exc.reasons
    except UpstreamRetryable as exc:
        outcome = "rate_limited" if exc.status == 429 else "retryable"
        return attempt_of(channel, upstream, outcome, started, started_at, exc), 0, []
    except UpstreamRejected as exc:
        return attempt_of(channel, upstream, "rejected", started, started_at, exc), 0, []
    except (UpstreamAmbiguous, TimeoutError) as exc:
        error = exc if isinstance(exc, UpstreamAmbiguous) else UpstreamAmbiguous("the upstream timed out")
        return attempt_of(channel, upstream, "ambiguous", started, started_at, error), 0, []
    returned = len(result.images) + len(result.filtered_reasons)
    attempt = attempt_of(channel, upstream, "ok", started, started_at, images=returned, result=result)
    return attempt, len(result.images), result.filtered_reasons


def _result(
    attempt: Attempt, delivered: int, filtered: list[str], channel: ChannelSpec, model_id: str
) -> ChannelTestResult:
    answered = attempt.outcome in ("ok", "filtered")
    error = attempt.error
    if answered and delivered == 0:
        reasons = scrub_secrets("; ".join(filtered), channel)[:200] or "no reason given"
        error = f"The upstream answered but filtered the test image ({reasons})."
    return ChannelTestResult(
        ok=delivered > 0,
        latency_ms=attempt.latency_ms,
        # An answer with images (or all filtered) was a 2xx; adapters keep only the failures' status.
        http_status=200 if answered else attempt.status,
        error=error,
        images=delivered,
        channel=channel.name,
        model=model_id,
        upstream_model=attempt.upstream_model,
    )
