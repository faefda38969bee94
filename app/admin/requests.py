"""Admin routes for the request log: search requests, and read one with its upstream attempts.

Answers "which requests of team X failed since 10:00, on which channel, and which of those may the
provider bill us for" from one call: every request comes with its attempts and their
`possibly_billed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.types import Credits, Instant, Text
from app.billing import request_log
from app.billing.models import UpstreamAttempt, UsageRecord
from app.billing.request_log import Cursor, RequestFilters
from app.billing.usage_report import check_range
from app.catalog.models import Channel
from app.errors import NotFound
from app.http.deps import AdminGateway
from app.keys.models import ApiKey
from app.tasks.models import Task

router = APIRouter(prefix="/admin", tags=["admin: request log"])

# The usage record's statuses (pending while its hold is open).
Status = Literal["pending", "succeeded", "failed", "filtered", "canceled", "expired"]


class RequestSearch(BaseModel):
    """The filters of `GET /admin/requests`; every one given must match."""

    model_config = ConfigDict(extra="forbid")
    account: Text | None = Field(None, max_length=200, description="Account id or name.")
    key: Text | None = Field(None, max_length=40, description="Gateway key id.")
    model: Text | None = Field(None, max_length=120, description="Catalog model id.")
    channel: Text | None = Field(
        None,
        max_length=200,
        description="Channel id or name: the channel that served, or for a failed request the one it called last.",
    )
    status: Status | None = None
    error_code: Text | None = Field(None, max_length=60, description="The request's error code, e.g. upstream_timeout.")
    user: Text | None = Field(None, max_length=200, description="The caller's `user` field.")
    client_request_id: Text | None = Field(None, max_length=128, description="The caller's X-Client-Request-Id.")
    start: Instant | None = Field(None, description="Created at or after this instant (ISO 8601; naive means UTC).")
    end: Instant | None = Field(None, description="Created before this instant (ISO 8601; naive means UTC).")
    limit: int = Field(50, ge=1, le=500)
    cursor: Text | None = Field(None, max_length=400, description="`next_cursor` of the previous page.")


class AttemptOut(BaseModel):
    n: int = Field(description="1 for the request's first upstream call.")
    channel: str = Field(description="The channel's name when the call was made.")
    channel_id: str
    provider: str
    upstream_model: str
    started_at: datetime
    latency_ms: int
    outcome: Literal["succeeded", "failed", "ambiguous", "rejected"]
    http_status: int | None
    error_code: str | None = Field(description="The upstream's own error code, else the gateway's classification.")
    error: str | None = Field(description="The upstream's message, secrets removed.")
    images: int = Field(description="Images the upstream returned, filtered ones included where known.")
    possibly_billed: bool = Field(
        description="The upstream may have charged for this call: it succeeded, or it timed out or broke off "
        "after the request was sent."
    )
    upstream_cost: Credits | None = Field(
        description="What the call cost upstream: the provider's own figure when it reports one (xAI's "
        "usage.cost_in_usd_ticks), else the channel's cost table."
    )
    usage: dict[str, Any] | None = Field(None, description="The provider's usage block for the call, as it sent it.")


class RequestOut(BaseModel):
    id: str
    created_at: datetime
    completed_at: datetime | None
    status: Status
    error_code: str | None
    account_id: str
    account_name: str | None
    key_id: str
    key_name: str | None
    task_id: str | None = Field(description="The task, for an asynchronous request.")
    client_request_id: str | None
    user: str | None
    endpoint: str
    model: str
    channel: str | None = Field(description="The channel that served; for a failed request, the one called last.")
    channel_id: str | None
    provider: str | None
    upstream_model: str | None
    images_requested: int
    images_delivered: int
    unit_credits: Credits
    model_multiplier: Credits
    channel_multiplier: Credits | None
    hold_credits: Credits
    credits: Credits = Field(description="Credits charged (0 unless it succeeded).")
    latency_ms: int | None
    metadata: dict[str, str]
    possibly_billed: bool = Field(description="Some attempt of this request may be billed by its provider.")
    attempts: list[AttemptOut]


class RequestPage(BaseModel):
    data: list[RequestOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")


@router.get("/requests", response_model=RequestPage)
async def list_requests(gateway: AdminGateway, search: Annotated[RequestSearch, Query()]) -> RequestPage:
    """Requests newest first, filtered; each with its upstream attempts."""
    start, end = check_range(search.start, search.end)
    after = Cursor.decode(search.cursor) if search.cursor is not None else None
    async with gateway.db.sessions() as session:
        filters = RequestFilters(
            account_id=await request_log.account_id_of(session, search.account) if search.account else None,
            key_id=search.key,
            model=search.model,
            channel_id=await _channel_id_of(session, search.channel) if search.channel else None,
            status=search.status,
            error_code=search.error_code,
            user=search.user,
            client_request_id=search.client_request_id,
            start=start,
            end=end,
        )
        rows, following = await request_log.search(session, filters, search.limit, after)
        data = await _described(session, rows)
    return RequestPage(data=data, next_cursor=following.encode() if following else None)


@router.get("/requests/{request_id}", response_model=RequestOut)
async def get_request(gateway: AdminGateway, request_id: Annotated[Text, Path(max_length=40)]) -> RequestOut:
    """One request with its frozen billing facts and every upstream attempt."""
    async with gateway.db.sessions() as session:
        record = await session.get(UsageRecord, request_id)
        if record is None:
            raise NotFound(f"No request {request_id!r}.")
        (described,) = await _described(session, [record])
    return described


async def _channel_id_of(session: AsyncSession, name_or_id: str) -> str:
    by_name = await session.scalar(select(Channel.id).where(Channel.name == name_or_id))
    return by_name or name_or_id


async def _described(session: AsyncSession, rows: Sequence[UsageRecord]) -> list[RequestOut]:
    """The rows with their attempts and names: a handful of queries per page, none per row."""
    ids = [r.id for r in rows]
    attempts = await request_log.attempts_of(session, ids)
    accounts = await request_log.account_names(session, [r.account_id for r in rows])
    keys: dict[str, str] = {}
    tasks: dict[str, str] = {}
    if rows:
        named = await session.execute(select(ApiKey.id, ApiKey.name).where(ApiKey.id.in_({r.key_id for r in rows})))
        keys = {key_id: name for key_id, name in named.all()}
        found = await session.execute(select(Task.request_id, Task.id).where(Task.request_id.in_(ids)))
        tasks = {request_id: task_id for request_id, task_id in found.all()}
    return [
        _request_out(r, attempts[r.id], accounts.get(r.account_id), keys.get(r.key_id), tasks.get(r.id)) for r in rows
    ]


def _request_out(
    r: UsageRecord, attempts: list[UpstreamAttempt], account_name: str | None, key_name: str | None, task_id: str | None
) -> RequestOut:
    return RequestOut(
        id=r.id,
        created_at=r.created_at,
        completed_at=r.completed_at,
        status=r.status,
        error_code=r.error_code,
        account_id=r.account_id,
        account_name=account_name,
        key_id=r.key_id,
        key_name=key_name,
        task_id=task_id,
        client_request_id=r.client_request_id,
        user=r.user,
        endpoint=r.endpoint,
        model=r.model,
        channel=r.channel_name,
        channel_id=r.channel_id,
        provider=r.provider,
        upstream_model=r.upstream_model,
        images_requested=r.images_requested,
        images_delivered=r.images_delivered,
        unit_credits=r.unit_credits,
        model_multiplier=r.model_multiplier,
        channel_multiplier=r.channel_multiplier,
        hold_credits=r.hold_credits,
        credits=r.credits,
        latency_ms=r.latency_ms,
        metadata=r.request_metadata or {},
        possibly_billed=any(a.possibly_billed for a in attempts),
        attempts=[_attempt_out(a) for a in attempts],
    )


def _attempt_out(a: UpstreamAttempt) -> AttemptOut:
    return AttemptOut(
        n=a.n,
        channel=a.channel_name,
        channel_id=a.channel_id,
        provider=a.provider,
        upstream_model=a.upstream_model,
        started_at=a.started_at,
        latency_ms=a.latency_ms,
        outcome=a.outcome,
        http_status=a.http_status,
        error_code=a.error_code,
        error=a.error,
        images=a.images,
        possibly_billed=a.possibly_billed,
        upstream_cost=a.upstream_cost,
        usage=a.usage,
    )
