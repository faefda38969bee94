"""`POST /admin/reconcile`: a provider's own usage file set beside the channel's billable calls."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.types import Credits, Text
from app.billing.reconcile import Reconciliation, parse_provider_csv, reconcile, unit_costs_of
from app.catalog.models import Channel
from app.errors import NotFound
from app.http.body import read_bounded
from app.http.deps import AdminGateway

router = APIRouter(prefix="/admin", tags=["admin: billing"])

# A month of daily rows per model is a few kilobytes; this leaves room for years of them while
# keeping one upload from filling a replica's memory.
MAX_FILE_BYTES = 5 * 1024 * 1024


class ReconciledRowOut(BaseModel):
    date: dt.date = Field(description="UTC day (YYYY-MM-DD): the attempt's start, the provider's bucket.")
    upstream_model: str
    ours: int = Field(description="Images the upstream returned on the channel's possibly-billed calls.")
    theirs: int = Field(description="Images the provider's file lists.")
    difference: int = Field(description="theirs − ours.")
    ambiguous: int = Field(description="Calls that timed out or broke off after sending: images unknown.")
    ambiguous_images: int = Field(
        description="Images those calls asked for: the provider may bill up to this many more."
    )
    cost_ours: Credits | None = Field(description="Sum of the calls' upstream_cost; null when a call has none.")
    cost_theirs: Credits | None = Field(description="The provider's cost, rounded half-up to 4 places; null if absent.")
    cost_difference: Credits | None = Field(description="cost_theirs − cost_ours, when both are known.")
    ok: bool = Field(description="ours ≤ theirs ≤ ours + ambiguous_images, and the costs agree when both are known.")


class ReconciliationOut(BaseModel):
    channel_id: str
    channel: str = Field(description="The channel's name.")
    first_day: dt.date = Field(description="First UTC day compared: the earliest date in the file.")
    last_day: dt.date = Field(description="Last UTC day compared (inclusive): the latest date in the file.")
    rows: list[ReconciledRowOut] = Field(description="One per day × upstream model either side has, sorted.")
    ok: bool = Field(description="Every row matches.")
    ignored_columns: list[str] = Field(description="Columns of the file's header that were not read.")

    @classmethod
    def of(cls, channel: Channel, result: Reconciliation) -> ReconciliationOut:
        return cls(
            channel_id=channel.id,
            channel=channel.name,
            first_day=result.first_day,
            last_day=result.last_day,
            ok=result.ok,
            ignored_columns=result.ignored_columns,
            rows=[
                ReconciledRowOut(
                    date=row.day,
                    upstream_model=row.upstream_model,
                    ours=row.ours,
                    theirs=row.theirs,
                    difference=row.difference,
                    ambiguous=row.ambiguous,
                    ambiguous_images=row.ambiguous_images,
                    cost_ours=row.cost_ours,
                    cost_theirs=row.cost_theirs,
                    cost_difference=row.cost_difference,
                    ok=row.ok,
                )
                for row in result.rows
            ],
        )


async def channel_named(session: AsyncSession, name_or_id: str) -> Channel:
    """The channel with this id, else with this name; 404 naming `channel` when there is none."""
    channel = await session.get(Channel, name_or_id)
    if channel is None:
        channel = await session.scalar(select(Channel).where(Channel.name == name_or_id))
    if channel is None:
        raise NotFound(f"No channel with the id or name {name_or_id!r}.", param="channel")
    return channel


async def reconcile_channel(session: AsyncSession, name_or_id: str, raw: bytes) -> ReconciliationOut:
    """What the route and `image-gateway usage reconcile` answer. The file is read first: a bad
    one is refused before anything is looked up."""
    provider = parse_provider_csv(raw)
    channel = await channel_named(session, name_or_id)
    result = await reconcile(session, channel.id, provider, unit_costs_of(channel.costs or {}))
    return ReconciliationOut.of(channel, result)


@router.post(
    "/reconcile",
    response_model=ReconciliationOut,
    summary="Match a provider's usage file against a channel's billable calls",
    description=(
        "The body is the provider's own usage as CSV with a header: `date,upstream_model,images[,cost]` "
        "(UTC dates YYYY-MM-DD; other columns are ignored and listed in `ignored_columns`; rows of one day "
        "and model are added up). The days from the file's first date to its last are compared with the "
        "channel's possibly-billed upstream attempts, per day and upstream model. A day or model present on "
        "one side only is a row with 0 on the other. `ok` is false when any row differs: images outside "
        "[ours, ours + ambiguous_images], or costs that differ when both sides have one. A malformed file is "
        "a 400 naming the line and column; a body over 5 MB is a 413; an unknown channel a 404. "
        "`image-gateway usage reconcile --channel NAME FILE` does the same and exits 1 when not ok."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"text/csv": {"schema": {"type": "string"}, "example": "date,upstream_model,images,cost\n"}},
        }
    },
)
async def reconcile_route(
    gateway: AdminGateway,
    request: Request,
    channel: Annotated[Text, Query(max_length=200, description="The channel's id or name.")],
) -> ReconciliationOut:
    raw = await read_bounded(
        request, MAX_FILE_BYTES, f"The file is larger than {MAX_FILE_BYTES} bytes; send a shorter period."
    )
    async with gateway.db.sessions() as session:
        return await reconcile_channel(session, channel, raw)
