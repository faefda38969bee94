"""The audit log: every admin change, with its actor and each field's value before and after.

Changes made through the ORM are recorded without the services' help: `watch` hooks the admin
unit of work's session, and before each flush turns the new, changed and deleted rows of the
watched entity types into audit entries, which are then flushed (and later committed or rolled
back) together with the change. Changes made with bulk SQL (credit grants) are recorded by
calling `record` explicitly. Secret fields are written as "***", before and after.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from app.db import utcnow
from app.operators.models import AuditEntry

MASK = "***"
# Kept out of the log: bookkeeping the gateway does by itself, not an operator's change.
IGNORED = frozenset({"created_at", "updated_at", "low_balance_alerted", "credential_failures"})
_ACTOR = "audit_actor"


@dataclass(frozen=True)
class Watched:
    """An entity type to audit: its name in the log and the fields whose values are secret."""

    entity: str
    secrets: frozenset[str] = frozenset()


def watch(session: AsyncSession, actor: str, entities: Mapping[type[Any], Watched]) -> None:
    """Audit every ORM change to `entities` made through `session`, as `actor`."""
    session.info[_ACTOR] = actor

    def before_flush(sync_session: Session, _context: object, _instances: object) -> None:
        for entry in _entries(sync_session, actor, entities):
            sync_session.add(entry)

    event.listen(session.sync_session, "before_flush", before_flush)


def actor_of(session: AsyncSession) -> str:
    """Who is making the changes in this unit of work ("" outside the admin API)."""
    return str(session.info.get(_ACTOR, ""))


def record(
    session: AsyncSession, action: str, entity: str, entity_id: str, changes: Mapping[str, Sequence[Any]]
) -> None:
    """Log a change the ORM does not see (one made with bulk SQL), as this unit of work's actor."""
    session.add(
        AuditEntry(
            at=utcnow(),
            actor=actor_of(session) or "gateway",
            action=action,
            entity=entity,
            entity_id=entity_id,
            changes={name: [_json(before), _json(after)] for name, (before, after) in changes.items()},
        )
    )


async def audit_entries(
    session: AsyncSession,
    *,
    start: datetime | None = None,
    end: datetime | None = None,
    actor: str | None = None,
    entity: str | None = None,
    entity_id: str | None = None,
    limit: int = 100,
    before_id: int | None = None,
) -> Sequence[AuditEntry]:
    """Newest first; `before_id` pages on."""
    query = select(AuditEntry).order_by(AuditEntry.id.desc()).limit(limit)
    if start is not None:
        query = query.where(AuditEntry.at >= start)
    if end is not None:
        query = query.where(AuditEntry.at < end)
    if actor is not None:
        query = query.where(AuditEntry.actor == actor)
    if entity is not None:
        query = query.where(AuditEntry.entity == entity)
    if entity_id is not None:
        query = query.where(AuditEntry.entity_id == entity_id)
    if before_id is not None:
        query = query.where(AuditEntry.id < before_id)
    return (await session.scalars(query)).all()


def _entries(session: Session, actor: str, entities: Mapping[type[Any], Watched]) -> Iterable[AuditEntry]:
    now = utcnow()
    for action, rows in (("create", session.new), ("update", session.dirty), ("delete", session.deleted)):
        for row in rows:
            watched = entities.get(type(row))
            if watched is None:
                continue
            changes = _changes(row, action, watched.secrets)
            if action == "update" and not changes:
                continue  # touched but not changed (or only bookkeeping fields)
            yield AuditEntry(
                at=now,
                actor=actor,
                action=action,
                entity=watched.entity,
                entity_id=str(inspect(row).identity[0] if inspect(row).identity else getattr(row, "id", "")),
                changes=changes,
            )


def _changes(row: object, action: str, secrets: frozenset[str]) -> dict[str, list[Any]]:
    state = inspect(row)
    changes: dict[str, list[Any]] = {}
    for attribute in state.mapper.column_attrs:
        name = attribute.key
        if name in IGNORED:
            continue
        history = state.attrs[name].history
        current = state.attrs[name].value
        if action == "create":
            before, after = None, current
        elif action == "delete":
            before, after = current, None
        else:
            if not history.has_changes():
                continue
            before = history.deleted[0] if history.deleted else None
            after = history.added[0] if history.added else current
        if before == after or (action == "create" and after is None):
            continue
        if name in secrets:
            changes[name] = [None if before is None else MASK, None if after is None else MASK]
        else:
            changes[name] = [_json(before), _json(after)]
    return changes


def _json(value: Any) -> Any:
    """A value as the audit log's JSON keeps it: decimals as strings, instants in ISO 8601."""
    if isinstance(value, Decimal):
        text = format(value.normalize(), "f")
        return "0" if text == "-0" else text
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(k): _json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json(v) for v in value]
    return value
