"""Caller routes besides generation: the models a key may use, and the key's account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.api.schemas import ERROR_RESPONSES, AccountInfo, AccountRef, BudgetInfo, KeyRef, ModelInfo, ModelList
from app.billing.accounts import get_account
from app.billing.amounts import render
from app.billing.budget_settings import current_budget
from app.billing.budgets import BudgetStatus
from app.db import utcnow
from app.http.aliases import add_caller_route
from app.http.deps import GatewayDep
from app.keys.auth import authenticate
from app.keys.service import get_key

router = APIRouter(tags=["caller"])


async def list_models(request: Request, gateway: GatewayDep) -> ModelList:
    caller = await authenticate(gateway.keys, request)
    snapshot = await gateway.catalog.get()
    data = []
    for spec in sorted(snapshot.models.values(), key=lambda m: m.id):
        if not spec.enabled or not caller.may_use(spec.id):
            continue
        # Only what a request could be routed to: a model no channel can serve is not offered.
        serving = gateway.router.serving(snapshot, spec.id)
        if not serving:
            continue
        data.append(
            ModelInfo(
                id=spec.id,
                credits_per_image=render(spec.credits_per_image),
                multiplier=render(spec.multiplier),
                aliases=list(spec.aliases),
                max_images=spec.max_images,
                aspect_ratios=list(spec.aspect_ratios),
                image_sizes=list(spec.image_sizes),
                parameters=list(spec.parameters),
                description=spec.description,
                placeholder=all(gateway.router.is_placeholder(channel) for channel, _ in serving),
            )
        )
    return ModelList(data=data)


async def account_info(request: Request, gateway: GatewayDep) -> AccountInfo:
    caller = await authenticate(gateway.keys, request)
    now = utcnow()
    async with gateway.db.sessions() as session:
        account = await get_account(session, caller.account_id)
        key = await get_key(session, caller.key_id)
        account_budget = await current_budget(session, account, account.id, now)
        key_budget = await current_budget(session, key, key.id, now)
    return AccountInfo(
        account=AccountRef(id=account.id, name=account.name),
        key=KeyRef(id=caller.key_id, name=caller.key_name, prefix=caller.prefix),
        balance=render(account.balance),
        held=render(account.held),
        available=render(account.balance - account.held),
        webhook_secret=account.webhook_secret,
        budget=_budget_info(account_budget),
        key_budget=_budget_info(key_budget),
    )


def _budget_info(status: BudgetStatus | None) -> BudgetInfo | None:
    if status is None:
        return None
    return BudgetInfo(
        credits=render(status.credits),
        period=status.period,
        spent=render(status.spent),
        remaining=render(status.remaining),
        resets_at=status.resets_at,
    )


add_caller_route(
    router,
    "/models",
    list_models,
    method="GET",
    response_model=ModelList,
    summary="Models this key may use",
    responses=ERROR_RESPONSES,
)
add_caller_route(
    router,
    "/account",
    account_info,
    method="GET",
    response_model=AccountInfo,
    summary="The calling key, its account's credits, budgets and webhook secret",
    responses=ERROR_RESPONSES,
)
