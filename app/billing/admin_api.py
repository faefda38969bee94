"""Admin routes for reconciliation: the per-request CSV export and the ledger check."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from app.api.deps import AdminGateway
from app.billing.ledger_check import check_ledger
from app.billing.usage_export import export_csv

router = APIRouter(prefix="/admin", tags=["admin: billing"])


class LedgerCheck(BaseModel):
    ok: bool
    problems: list[str]


@router.get(
    "/usage/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One CSV row per request."}},
)
async def usage_export(
    gateway: AdminGateway,
    start: datetime | None = None,
    end: datetime | None = None,
    account_id: str | None = None,
) -> StreamingResponse:
    return StreamingResponse(
        export_csv(gateway.db, start, end, account_id),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="usage.csv"'},
    )


@router.get("/ledger/check", response_model=LedgerCheck)
async def ledger_check(gateway: AdminGateway) -> LedgerCheck:
    async with gateway.db.sessions() as session:
        problems = await check_ledger(session, gateway.settings.hold_timeout_s)
    return LedgerCheck(ok=not problems, problems=problems)
