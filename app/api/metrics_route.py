"""`GET /metrics`: Prometheus exposition, optionally behind a bearer token."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST

from app.api.gauges import read_gauges
from app.errors import MetricsUnauthorized
from app.http.deps import GatewayDep

router = APIRouter(tags=["operations"])


@router.get("/metrics", summary="Prometheus metrics of this process", response_class=Response)
async def metrics(request: Request, gateway: GatewayDep) -> Response:
    require_metrics_token(request, gateway.settings.metrics_token)
    snapshot = await gateway.catalog.get()
    channels = {channel.id: channel.name for channel in snapshot.channels}
    await read_gauges(gateway.metrics, gateway.db, gateway.health, channels)
    return Response(gateway.metrics.exposition(), media_type=CONTENT_TYPE_LATEST)


def require_metrics_token(request: Request, token: str | None) -> None:
    """With GATEWAY_METRICS_TOKEN set, a scrape must present it: metrics name channels, models
    and traffic. The comparison takes the same time however much of the token matches."""
    if token is None:
        return
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(presented.strip().encode(), token.encode()):
        raise MetricsUnauthorized(
            "Missing or wrong metrics token (Authorization: Bearer $GATEWAY_METRICS_TOKEN).",
            headers={"www-authenticate": "Bearer"},
        )
