"""The audit log: every admin change, with its actor and each field's value before and after.

Changes made through the ORM are recorded without the services' help: `watch` hooks the admin
unit of work's session, and before each flush turns the new, changed and deleted rows of the
watched entity types into audit entries, which are then flushed (and later committed or rolled
back) together with the change. A change made with bulk SQL is seen through the append-only row
that records it (a credit grant's ledger entry: `Watched.as_change`); one without such a row is
not in the log. Secret fields are written as "***", before and after.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import event, inspect, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import ColumnProperty, Session
from sqlalchemy.sql.schema import ColumnDefault

from app.db import utcnow
from app.operators.models import AuditEntry

MASK = "***"
# Kept out of the log: bookkeeping the gateway does by itself, not an operator's change.
IGNORED = frozenset({"created_at", "updated_at", "low_balance_alerted", "credential_failures"})
_ACTOR = "audit_actor"


# (action, entity id, {field: [before, after]}) of a change an inserted row records, or None.
Described = tuple[str, str, dict[str, list[Any]]]


@dataclass(frozen=True)
class Watched:
    """An entity type to audit: its name in the log and the fields whose values are secret.

    With `as_change`, the type is an append-only record of changes to `entity` made with bulk SQL
    (a ledger entry records a grant): each new row is logged as the change it describes, and the
    row itself is not."""

    entity: str
    secrets: frozenset[str] = frozenset()
    as_change: Callable[[Any], Described | None] | None = None


def watch(session: AsyncSession, actor: str, entities: Mapping[type[Any], Watched]) -> None:
    """Audit every ORM change to `entities` made through `session`, as `actor`.

    A service may flush one object several times in one unit of work (a PATCH of an account's
    name and its alert threshold flushes twice): the log gets one entry per object and unit of
    work, with each field's first "before" and last "after".
    """
    session.info[_ACTOR] = actor
    logged: dict[tuple[str, str], AuditEntry] = {}

    def before_flush(sync_session: Session, _context: object, _instances: object) -> None:
        for entry in _entries(sync_session, actor, entities):
            earlier = logged.get((entry.entity, entry.entity_id))
            # (`in sync_session`: an entry of a rolled-back savepoint is gone; start a new one.)
            if (
                earlier is not None
                and earlier in sync_session
                and entry.action == "update"
                and earlier.action in ("create", "update")
            ):
                earlier.changes = _merged(earlier.changes, entry.changes)  # a new dict: the JSON column sees it
                continue
            if entry.action in ("create", "update"):
                logged[(entry.entity, entry.entity_id)] = entry
            sync_session.add(entry)

    event.listen(session.sync_session, "before_flush", before_flush)


def _merged(earlier: Mapping[str, list[Any]], later: Mapping[str, list[Any]]) -> dict[str, list[Any]]:
    merged = dict(earlier)
    for name, (before, after) in later.items():
        first = merged[name][0] if name in merged else before
        if first == after:
            merged.pop(name, None)  # changed and changed back: no change
        else:
            merged[name] = [first, after]
    return merged


def actor_of(session: AsyncSession) -> str:
    """Who is making the changes in this unit of work: the actor `watch` was given (an operator,
    "root", "cli:<user>", "config"), or "" in a session nobody watches."""
    return str(session.info.get(_ACTOR, ""))


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
            if watched.as_change is not None:
                described = watched.as_change(row) if action == "create" else None
                if described is not None:
                    kind, entity_id, described_changes = described
                    yield AuditEntry(
                        at=now,
                        actor=actor,
                        action=kind,
                        entity=watched.entity,
                        entity_id=entity_id,
                        changes={
                            name: [_json(before), _json(after)] for name, (before, after) in described_changes.items()
                        },
                    )
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
            before, after = None, current if current is not None else _default(attribute)
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


def _default(attribute: ColumnProperty[Any]) -> Any:
    """The value a column's Python-side default will give a new row (applied only at the INSERT,
    after this hook has run), so that a create entry shows the whole new object."""
    default = attribute.columns[0].default
    if not isinstance(default, ColumnDefault):
        return None
    if default.is_scalar:
        return default.arg
    if default.is_callable:
        try:
            return default.arg(None)  # e.g. `default=dict`: no use of the execution context
        except (TypeError, AttributeError):  # a default that needs the execution context: null
            return None
    return None


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
