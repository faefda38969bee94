"""Admin routes for the catalog (models) and the channels that serve it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.admin.catalog_schemas import ChannelCreate, ChannelFields, ChannelHealthOut, ChannelOut, ModelIn, ModelOut
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


@router.put("/models/{model_id}", response_model=ModelOut)
async def put_model(model_id: Text, body: ModelIn, session: AdminSession, response: Response) -> ModelOut:
    if not model_id or len(model_id) > 120:
        raise InvalidValue("model id must be 1–120 characters", param="id")
    row, created = await service.put_model(session, model_id, body.model_dump())
    if created:
        response.status_code = 201
    return ModelOut.of(row)


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


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: Text, session: AdminSession) -> Response:
    await service.delete_channel(session, channel_id)
    return Response(status_code=204)
