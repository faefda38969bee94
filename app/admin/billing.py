"""Admin routes for reconciliation: usage totals, the per-request CSV export and the ledger check."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from app.admin.types import Credits, Instant, Text
from app.billing.attempt_export import export_attempts_csv
from app.billing.ledger_check import check_ledger
from app.billing.usage_export import export_csv
from app.billing.usage_report import GROUPINGS, UsageReport, check_range, parse_group_by, usage_report
from app.http.deps import AdminGateway

router = APIRouter(prefix="/admin", tags=["admin: billing"])

Start = Annotated[
    Instant | None, Query(description="Requests created at or after this instant (ISO 8601; naive means UTC).")
]
End = Annotated[Instant | None, Query(description="Requests created before this instant (ISO 8601; naive means UTC).")]
AccountFilter = Annotated[Text | None, Query(description="Only this account's requests.")]


class LedgerCheck(BaseModel):
    ok: bool
    problems: list[str]


class UsageTotalsOut(BaseModel):
    requests: int = Field(description="Requests created in the range, in any status (still pending included).")
    images: int = Field(description="Images delivered by succeeded requests.")
    credits: Credits = Field(description="Credits charged: the ledger's charges for these requests, negated.")


class UsageGroup(BaseModel):
    account_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    channel: str | None = Field(None, description="Name of the channel that served, as recorded.")
    day: str | None = Field(None, description="UTC date the request was created, YYYY-MM-DD.")


class UsageRowOut(UsageTotalsOut, UsageGroup):
    """One group: only the fields named in `group_by` appear (`channel` is null for requests that
    never reached a channel), then the group's totals."""


class UsageReportOut(BaseModel):
    rows: list[UsageRowOut]
    totals: UsageTotalsOut

    @classmethod
    def of(cls, report: UsageReport) -> UsageReportOut:
        # model_validate marks only the grouped fields as set, so exclude_unset drops the others.
        return cls(
            rows=[UsageRowOut.model_validate({**row.groups, **asdict(row.totals)}) for row in report.rows],
            totals=UsageTotalsOut.model_validate(asdict(report.totals)),
        )


@router.get("/usage", response_model=UsageReportOut, response_model_exclude_unset=True)
async def usage(
    gateway: AdminGateway,
    start: Start = None,
    end: End = None,
    group_by: Annotated[
        Text | None, Query(description=f"Comma-separated, any of: {', '.join(GROUPINGS)}. Empty: totals only.")
    ] = None,
    account_id: AccountFilter = None,
) -> UsageReportOut:
    groups = parse_group_by(group_by)
    start, end = check_range(start, end)
    async with gateway.db.sessions() as session:
        report = await usage_report(session, start=start, end=end, group_by=groups, account_id=account_id)
    return UsageReportOut.of(report)


@router.get(
    "/usage/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One CSV row per request."}},
)
async def usage_export(
    gateway: AdminGateway,
    start: Start = None,
    end: End = None,
    account_id: AccountFilter = None,
) -> StreamingResponse:
    start, end = check_range(start, end)
    return StreamingResponse(
        export_csv(gateway.db, start, end, account_id),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="usage.csv"'},
    )


@router.get(
    "/attempts/export",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One CSV row per upstream attempt."}},
    summary="Every upstream attempt, for reconciling a provider's invoice",
    description=(
        "One row per call to an upstream channel that started in [start, end): the request, its "
        "account and model, the channel, provider and upstream model, outcome, HTTP status, images "
        "returned and `possibly_billed` (the provider may have charged for it)."
    ),
)
async def attempts_export(gateway: AdminGateway, start: Start = None, end: End = None) -> StreamingResponse:
    start, end = check_range(start, end)
    return StreamingResponse(
        export_attempts_csv(gateway.db, start, end),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="attempts.csv"'},
    )


@router.get("/ledger/check", response_model=LedgerCheck)
async def ledger_check(gateway: AdminGateway) -> LedgerCheck:
    async with gateway.db.sessions() as session:
        problems = await check_ledger(session, gateway.settings.hold_timeout_s)
    return LedgerCheck(ok=not problems, problems=problems)
