"""Admin routes for reconciliation: usage totals, the per-request CSV export and the ledger check."""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel

from app.admin.types import Instant, Text
from app.admin.usage_schemas import UsageReportOut, usage_csv, usage_report_out
from app.billing.attempt_export import export_attempts_csv
from app.billing.ledger_check import check_ledger
from app.billing.ledger_export import export_ledger_csv, ledger_account
from app.billing.usage_export import export_csv
from app.billing.usage_report import GROUPINGS, check_range, month_range, parse_group_by, usage_report
from app.errors import InvalidValue
from app.http.deps import AdminGateway
from app.http.query_params import OnlyKnownQuery

router = APIRouter(prefix="/admin", tags=["admin: billing"])

Start = Annotated[
    Instant | None, Query(description="Requests created at or after this instant (ISO 8601; naive means UTC).")
]
End = Annotated[Instant | None, Query(description="Requests created before this instant (ISO 8601; naive means UTC).")]
AccountFilter = Annotated[Text | None, Query(description="Only this account's requests.")]
Month = Annotated[
    Text | None,
    Query(
        description="A UTC month, YYYY-MM: shorthand for start and end at its first and the next month's first instant."
    ),
]
# The admin guard first (the very dependency of the AdminGateway parameter, so it runs once), then
# the query: a misspelt parameter is a 400 naming it, not an answer to a question nobody asked.
CHECKED = [get_args(AdminGateway)[1], OnlyKnownQuery]


class LedgerCheck(BaseModel):
    ok: bool
    problems: list[str]


USAGE_DESCRIPTION = """Requests, images and credits created in [start, end), grouped by any of the
`group_by` values, with what the upstreams cost and the margin.

- `requests` counts requests in any status; `images` and `credits` only what was delivered and
  charged, so `totals.credits` equals the ledger's charges for these requests, negated.
- `upstream_cost` sums the `upstream_cost` of every upstream attempt of these requests (the
  provider's own reported cost when it sends one, else the channel's `costs` for the upstream
  model × images the upstream returned; failed-over attempts included). Grouped by `channel`, `provider` or `upstream_model`, an attempt counts under its own
  channel, provider and upstream model, so a group may have a cost and no requests.
- `revenue` = credits × GATEWAY_CREDIT_VALUE; `margin` = revenue − upstream_cost (exact decimal
  strings, in the providers' currency).
- Rows name what they group: `account_name`, `key_name`, `channel_name` (current names) next to
  the ids; `channel` is the channel's name as recorded on the request.
- `format=csv` gives the same rows as CSV (grouped fields, then the measures; without `group_by`,
  the totals as its one row). `month=2026-12` means `start=2026-12-01&end=2027-01-01`.
- Unknown parameters are a 400 naming them.
"""


@router.get(
    "/usage",
    response_model=UsageReportOut,
    response_model_exclude_unset=True,
    dependencies=CHECKED,
    summary="Usage, upstream cost and margin, grouped",
    description=USAGE_DESCRIPTION,
    responses={200: {"content": {"text/csv": {}}, "description": "The report (JSON, or CSV with format=csv)."}},
)
async def usage(
    gateway: AdminGateway,
    start: Start = None,
    end: End = None,
    month: Month = None,
    group_by: Annotated[
        Text | None, Query(description=f"Comma-separated, any of: {', '.join(GROUPINGS)}. Empty: totals only.")
    ] = None,
    account_id: AccountFilter = None,
    output: Annotated[Literal["json", "csv"], Query(alias="format", description="json (default) or csv.")] = "json",
) -> UsageReportOut | Response:
    groups = parse_group_by(group_by)
    if month is not None:
        if start is not None or end is not None:
            raise InvalidValue("Give either month or start/end, not both.", param="month")
        start, end = month_range(month)
    start, end = check_range(start, end)
    async with gateway.db.sessions() as session:
        report = await usage_report(
            session,
            start=start,
            end=end,
            group_by=groups,
            account_id=account_id,
            credit_value=gateway.settings.credit_value,
        )
        out = await usage_report_out(session, report)
    if output == "csv":
        return Response(
            usage_csv(out, groups),
            media_type="text/csv",
            headers={"content-disposition": 'attachment; filename="usage-report.csv"'},
        )
    return out


@router.get(
    "/usage/export",
    response_class=StreamingResponse,
    dependencies=CHECKED,
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
    dependencies=CHECKED,
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


@router.get(
    "/ledger/export",
    response_class=StreamingResponse,
    dependencies=CHECKED,
    responses={200: {"content": {"text/csv": {}}, "description": "One CSV row per ledger entry."}},
    summary="The ledger as CSV: grants, adjustments and charges",
    description=(
        "Every ledger entry created in [start, end), oldest first: `id, created_at, account_id, "
        "account_name, kind, amount, balance_after, request_id, note, actor`. A charge names its "
        "request; a grant or adjustment its note and actor. `account` (an id or a name) keeps one "
        "account's entries; an unknown one is a 404."
    ),
)
async def ledger_export(
    gateway: AdminGateway,
    start: Annotated[Instant | None, Query(description="Entries created at or after this instant (ISO 8601).")] = None,
    end: Annotated[Instant | None, Query(description="Entries created before this instant (ISO 8601).")] = None,
    account: Annotated[Text | None, Query(max_length=200, description="An account id or name.")] = None,
) -> StreamingResponse:
    start, end = check_range(start, end)
    account_id = None
    if account is not None:
        async with gateway.db.sessions() as session:
            account_id = await ledger_account(session, account)
    return StreamingResponse(
        export_ledger_csv(gateway.db, start, end, account_id),
        media_type="text/csv",
        headers={"content-disposition": 'attachment; filename="ledger.csv"'},
    )
