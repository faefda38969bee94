"""Caller routes besides generation: the models a key may use, the key's account, the account's
own usage, and rotating its webhook secret."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from app.admin.types import Instant, Text
from app.api.schemas import (
    ERROR_RESPONSES,
    AccountInfo,
    AccountRef,
    BudgetInfo,
    KeyRef,
    ModelInfo,
    ModelList,
    OwnUsage,
    OwnUsageRow,
    OwnUsageTotals,
    WebhookSecretRotated,
)
from app.billing.accounts import get_account, rotate_webhook_secret
from app.billing.amounts import render
from app.billing.budget_settings import current_budget
from app.billing.budgets import BudgetStatus
from app.billing.usage_report import UsageTotals, check_range, parse_group_by, usage_report
from app.db import utcnow
from app.errors import InvalidValue
from app.http.aliases import add_caller_route
from app.http.deps import GatewayDep
from app.http.query_params import OnlyKnownQuery
from app.keys.auth import Caller, authenticate
from app.keys.models import ApiKey
from app.keys.service import get_key

router = APIRouter(tags=["caller"])

# What a team may group its own usage by. Channels, providers and upstream models are how the
# gateway serves it, not the team's business (and `account` is always the caller's own).
OWN_GROUPINGS = ("model", "day", "month", "key", "user", "status")


async def authenticated_caller(request: Request, gateway: GatewayDep) -> Caller:
    """The calling key, as a dependency: listed first, so a missing key is a 401 before any
    parameter is looked at."""
    return await authenticate(gateway.keys, request)


CallerDep = Annotated[Caller, Depends(authenticated_caller)]
# The key first, then the parameters: a misspelt one is a 400 naming it.
CALLER_CHECKED = [Depends(authenticated_caller), OnlyKnownQuery]


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


async def own_usage(
    caller: CallerDep,
    gateway: GatewayDep,
    start: Annotated[
        Instant | None, Query(description="Requests created at or after this instant (ISO 8601; naive means UTC).")
    ] = None,
    end: Annotated[
        Instant | None, Query(description="Requests created before this instant (ISO 8601; naive means UTC).")
    ] = None,
    group_by: Annotated[
        Text | None, Query(description=f"Comma-separated, any of: {', '.join(OWN_GROUPINGS)}. Empty: totals only.")
    ] = None,
) -> OwnUsage:
    groups = _own_groups(group_by)
    start, end = check_range(start, end)
    async with gateway.db.sessions() as session:
        report = await usage_report(session, start=start, end=end, group_by=groups, account_id=caller.account_id)
        key_names: dict[str, str] = {}
        if "key" in groups:  # the account's own keys: a handful of rows, whatever the traffic
            found = await session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.account_id == caller.account_id))
            key_names = {key_id: name for key_id, name in found.all()}
    rows = []
    for row in report.rows:
        named = {"key_name": key_names.get(row.groups["key_id"] or "")} if "key" in groups else {}
        # model_validate marks only these fields as set: the answer leaves the others out.
        rows.append(OwnUsageRow.model_validate({**row.groups, **named, **_measures(row.totals)}))
    return OwnUsage(rows=rows, totals=OwnUsageTotals.model_validate(_measures(report.totals)))


def _own_groups(value: str | None) -> tuple[str, ...]:
    """`"model,day"` → `("model", "day")`; a grouping callers may not use, known or not, is a 400."""
    for part in (value or "").split(","):
        name = part.strip().lower()
        if name and name not in OWN_GROUPINGS:
            raise InvalidValue(
                f"group_by {name[:40]!r} is not available; use any of {', '.join(OWN_GROUPINGS)} (comma-separated).",
                param="group_by",
            )
    return parse_group_by(value)


def _measures(totals: UsageTotals) -> dict[str, object]:
    # Upstream cost, revenue and margin are the gateway's own economics: never shown to callers.
    return {"requests": totals.requests, "images": totals.images, "credits": render(totals.credits)}


async def rotate_secret(caller: CallerDep, gateway: GatewayDep) -> WebhookSecretRotated:
    async with gateway.db.transaction() as session:
        account, previous_valid_until = await rotate_webhook_secret(session, caller.account_id)
        secret = account.webhook_secret
    return WebhookSecretRotated(webhook_secret=secret, previous_valid_until=previous_valid_until)


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
add_caller_route(
    router,
    "/usage",
    own_usage,
    method="GET",
    response_model=OwnUsage,
    response_model_exclude_unset=True,
    dependencies=CALLER_CHECKED,
    summary="This key's account's usage, grouped",
    responses=ERROR_RESPONSES,
    description=(
        "Requests, images and credits of the calling key's account created in [start, end), grouped by any of "
        f"`{', '.join(OWN_GROUPINGS)}` (comma-separated): the rows of `GET /admin/usage` for this account alone, "
        "without the gateway's upstream cost, revenue and margin. `requests` counts requests in any status; "
        "`images` and `credits` only what was delivered and charged. Grouping by channel, provider, upstream "
        "model or account is refused (400 naming `group_by`), as is an unknown parameter."
    ),
)
add_caller_route(
    router,
    "/account/webhook-secret/rotate",
    rotate_secret,
    method="POST",
    response_model=WebhookSecretRotated,
    summary="Replace the account's webhook secret; the old one keeps signing for 24 hours",
    responses=ERROR_RESPONSES,
    description=(
        "Any key of the account may rotate it. From now on callbacks are signed with the new secret, and until "
        "`previous_valid_until` (24 hours) also with the one it replaced, two signatures in one header "
        "(`webhook-signature: v1,<new> v1,<old>`, as Standard Webhooks allows), so receivers can switch without "
        "rejecting any. Rotating again within the 24 hours replaces the previous secret by the one in use just "
        "before: only the secret of the latest rotation and the one it replaced are ever valid."
    ),
)
