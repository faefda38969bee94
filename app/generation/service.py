"""The one generation pipeline. Every route (unified, OpenAI, Google-native) and every task
goes through `GenerationService`; there is no second copy of these steps.

resolve model → validate → authorise → pick able channels → hold → route → [store files] →
settle → result. No database session is open while an upstream is called: hold and settle are
two short transactions on either side of it. Tasks split the two halves (`admit` at submission,
`execute` in a worker) and hook their own rows into the same two transactions, so a task's state
and its money always change together.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing import holds
from app.billing.amounts import charge, render
from app.billing.budget_holds import BudgetRefused, announce_refusal
from app.db import Database, new_id, utcnow
from app.errors import (
    Canceled,
    GatewayError,
    InternalError,
    ModelNotAllowed,
    NoChannelAvailable,
    UnsupportedParameter,
)
from app.files.models import StoredFile
from app.files.service import FileStore
from app.generation.cancellation import outlive_caller
from app.generation.outcomes import outcome_of, status_of
from app.generation.results import AllImagesFiltered, Billing, Generated, StorageFailed
from app.generation.validate import check_capabilities, resolve_model
from app.images import GeneratedImage, ImageRequest
from app.keys.auth import Caller
from app.keys.limits import KeyLimiter, check_credit_cap
from app.observability.logs import note
from app.observability.metrics import Metrics
from app.routing.attempts import Attempt
from app.routing.router import ChannelRouter, Dispatch, Routed, RoutingFailed
from app.routing.selection import Candidate
from app.specs import CatalogSnapshot, ModelSpec

log = logging.getLogger("app.generation")


class CatalogSource(Protocol):
    """Where the current catalog comes from (the catalog cache, in the app)."""

    async def get(self) -> CatalogSnapshot: ...


# Hooks that run inside the hold / settle transactions (tasks write their rows there).
OnHold = Callable[[AsyncSession, holds.HoldTerms], Awaitable[None]]
OnSettled = Callable[[AsyncSession, Generated], Awaitable[None]]
OnFailed = Callable[[AsyncSession, str, GatewayError], Awaitable[None]]


@dataclass
class Admitted:
    """A request that passed validation and holds credits: what `execute` needs to finish it."""

    terms: holds.HoldTerms
    request: ImageRequest
    model: ModelSpec
    candidates: list[Candidate] = field(default_factory=list)


@dataclass(frozen=True)
class Finish:
    """What else must happen in the settle transaction (nothing, for a synchronous request)."""

    on_settled: OnSettled | None = None
    on_failed: OnFailed | None = None
    # Asked when the work is cancelled: True means "stop now and keep the hold, this will run
    # again" (a task whose worker is shutting down). False means the caller is gone: the hold is
    # released if nothing was sent upstream yet, and the request is finished if something was.
    requeue_on_cancel: Callable[[], bool] = lambda: False


class GenerationService:
    def __init__(
        self,
        db: Database,
        router: ChannelRouter,
        catalog: CatalogSource,
        files: FileStore,
        hold_timeout_s: float,
        metrics: Metrics,
        limiter: KeyLimiter,
    ) -> None:
        self.metrics = metrics
        self.limiter = limiter
        self.db = db
        self.router = router
        self.catalog = catalog
        self.files = files
        self.hold_timeout_s = hold_timeout_s

    async def generate(
        self,
        caller: Caller,
        request: ImageRequest,
        endpoint: str,
        *,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> Generated:
        """`request_id`: the gateway's id of the HTTP request (minted here when there is none), kept
        on the usage record, the ledger and the answer alike."""
        async with self.limited(caller):
            admitting = asyncio.ensure_future(
                self.admit(caller, request, endpoint, request_id=request_id, client_request_id=client_request_id)
            )
            try:
                admitted = await asyncio.shield(admitting)
            except asyncio.CancelledError:
                # The caller left while its hold may be committing: let that finish, then give
                # the hold back at once rather than leave it to the sweeper.
                await asyncio.wait({admitting})
                if not admitting.cancelled() and admitting.exception() is None:
                    await asyncio.shield(self._give_back(admitting.result()))
                raise
            return await self.execute(admitted)

    async def _give_back(self, admitted: Admitted) -> None:
        await self._release(admitted, "canceled", [], time.monotonic(), Canceled(), Finish())

    @asynccontextmanager
    async def limited(self, caller: Caller) -> AsyncIterator[None]:
        """The key's requests-per-minute and concurrency limits (429 when exceeded), held for as
        long as the block runs."""
        lease = await self.limiter.admit(caller)
        try:
            yield
        finally:
            await asyncio.shield(lease.release())

    async def admit(
        self,
        caller: Caller,
        request: ImageRequest,
        endpoint: str,
        *,
        hold_for: timedelta | None = None,
        on_hold: OnHold | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> Admitted:
        """Validate and hold. Raises a 4xx GatewayError (nothing held) or 402."""
        snapshot = await self.catalog.get()
        note(model=request.model)
        model, request, candidates = self._plan(snapshot, caller, request)
        note(model=model.id)
        top_multiplier = max(channel.multiplier for channel, _ in candidates)
        terms = holds.HoldTerms(
            request_id=request_id or new_id("req"),
            client_request_id=client_request_id,
            account_id=caller.account_id,
            key_id=caller.key_id,
            endpoint=endpoint,
            model=model.id,
            unit_credits=model.credits_per_image,
            model_multiplier=model.multiplier,
            images_requested=request.n,
            # Enough for the most expensive channel that could serve; settlement charges the one that did.
            hold_credits=charge(model.credits_per_image, model.multiplier, top_multiplier, request.n),
            hold_until=utcnow() + (hold_for or timedelta(seconds=self.hold_timeout_s)),
            user=request.user,
            metadata=dict(request.metadata),
            account_budget=caller.account_budget,
            key_budget=caller.key_budget,
        )
        try:
            async with self.db.transaction("normal") as session:
                if caller.credit_cap is not None:
                    await check_credit_cap(session, caller, terms.hold_credits)
                await holds.place_hold(session, terms)
                if on_hold is not None:
                    await on_hold(session, terms)
        except BudgetRefused as refused:
            # The refusal rolled its transaction back; the alert that the period is used up
            # (once per period) is written in one of its own.
            try:
                async with self.db.transaction("normal") as session:
                    await announce_refusal(session, refused)
            except Exception:  # the caller's answer is the 402 either way; the alert is best effort
                log.exception("could not queue the budget alert for a refused request")
            raise
        return Admitted(terms=terms, request=request, model=model, candidates=candidates)

    async def readmit(self, terms: holds.HoldTerms, request: ImageRequest) -> Admitted:
        """Rebuild an admitted request from its hold (a task picked up by a worker, perhaps after
        a crash). Channels are chosen afresh, but only those the held credits still cover."""
        snapshot = await self.catalog.get()
        model = resolve_model(snapshot, terms.model)
        request = with_model_options(request, model)
        able, _ = self.router.able(request, self.router.serving(snapshot, model.id))
        affordable = [
            (channel, upstream)
            for channel, upstream in able
            if charge(terms.unit_credits, terms.model_multiplier, channel.multiplier, request.n) <= terms.hold_credits
        ]
        return Admitted(terms=terms, request=request, model=model, candidates=affordable)

    async def execute(self, admitted: Admitted, finish: Finish | None = None) -> Generated:
        """Call upstream and settle the hold exactly once, whatever happens.

        A cancellation (the caller left, or canceled its task) stops the request only until an
        upstream call has gone out. After that the upstream may generate and bill whether or not
        anyone waits, so the request is finished: images stored where asked, charged once, and
        the result returned to whoever still awaits it (the idempotency record, the task row).
        Only a worker shutting down (`requeue_on_cancel`) still stops at once: its task runs again.
        """
        finish = finish or Finish()
        started = time.monotonic()
        if not admitted.candidates:
            error = NoChannelAvailable(f"No enabled channel serves {admitted.model.id} within the held credits.")
            await self._release(admitted, "failed", [], started, error, finish)
            raise error
        dispatch = Dispatch()
        routing = asyncio.ensure_future(self.router.run(admitted.request, admitted.candidates, dispatch))
        # Before anything went upstream a cancellation stops the request; once a call is out it
        # does not, except for a worker shutting down (its task runs again later).
        try:
            routed = await outlive_caller(routing, lambda: finish.requeue_on_cancel() or not dispatch.sent)
        except RoutingFailed as failed:
            await asyncio.shield(self._release(admitted, "failed", failed.attempts, started, failed.error, finish))
            raise failed.error from None
        except asyncio.CancelledError:
            if finish.requeue_on_cancel():
                raise  # the task goes back to the queue, its hold with it
            await asyncio.shield(self._release(admitted, "canceled", [], started, Canceled(), finish))
            raise
        except BaseException:
            await asyncio.shield(self._release(admitted, "failed", [], started, InternalError(), finish))
            raise
        settling = asyncio.ensure_future(self._settle(admitted, routed, started, finish))
        try:
            # Settling is one short transaction: even a shutting-down worker lets it finish.
            return await outlive_caller(settling, finish.requeue_on_cancel, stoppable=False)
        except GatewayError as error:
            await asyncio.shield(self._release(admitted, status_of(error), routed.attempts, started, error, finish))
            raise
        except asyncio.CancelledError:
            raise  # a shutting-down worker, after its settlement ended
        except BaseException:
            await asyncio.shield(self._release(admitted, "failed", routed.attempts, started, InternalError(), finish))
            raise

    def _plan(
        self, snapshot: CatalogSnapshot, caller: Caller, request: ImageRequest
    ) -> tuple[ModelSpec, ImageRequest, list[Candidate]]:
        model = resolve_model(snapshot, request.model)
        if not caller.may_use(model.id):
            raise ModelNotAllowed(f"This key may not use the model {model.id!r}.", param="model")
        check_capabilities(request, model)
        request = with_model_options(request, model)
        # The placeholder stands aside wherever a real channel maps the model (router.serving).
        served = self.router.serving(snapshot, model.id)
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
        return model, request, able

    async def _settle(self, admitted: Admitted, routed: Routed, started: float, finish: Finish) -> Generated:
        terms = admitted.terms
        delivered = len(routed.result.images)
        if delivered == 0:
            raise AllImagesFiltered(terms.request_id, routed.result.filtered_reasons)
        stored = await self._store(admitted, routed.result.images)
        channel = routed.channel
        credits = charge(terms.unit_credits, terms.model_multiplier, channel.multiplier, delivered)
        outcome = outcome_of(routed.attempts, started, routed, delivered=delivered, credits=credits)
        generated: Generated | None = None
        async with self.db.transaction("high") as session:
            balance = await holds.capture(session, terms.request_id, outcome)
            if balance is not None:
                session.add_all(stored)
                generated = Generated(
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
                    files=stored,
                    placeholder=routed.placeholder,
                )
                if finish.on_settled is not None:
                    await finish.on_settled(session, generated)
        if generated is None:
            await self.files.discard(stored)
            raise RuntimeError(f"hold {terms.request_id} ended before settlement")
        self.metrics.settled(terms.model, channel.name, delivered, credits)
        note(channel=channel.name, images=delivered, credits=render(credits))
        return generated

    async def _store(self, admitted: Admitted, images: list[GeneratedImage]) -> list[StoredFile]:
        if admitted.request.response_format != "url" and not admitted.request.keep_files:
            return []
        try:
            return await self.files.write(images, admitted.terms.account_id, admitted.terms.request_id)
        except (OSError, ValueError) as exc:
            log.exception("storing images failed", extra={"request_id": admitted.terms.request_id})
            raise StorageFailed(f"The images could not be stored ({type(exc).__name__}); nothing was charged.") from exc

    async def _release(
        self,
        admitted: Admitted,
        status: str,
        attempts: list[Attempt],
        started: float,
        error: GatewayError,
        finish: Finish,
    ) -> None:
        outcome = outcome_of(attempts, started, None, error_code=error.code)
        note(channel=outcome.channel_name)  # the channel last called, for the access line
        async with self.db.transaction("high") as session:
            released = await holds.release(session, admitted.terms.request_id, status, outcome)
            if released and finish.on_failed is not None:
                await finish.on_failed(session, status, error)
        if released:
            self.metrics.ended(admitted.terms.model, status)


def with_model_options(request: ImageRequest, model: ModelSpec) -> ImageRequest:
    """The request carrying its catalog model's provider options (Ideogram's rendering speed…),
    taken from the model as it is now: set before adapters judge the request, so a channel that
    cannot honour an option is refused before any hold."""
    if request.options == model.options:
        return request
    return dataclasses.replace(request, options=dict(model.options))
