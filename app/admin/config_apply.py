"""Applying a config file (app/admin/config_file.py) to the database, in one transaction.

Each entry is matched with what exists (models by id, channels by id when given else by name,
operators by name), compared, and written only where it differs: applying the same file again
writes nothing (no `updated_at` moves, no audit entry). Fields an entry leaves out keep their
values, as with `PATCH`. With `prune`, what a section of the file no longer lists is disabled
(models and channels `enabled: false`, operators revoked), never deleted.

Every change goes through the catalog and operator services the admin API uses and is audited
(actor `config` at start, `cli:<user>` from `config apply`). Any error rolls the whole file back and names the entry it came from.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.catalog_schemas import ModelIn
from app.admin.config_file import (
    ChannelEntry,
    ConfigError,
    GatewayConfig,
    ModelEntry,
    OperatorEntry,
    entry_label,
    load_config,
)
from app.catalog import service as catalog
from app.catalog.models import CatalogModel, Channel
from app.catalog.secrets import SecretCipher
from app.db import Database
from app.errors import GatewayError, InvalidValue, NotFound
from app.operators import service as operators
from app.operators.audit import watch
from app.operators.audited import AUDITED
from app.operators.models import Operator
from app.settings import Settings

log = logging.getLogger("app.config")

ACTOR = "config"  # the audit log's actor for GATEWAY_CONFIG_FILE (the CLI passes its own, "cli:<user>")
_LOCK_ID = 7_271_002  # pg_advisory_xact_lock: one config apply at a time across replicas
T = TypeVar("T")
ACTIONS = ("created", "updated", "unchanged", "disabled", "skipped")


@dataclass
class Outcome:
    """What applying did to one object: created | updated | unchanged | disabled | skipped."""

    kind: str  # model | channel | operator
    name: str
    action: str
    fields: list[str] = field(default_factory=list)  # what changed
    note: str = ""
    token: str | None = None  # a new operator's token: it exists nowhere else

    def document(self) -> dict[str, Any]:
        shown: dict[str, Any] = {"kind": self.kind, "name": self.name, "action": self.action, "fields": self.fields}
        if self.note:
            shown["note"] = self.note
        if self.token is not None:
            shown["token"] = self.token
        return shown


@dataclass
class ApplyReport:
    source: str
    outcomes: list[Outcome]
    dry_run: bool = False

    @property
    def changed(self) -> int:
        return sum(1 for outcome in self.outcomes if outcome.action in ("created", "updated", "disabled"))

    def document(self) -> dict[str, Any]:
        return {
            "file": self.source,
            "dry_run": self.dry_run,
            "changed": self.changed,
            "results": [outcome.document() for outcome in self.outcomes],
        }


class _RolledBack(Exception):
    def __init__(self, report: ApplyReport) -> None:
        self.report = report


async def apply_to_database(
    db: Database,
    cipher: SecretCipher,
    config: GatewayConfig,
    source: str,
    *,
    prune: bool = False,
    dry_run: bool = False,
    create_operators: bool = True,
    actor: str = ACTOR,
) -> ApplyReport:
    """Apply in one transaction (rolled back with `dry_run`). Safe when several replicas start
    with the same file at once: on PostgreSQL an advisory lock takes them one at a time (the later
    ones find nothing to change), on SQLite the write lock does; a unique-constraint race with some
    other writer is retried once."""
    for attempt in (1, 2):
        try:
            async with db.transaction() as session:
                if db.engine.dialect.name == "postgresql":
                    await session.execute(text(f"SELECT pg_advisory_xact_lock({_LOCK_ID})"))
                watch(session, actor, AUDITED)
                outcomes = await apply_config(
                    session, cipher, config, source, prune=prune, create_operators=create_operators
                )
                if dry_run:
                    # The tokens of operators created in a transaction that is rolled back are void.
                    for outcome in outcomes:
                        if outcome.token is not None:
                            outcome.token, outcome.note = None, "its token is printed by the real apply"
                    raise _RolledBack(ApplyReport(source, outcomes, dry_run=True))
            return ApplyReport(source, outcomes)
        except _RolledBack as rolled_back:
            return rolled_back.report
        except IntegrityError:
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


async def apply_config(
    session: AsyncSession,
    cipher: SecretCipher,
    config: GatewayConfig,
    source: str,
    *,
    prune: bool = False,
    create_operators: bool = True,
) -> list[Outcome]:
    """Apply in the caller's unit of work (never commits). ConfigError names the failing entry."""
    outcomes: list[Outcome] = []
    if config.models is not None:
        for index, model in enumerate(config.models):
            outcomes.append(
                await _guarded(source, entry_label("models", index, model.id), _apply_model(session, model))
            )
        if prune:
            outcomes += await _prune_models(session, {m.id for m in config.models})
    if config.channels is not None:
        kept: set[str] = set()
        for index, channel in enumerate(config.channels):
            label = entry_label("channels", index, channel.name)
            outcome, channel_id = await _guarded(source, label, _apply_channel(session, cipher, channel))
            outcomes.append(outcome)
            kept.add(channel_id)
        if prune:
            outcomes += await _prune_channels(session, cipher, kept)
    if config.operators is not None:
        for index, operator in enumerate(config.operators):
            label = entry_label("operators", index, operator.name)
            outcomes.append(await _guarded(source, label, _apply_operator(session, operator, create_operators)))
        if prune:
            outcomes += await _prune_operators(session, {o.name for o in config.operators})
    return outcomes


