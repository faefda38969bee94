"""The one generation pipeline. Every route (unified, OpenAI, Google-native) and every task
calls `GenerationService.generate`; there is no second copy of these steps.

resolve model → validate → authorise → pick able channels → hold → route → settle → result.
No database session is open while an upstream is called: hold and settle are two short
transactions on either side of it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from app.billing import holds
from app.billing.amounts import charge
from app.catalog.snapshot import CatalogSnapshot, ModelSpec
from app.db import Database, new_id
from app.errors import ModelNotAllowed, ModerationBlocked, NoChannelAvailable, UnsupportedParameter
from app.generation.types import GeneratedImage, ImageRequest
from app.generation.validate import check_capabilities, resolve_model
from app.keys.auth import Caller
from app.routing.router import Attempt, ChannelRouter, Routed, RoutingFailed
from app.routing.selection import Candidate


class CatalogSource(Protocol):
    """Where the current catalog comes from (the catalog cache, in the app)."""

    async def get(self) -> CatalogSnapshot: ...


@dataclass(frozen=True)
class Billing:
    images: int
    unit_credits: Decimal
    model_multiplier: Decimal
    channel_multiplier: Decimal
    credits: Decimal
    balance: Decimal


@dataclass(frozen=True)
class Generated:
    request_id: str
    created: int
    model: ModelSpec
    images: list[GeneratedImage]
    filtered_reasons: list[str]
    billing: Billing
    provider: str


class AllImagesFiltered(ModerationBlocked):
    """Every image was withheld upstream. Nothing is charged; the Google route renders `{}`."""

    def __init__(self, request_id: str, reasons: list[str]) -> None:
        super().__init__(
            "Every generated image was blocked by the safety system; nothing was charged. "
            "Rephrase the prompt and try again."
        )
        self.request_id = request_id
        self.reasons = reasons


@dataclass
class Admitted:
    """A request that passed validation and holds credits: what `execute` needs to finish it."""

    terms: holds.HoldTerms
    request: ImageRequest
    model: ModelSpec
    candidates: list[Candidate] = field(default_factory=list)


class GenerationService:
    def __init__(self, db: Database, router: ChannelRouter, catalog: CatalogSource) -> None:
        self.db = db
        self.router = router
        self.catalog = catalog

    async def generate(self, caller: Caller, request: ImageRequest, endpoint: str) -> Generated:
        admitted = await self.admit(caller, request, endpoint)
        return await self.execute(admitted)

    async def admit(self, caller: Caller, request: ImageRequest, endpoint: str) -> Admitted:
        """Validate and hold. Raises a 4xx GatewayError (nothing held) or 402."""
        snapshot = await self.catalog.get()
        model, candidates = self._plan(snapshot, caller, request)
        top_multiplier = max(channel.multiplier for channel, _ in candidates)
        terms = holds.HoldTerms(
            request_id=new_id("req"),
            account_id=caller.account_id,
            key_id=caller.key_id,
            endpoint=endpoint,
            model=model.id,
            unit_credits=model.credits_per_image,
            model_multiplier=model.multiplier,
            images_requested=request.n,
            # Enough for the most expensive channel that could serve; settlement charges the one that did.
            hold_credits=charge(model.credits_per_image, model.multiplier, top_multiplier, request.n),
            user=request.user,
            metadata=dict(request.metadata),
        )
        async with self.db.transaction() as session:
            await holds.place_hold(session, terms)
        return Admitted(terms=terms, request=request, model=model, candidates=candidates)

    async def execute(self, admitted: Admitted) -> Generated:
        """Call upstream and settle the hold exactly once, whatever happens."""
        started = time.monotonic()
        try:
            routed = await self.router.run(admitted.request, admitted.candidates)
        except RoutingFailed as failed:
            await self._release(admitted, "failed", failed.attempts, started, failed.error.code)
            raise failed.error from None
        except BaseException:
            # Cancelled (client gone, shutdown) or a bug: the hold must still end.
            await asyncio.shield(self._release(admitted, "failed", [], started, "internal_error"))
            raise
        try:
            return await asyncio.shield(self._settle(admitted, routed, started))
        except BaseException:
            await asyncio.shield(self._release(admitted, "failed", routed.attempts, started, "internal_error"))
            raise

    def _plan(
        self, snapshot: CatalogSnapshot, caller: Caller, request: ImageRequest
    ) -> tuple[ModelSpec, list[Candidate]]:
        model = resolve_model(snapshot, request.model)
        if not caller.may_use(model.id):
            raise ModelNotAllowed(f"This key may not use the model {model.id!r}.", param="model")
        check_capabilities(request, model)
        served = snapshot.channels_for(model.id)
        if not served:
            raise NoChannelAvailable(f"No enabled channel serves {model.id} right now.")
        able, refused = self.router.able(request, served)
        if not able:
            if refused:
                names = ", ".join(sorted(refused))
                raise UnsupportedParameter(
                    f"No channel serving {model.id} can honour: {names}. Remove it and try again.",
                    param=sorted(refused)[0],
                )
            raise NoChannelAvailable(f"No enabled channel serves {model.id} right now.")
        return model, able

    async def _settle(self, admitted: Admitted, routed: Routed, started: float) -> Generated:
        terms = admitted.terms
        delivered = len(routed.result.images)
        if delivered == 0:
            await self._release(admitted, "filtered", routed.attempts, started, "moderation_blocked", routed)
            raise AllImagesFiltered(terms.request_id, routed.result.filtered_reasons)
        channel = routed.channel
        credits = charge(terms.unit_credits, terms.model_multiplier, channel.multiplier, delivered)
        outcome = _outcome(routed.attempts, started, routed, delivered=delivered, credits=credits)
        async with self.db.transaction() as session:
            balance = await holds.capture(session, terms.request_id, outcome)
        if balance is None:
            raise RuntimeError(f"hold {terms.request_id} ended before settlement")
        return Generated(
            request_id=terms.request_id,
            created=int(time.time()),
            model=admitted.model,
            images=routed.result.images,
            filtered_reasons=routed.result.filtered_reasons,
            billing=Billing(
                images=delivered,
                unit_credits=terms.unit_credits,
                model_multiplier=terms.model_multiplier,
                channel_multiplier=channel.multiplier,
                credits=credits,
                balance=balance,
            ),
            provider=channel.provider,
        )

    async def _release(
        self,
        admitted: Admitted,
        status: str,
        attempts: list[Attempt],
        started: float,
        error_code: str,
        routed: Routed | None = None,
    ) -> None:
        outcome = _outcome(attempts, started, routed, error_code=error_code)
        async with self.db.transaction() as session:
            await holds.release(session, admitted.terms.request_id, status, outcome)


def _outcome(
    attempts: list[Attempt],
    started: float,
    routed: Routed | None,
    *,
    delivered: int = 0,
    credits: Decimal = Decimal(0),
    error_code: str | None = None,
) -> holds.Outcome:
    channel = routed.channel if routed else None
    return holds.Outcome(
        attempts=len(attempts),
        channels_tried=[a.as_record() for a in attempts],
        latency_ms=int((time.monotonic() - started) * 1000),
        upstream_model=routed.upstream_model if routed else None,
        channel_id=channel.id if channel else None,
        channel_name=channel.name if channel else None,
        provider=channel.provider if channel else None,
        channel_multiplier=channel.multiplier if channel else None,
        images_delivered=delivered,
        credits=credits,
        error_code=error_code,
    )
