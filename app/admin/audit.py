"""`GET /admin/audit`: every change made through the admin API and the command line, newest first,
with who made it and each field's value before and after (secrets as "***")."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.admin.types import Instant, Text
from app.billing.usage_report import check_range
from app.errors import InvalidValue
from app.http.deps import AdminGateway
from app.operators.audit import audit_entries
from app.operators.models import AuditEntry

router = APIRouter(prefix="/admin", tags=["admin: audit"])

Entity = Literal["account", "key", "model", "channel", "operator"]


class AuditSearch(BaseModel):
    """The filters of `GET /admin/audit`; every one given must match."""

    model_config = ConfigDict(extra="forbid")
    start: Instant | None = Field(None, description="At or after this instant (ISO 8601; naive means UTC).")
    end: Instant | None = Field(None, description="Before this instant (ISO 8601; naive means UTC).")
    actor: Text | None = Field(
        None, max_length=200, description='An operator\'s name, "root", or "cli:<user>" for the command line.'
    )
    entity: Entity | None = None
    entity_id: Text | None = Field(None, max_length=120, description="The changed object's id (a model's id).")
    limit: int = Field(100, ge=1, le=1000)
    cursor: Text | None = Field(None, max_length=40, description="`next_cursor` of the previous page.")


class AuditEntryOut(BaseModel):
    at: datetime
    actor: str = Field(description='The operator\'s name, "root" for GATEWAY_ADMIN_TOKEN, "cli:<user>" for the CLI.')
    action: str = Field(description="create | update | delete | grant | adjustment")
    entity: str = Field(description="account | key | model | channel | operator")
    entity_id: str
    changes: dict[str, list[Any]] = Field(description='field → [before, after]; secrets as "***".')

    @classmethod
    def of(cls, entry: AuditEntry) -> AuditEntryOut:
        return cls(
            at=entry.at,
            actor=entry.actor,
            action=entry.action,
            entity=entry.entity,
            entity_id=entry.entity_id,
            changes=entry.changes,
        )


class AuditPage(BaseModel):
    data: list[AuditEntryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next (older) page; null on the last page.")


@router.get(
    "/audit",
    response_model=AuditPage,
    summary="The audit log",
    description=(
        "Every change to accounts, keys, models, channels and operators, and every credit grant, "
        "made through the admin API or the command line: who (`actor`), what, and each changed "
        "field's value before and after. A change that failed left no entry. Every role may read it."
    ),
)
async def audit_log(gateway: AdminGateway, search: Annotated[AuditSearch, Query()]) -> AuditPage:
    start, end = check_range(search.start, search.end)
    async with gateway.db.sessions() as session:
        entries = await audit_entries(
            session,
            start=start,
            end=end,
            actor=search.actor,
            entity=search.entity,
            entity_id=search.entity_id,
            limit=search.limit,
            before_id=page_cursor(search.cursor),
        )
    data = [AuditEntryOut.of(entry) for entry in entries]
    following = str(entries[-1].id) if len(entries) == search.limit else None
    return AuditPage(data=data, next_cursor=following)


def page_cursor(cursor: str | None) -> int | None:
    """A `next_cursor` back as the id to page before (the command line's `--cursor` too): within
    the id column's 64 bits, so that no database is asked about a number it cannot hold."""
    if cursor is None:
        return None
    if not (cursor.isascii() and cursor.isdigit()) or not 0 < int(cursor) < 2**63:
        raise InvalidValue("cursor must be the next_cursor of a previous page.", param="cursor")
    return int(cursor)
