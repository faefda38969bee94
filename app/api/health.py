from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.runtime import gateway_of

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="The database is reachable", response_model=None)
async def readyz(request: Request) -> JSONResponse:
    gateway = gateway_of(request)
    try:
        async with gateway.db.sessions() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:  # any failure means "not ready"; the reason helps the operator
        return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
    return JSONResponse({"status": "ok", "database": "ok"})
