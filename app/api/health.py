from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.http.deps import GatewayDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database (and Redis, when configured) is reachable", response_model=None)
async def readyz(gateway: GatewayDep) -> JSONResponse:
    checks: dict[str, str] = {}
    try:
        async with gateway.db.sessions() as session:
            await session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:  # any failure means "not ready"; its type helps the operator
        checks["database"] = type(exc).__name__
    if gateway.redis is not None:
        try:
            await gateway.redis.ping()
            checks["redis"] = "ok"
        except Exception as exc:
            checks["redis"] = type(exc).__name__
    ready = all(value == "ok" for value in checks.values())
    return JSONResponse({"status": "ok" if ready else "unavailable", **checks}, status_code=200 if ready else 503)