async def _guarded(source: str, label: str, step: Awaitable[T]) -> T:
    """A service's refusal (a 409 on a name, say) as a ConfigError naming the entry."""
    try:
        return await step
    except GatewayError as exc:
        where = f"{label}.{exc.param}" if exc.param else label
        raise ConfigError(source, [f"{where}: {exc.message}"]) from None


async def _apply_model(session: AsyncSession, entry: ModelEntry) -> Outcome:
    fields = entry.changes()
    fields.pop("id", None)
    row = await session.get(CatalogModel, entry.id)
    if row is None:
        if "credits_per_image" not in fields:
            raise InvalidValue("required for a new model.", param="credits_per_image")
        created = ModelIn.model_validate(fields)
        await catalog.put_model(session, entry.id, created.fields())
        return Outcome("model", entry.id, "created")
    changed = catalog.model_differences(row, fields)
    if not changed:
        return Outcome("model", entry.id, "unchanged")
    await catalog.patch_model(session, row.id, changed)
    return Outcome("model", entry.id, "updated", sorted(changed))


async def _apply_channel(session: AsyncSession, cipher: SecretCipher, entry: ChannelEntry) -> tuple[Outcome, str]:
    fields = entry.changes()
    if entry.id is not None:
        row = await session.get(Channel, entry.id)
        if row is None:
            raise NotFound(f"No channel with id {entry.id!r} (leave id out to match by name).", param="id")
    else:
        row = await session.scalar(select(Channel).where(Channel.name == entry.name))
    if row is None:
        if "provider" not in fields:
            raise InvalidValue("required for a new channel.", param="provider")
        fields.setdefault("auth", {})
        created = await catalog.create_channel(session, cipher, fields)
        return Outcome("channel", entry.name, "created"), created.id
    changed = channel_differences(row, fields)
    note = ""
    if changed.get("enabled") is True and row.disabled_reason:
        # The gateway disabled it for refused credentials or a model gone: the file (applied at
        # every start) must not switch it back on behind the operator's back.
        del changed["enabled"]
        note = f"kept disabled: {row.disabled_reason} (re-enable it with PATCH or `channels update`)"
    if not changed:
        return Outcome("channel", entry.name, "unchanged", note=note), row.id
    await catalog.update_channel(session, cipher, row.id, changed)
    return Outcome("channel", entry.name, "updated", sorted(changed), note), row.id


