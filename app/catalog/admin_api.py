"""Admin routes for the catalog (models) and the channels that serve it."""

from __future__ import annotations

from fastapi import APIRouter, Response
from pydantic import BaseModel

from app.api.deps import AdminSession
from app.catalog import service
from app.catalog.schemas import ChannelCreate, ChannelFields, ChannelOut, ModelIn, ModelOut
from app.errors import InvalidValue

router = APIRouter(prefix="/admin", tags=["admin: catalog"])


class ModelList(BaseModel):
    data: list[ModelOut]


class ChannelList(BaseModel):
    data: list[ChannelOut]


@router.get("/models", response_model=ModelList)
async def list_models(session: AdminSession) -> ModelList:
    return ModelList(data=[ModelOut.of(row) for row in await service.list_models(session)])


@router.put("/models/{model_id}", response_model=ModelOut)
async def put_model(model_id: str, body: ModelIn, session: AdminSession, response: Response) -> ModelOut:
    if not model_id or len(model_id) > 120:
        raise InvalidValue("model id must be 1–120 characters", param="id")
    row, created = await service.put_model(session, model_id, body.model_dump())
    if created:
        response.status_code = 201
    return ModelOut.of(row)


@router.get("/channels", response_model=ChannelList)
async def list_channels(session: AdminSession) -> ChannelList:
    return ChannelList(data=[ChannelOut.of(row) for row in await service.list_channels(session)])


@router.post("/channels", status_code=201, response_model=ChannelOut)
async def create_channel(body: ChannelCreate, session: AdminSession) -> ChannelOut:
    fields = body.changes()
    fields.setdefault("auth", {})
    return ChannelOut.of(await service.create_channel(session, fields))


@router.get("/channels/{channel_id}", response_model=ChannelOut)
async def get_channel(channel_id: str, session: AdminSession) -> ChannelOut:
    return ChannelOut.of(await service.get_channel(session, channel_id))


@router.patch("/channels/{channel_id}", response_model=ChannelOut)
async def update_channel(channel_id: str, body: ChannelFields, session: AdminSession) -> ChannelOut:
    return ChannelOut.of(await service.update_channel(session, channel_id, body.changes()))


@router.delete("/channels/{channel_id}", status_code=204)
async def delete_channel(channel_id: str, session: AdminSession) -> Response:
    await service.delete_channel(session, channel_id)
    return Response(status_code=204)
