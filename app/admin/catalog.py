"""Admin routes for the catalog (models) and the channels that serve it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.admin.catalog_schemas import (
    ChannelCreate,
    ChannelFields,
    ChannelHealthOut,
    ChannelOut,
    ChannelTestIn,
    ChannelTestOut,
    ModelIn,
    ModelOut,
    ModelPatch,
)
from app.admin.types import Text
from app.catalog import service
from app.errors import InvalidValue
from app.http.deps import AdminGateway, AdminSession
from app.routing.health import HealthStore, HealthView

router = APIRouter(prefix="/admin", tags=["admin: catalog"])


class ModelList(BaseModel):
    data: list[ModelOut]


class ChannelList(BaseModel):
    data: list[ChannelOut]


@router.get("/models", response_model=ModelList)
async def list_models(session: AdminSession) -> ModelList:
    return ModelList(data=[ModelOut.of(row) for row in await service.list_models(session)])


@router.put(
    "/models/{model_id}",
    response_model=ModelOut,
    responses={201: {"model": ModelOut, "description": "Created."}},
    description=(
        "Create (201) or replace (200) a model. A new model needs only `credits_per_image`; the other "
        "fields take their defaults. Replacing an existing model needs every writable field (send it back "
        "as `GET /admin/models` returns it): a partial body is a 400 naming the missing fields, so it can "
        "never wipe aliases, sizes or parameters. To change some fields, use `PATCH`."
    ),
)
async def put_model(model_id: Text, body: ModelIn, session: AdminSession, response: Response) -> ModelOut:
    if not model_id or len(model_id) > 120:
        raise InvalidValue("model id must be 1–120 characters", param="id")
    row, created = await service.put_model(session, model_id, body.fields(), missing=body.missing())
    if created:
        response.status_code = 201
    return ModelOut.of(row)


@router.patch(
    "/models/{model_id}",
    response_model=ModelOut,
    description=(
        "Change only the fields sent; the others keep their values. `model_id` is the model's id or one "
        "of its aliases. Read-only fields of the GET answer (`id`, `object`, `updated_at`) are ignored; "
        "an unknown field, `null`, or an empty body is a 400 naming it; an unknown model is a 404."
    ),
)
async def patch_model(model_id: Text, body: ModelPatch, session: AdminSession) -> ModelOut:
    return ModelOut.of(await service.patch_model(session, model_id, body.changes()))


async def _live_health(health: HealthStore, channel_ids: list[str]) -> dict[str, ChannelHealthOut]:
    now = time.time()
    states = await health.states(channel_ids)
    return {cid: _health_out(HealthView.of(state, now)) for cid, state in states.items()}


def _health_out(view: HealthView) -> ChannelHealthOut:
    return ChannelHealthOut(
        state=view.state,
        consecutive_failures=view.consecutive_failures,
        success_rate=view.success_rate,
        latency_ms_p50=view.latency_ms_p50,
        last_error=view.last_error,
        last_error_at=_when(view.last_error_at),
        retry_at=_when(view.retry_at),
    )


def _when(epoch: float | None) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch is not None else None


@router.get("/channels", response_model=ChannelList)
async def list_channels(session: AdminSession, gateway: AdminGateway) -> ChannelList:
    rows = await service.list_channels(session)
    health = await _live_health(gateway.health, [row.id for row in rows])
    return ChannelList(data=[ChannelOut.of(row, health.get(row.id)) for row in rows])


@router.post("/channels", status_code=201, response_model=ChannelOut)
async def create_channel(body: ChannelCreate, session: AdminSession, gateway: AdminGateway) -> ChannelOut:
    fields = body.changes()
    fields.setdefault("auth", {})
    return ChannelOut.of(await service.create_channel(session, gateway.secrets, fields))


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: Text, session: AdminSession, gateway: AdminGateway) -> ChannelOut:
    row = await service.get_channel(session, channel_id)
    health = await _live_health(gateway.health, [row.id])
    return ChannelOut.of(row, health.get(row.id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
async def update_channel(
    channel_id: Text, body: ChannelFields, session: AdminSession, gateway: AdminGateway
) -> ChannelOut:
    return ChannelOut.of(await service.update_channel(session, gateway.secrets, channel_id, body.changes()))


@router.post(
    "/channels/{channel_id}/test",
    response_model=ChannelTestOut,
    description=(
        "One real one-image generation through this channel alone (no failover), also while it is "
        "disabled, so it can be checked before it takes traffic. `model` (a catalog id or alias the "
        "channel maps) defaults to the first model it maps; one it does not map is a 400. Charged to "
        "no account, the image is neither stored nor returned, and the channel's circuit breaker and "
        "auto-disable count are left alone; the provider bills the call, so it is recorded as an "
        "upstream attempt without a request id (attempts export, reconciliation). An upstream "
        "failure is a 200 with `ok: false`, its `http_status` and its `error` (credentials removed)."
    ),
)
async def run_channel_test(
    channel_id: Text, gateway: AdminGateway, body: ChannelTestIn | None = None
) -> ChannelTestOut:
    # No admin session: nothing may hold a transaction open across the upstream call.
    result = await gateway.channel_tests.test(channel_id, body.model if body else None)
    return ChannelTestOut(
        ok=result.ok,
        latency_ms=result.latency_ms,
        http_status=result.http_status,
        error=result.error,
        images=result.images,
    )


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: Text, session: AdminSession) -> Response:
    await service.delete_channel(session, channel_id)
    return Response(status_code=204)
