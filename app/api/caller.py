"""Caller routes besides generation: the models a key may use, and the key's account."""

from __future__ import annotations

from fastapi import APIRouter, Request

from app.accounts.service import get_account
from app.api.schemas import ERROR_RESPONSES, AccountInfo, AccountRef, KeyRef, ModelInfo, ModelList
from app.billing.amounts import render
from app.keys.auth import authenticate
from app.runtime import gateway_of

router = APIRouter(tags=["caller"])


async def list_models(request: Request) -> ModelList:
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request)
    snapshot = await gateway.catalog.get()
    data = []
    for spec in sorted(snapshot.models.values(), key=lambda m: m.id):
        if not spec.enabled or not caller.may_use(spec.id):
            continue
        providers = {channel.provider for channel, _ in snapshot.channels_for(spec.id)}
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
                placeholder=providers == {"local"},
            )
        )
    return ModelList(data=data)


async def account_info(request: Request) -> AccountInfo:
    gateway = gateway_of(request)
    caller = await authenticate(gateway.keys, request)
    async with gateway.db.sessions() as session:
        account = await get_account(session, caller.account_id)
    return AccountInfo(
        account=AccountRef(id=account.id, name=account.name),
        key=KeyRef(id=caller.key_id, name=caller.key_name, prefix=caller.prefix),
        balance=render(account.balance),
        held=render(account.held),
        available=render(account.balance - account.held),
    )


for _prefix in ("/v1", "/api/v1"):
    router.add_api_route(
        f"{_prefix}/models",
        list_models,
        methods=["GET"],
        response_model=ModelList,
        responses=ERROR_RESPONSES,
        summary="Models this key may use",
        include_in_schema=_prefix == "/v1",
    )
    router.add_api_route(
        f"{_prefix}/account",
        account_info,
        methods=["GET"],
        response_model=AccountInfo,
        responses=ERROR_RESPONSES,
        summary="The calling key and its account's credits",
        include_in_schema=_prefix == "/v1",
    )