def channel_differences(row: Channel, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields whose value differs from the row's. `auth` is merged as PATCH merges it (a
    stored key stays unless the entry sets `api_key: null`), then compared."""
    changed: dict[str, Any] = {}
    for name, value in fields.items():
        current = getattr(row, name)
        if name == "auth":
            differs = catalog.merge_auth(current or {}, value) != (current or {})
        elif name == "costs":
            differs = _amounts(current or {}) != _amounts(value)
        elif isinstance(current, Decimal):
            differs = current != Decimal(str(value))
        else:
            differs = current != value
        if differs:
            changed[name] = value
    return changed


def _amounts(costs: dict[str, Any]) -> dict[str, Decimal]:
    return {upstream: Decimal(str(cost)) for upstream, cost in costs.items()}


async def _apply_operator(session: AsyncSession, entry: OperatorEntry, create: bool) -> Outcome:
    row = await session.scalar(select(Operator).where(Operator.name == entry.name))
    if row is not None and row.revoked_at is not None:
        return Outcome(
            "operator",
            entry.name,
            "skipped",
            note=f"revoked on {row.revoked_at:%Y-%m-%d}: a revoked operator's name is not reused; choose another",
        )
    if row is None:
        if not create:
            return Outcome(
                "operator",
                entry.name,
                "skipped",
                note="not created here: `image-gateway config apply FILE` creates it and prints its token once",
            )
        _, token = await operators.create_operator(session, entry.name, entry.role)
        return Outcome("operator", entry.name, "created", note="token shown once", token=token)
    if row.role == entry.role:
        return Outcome("operator", entry.name, "unchanged")
    row.role = entry.role
    await session.flush()
    return Outcome("operator", entry.name, "updated", ["role"])


async def _prune_models(session: AsyncSession, listed: set[str]) -> list[Outcome]:
    outcomes = []
    for row in await catalog.list_models(session):
        if row.id not in listed and row.enabled:
            await catalog.patch_model(session, row.id, {"enabled": False})
            outcomes.append(Outcome("model", row.id, "disabled", ["enabled"], "not in the file"))
    return outcomes


async def _prune_channels(session: AsyncSession, cipher: SecretCipher, kept: set[str]) -> list[Outcome]:
    outcomes = []
    for row in await catalog.list_channels(session):
        if row.id not in kept and row.enabled:
            await catalog.update_channel(session, cipher, row.id, {"enabled": False})
            outcomes.append(Outcome("channel", row.name, "disabled", ["enabled"], "not in the file"))
    return outcomes


async def _prune_operators(session: AsyncSession, listed: set[str]) -> list[Outcome]:
    outcomes = []
    for row in await operators.list_operators(session):
        if row.name not in listed:
            await operators.revoke_operator(session, row.id)
            outcomes.append(Outcome("operator", row.name, "disabled", ["revoked_at"], "not in the file: token revoked"))
    return outcomes


async def apply_at_start(settings: Settings, db: Database, cipher: SecretCipher) -> ApplyReport | None:
    """GATEWAY_CONFIG_FILE, applied when the API starts (migrations have run). A bad file stops
    the start with one ERROR line naming every problem. Operators the file names that do not
    exist yet are not created here: their tokens would end up in the logs (`config apply` prints
    them to whoever runs it)."""
    if settings.config_file is None:
        return None
    source = str(settings.config_file)
    try:
        report = await apply_to_database(db, cipher, load_config(settings.config_file), source, create_operators=False)
    except ConfigError as exc:
        log.error("%s", exc.message, extra={"config_file": source})
        raise
    counts = {action: sum(1 for o in report.outcomes if o.action == action) for action in ACTIONS}
    log.info(
        "config file %s applied: %d changed (%s)",
        source,
        report.changed,
        ", ".join(f"{n} {action}" for action, n in counts.items() if n) or "nothing listed",
        extra={"config_file": source, "changed": report.changed},
    )
    for outcome in report.outcomes:
        if outcome.action == "skipped" or outcome.note.startswith("kept disabled"):
            log.warning("config file %s: %s %r: %s", source, outcome.kind, outcome.name, outcome.note)
    return report
