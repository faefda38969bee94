from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.runtime import gateway_of

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
async def metrics(request: Request) -> Response:
    gateway = gateway_of(request)
    snapshot = await gateway.catalog.get()
    channels = {channel.id: channel.name for channel in snapshot.channels}
    body = await gateway.metrics.render(gateway.db, gateway.health, channels)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
