"""Catalog models and channels: create, replace, update, delete. Never commits."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.catalog.auto_disable import clear_on_enable
from app.catalog.models import CatalogModel, Channel
from app.catalog.secrets import SEALED_PREFIX, SECRET_AUTH_FIELDS, SecretCipher
from app.db import new_id, utcnow
from app.errors import Conflict, InvalidRequest, InvalidValue, NotFound


async def list_models(session: AsyncSession) -> Sequence[CatalogModel]:
    return (await session.scalars(select(CatalogModel).order_by(CatalogModel.id))).all()


async def get_model(session: AsyncSession, model_id: str) -> CatalogModel:
    row = await session.get(CatalogModel, model_id)
    if row is None:
        raise NotFound(f"No model with id {model_id!r}.")
    return row


async def find_model(session: AsyncSession, ref: str) -> CatalogModel:
    """By id, else by alias (aliases name a model everywhere an id does)."""
    row = await session.get(CatalogModel, ref)
    if row is None:
        row = next((m for m in await list_models(session) if ref in (m.aliases or ())), None)
    if row is None:
        raise NotFound(f"No model with id or alias {ref!r}.")
    return row


async def put_model(
    session: AsyncSession, model_id: str, fields: dict[str, Any], *, missing: Sequence[str] = ()
) -> tuple[CatalogModel, bool]:
    """Create or replace a model. Returns it and whether it was created.

    `missing` names the fields the body left out: a new model takes their defaults, but an
    existing one is not replaced by a partial body (that once wiped a model's aliases and sizes
    while only its price was meant to change), so it is a 400 naming them.
    """
    await _check_aliases(session, model_id, fields.get("aliases", []))
    row = await session.get(CatalogModel, model_id)
    created = row is None
    if row is not None and missing:
        raise InvalidRequest(
            f"PUT replaces the whole model {model_id!r}; missing fields: {', '.join(missing)}. "
            f"Send every field (as GET /admin/models returns it), or PATCH /admin/models/{model_id} "
            "to change only some.",
            param=missing[0],
        )
    if row is None:
        row = CatalogModel(id=model_id)
        session.add(row)
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    await session.flush()
    return row, created


async def patch_model(session: AsyncSession, ref: str, fields: dict[str, Any]) -> CatalogModel:
    """Change only the given fields of the model `ref` (its id or an alias). A field set to the
    value it has already is no change: nothing is written, `updated_at` stays."""
    if not fields:
        raise InvalidRequest("Nothing to change: send at least one field of the model.")
    row = await find_model(session, ref)
    changed = model_differences(row, fields)
    if "aliases" in changed:
        await _check_aliases(session, row.id, changed["aliases"])
    if changed:
        for name, value in changed.items():
            setattr(row, name, value)
        row.updated_at = utcnow()
        await session.flush()
    return row


def model_differences(row: CatalogModel, fields: dict[str, Any]) -> dict[str, Any]:
    """The fields whose value differs from the row's (amounts compared as numbers: 8 == 8.0000)."""
    return {name: value for name, value in fields.items() if getattr(row, name) != value}


async def _check_aliases(session: AsyncSession, model_id: str, aliases: list[str]) -> None:
    others = (await session.scalars(select(CatalogModel).where(CatalogModel.id != model_id))).all()
    taken = {other.id: other.id for other in others} | {a: o.id for o in others for a in o.aliases}
    for alias in [model_id, *aliases]:
        if alias in taken:
            raise Conflict(f"{alias!r} already names the model {taken[alias]!r}.", param="aliases")


async def list_channels(session: AsyncSession) -> Sequence[Channel]:
    return (await session.scalars(select(Channel).order_by(Channel.priority.desc(), Channel.created_at))).all()


async def get_channel(session: AsyncSession, channel_id: str) -> Channel:
    row = await session.get(Channel, channel_id)
    if row is None:
        raise NotFound(f"No channel with id {channel_id!r}.")
    return row


async def create_channel(session: AsyncSession, cipher: SecretCipher, fields: dict[str, Any]) -> Channel:
    now = utcnow()
    fields = {**fields, "auth": cipher.seal_auth(_written_auth(fields))}
    row = Channel(id=new_id("ch"), created_at=now, updated_at=now, **fields)
    session.add(row)
    await _flush_unique_name(session, row.name)
    return row


async def update_channel(
    session: AsyncSession, cipher: SecretCipher, channel_id: str, fields: dict[str, Any]
) -> Channel:
    row = await get_channel(session, channel_id)
    # Every write stores secrets sealed, so a plaintext row from before the key goes on its next change.
    fields = {**fields, "auth": cipher.seal_auth(merge_auth(row.auth or {}, _written_auth(fields)))}
    clear_on_enable(row, fields)
    for name, value in fields.items():
        setattr(row, name, value)
    row.updated_at = utcnow()
    await _flush_unique_name(session, row.name)
    return row


async def delete_channel(session: AsyncSession, channel_id: str) -> None:
    await session.delete(await get_channel(session, channel_id))
    await session.flush()


@dataclass(frozen=True)
class SecretProblem:
    """A channel secret that `secrets check` or `secrets rotate` could not vouch for: names the
    channel and the field, never the value."""

    channel_id: str
    channel: str
    field: str
    problem: str


async def check_secrets(session: AsyncSession, cipher: SecretCipher) -> list[SecretProblem]:
    """Every stored secret that the configured keys cannot decrypt, or that is still plain text
    while a key is set."""
    return [
        SecretProblem(row.id, row.name, field, problem)
        for row in await _channels_by_age(session)
        for field, problem in cipher.problems(row.auth or {})
    ]


async def rotate_secrets(session: AsyncSession, cipher: SecretCipher) -> list[SecretProblem]:
    """Re-encrypt every secret under the newest key (plain text included). Returns those that no
    key decrypts, which are left as they are."""
    problems: list[SecretProblem] = []
    for row in await _channels_by_age(session):
        row.auth, failed = cipher.reseal_auth(row.auth or {})
        problems.extend(SecretProblem(row.id, row.name, field, reason) for field, reason in failed)
    await session.flush()
    return problems


async def _channels_by_age(session: AsyncSession) -> Sequence[Channel]:
    return (await session.scalars(select(Channel).order_by(Channel.created_at, Channel.id))).all()


def _written_auth(fields: dict[str, Any]) -> dict[str, Any]:
    """The auth an operator sent. A secret that looks sealed would be taken for one when loaded
    (and be unusable), so it is refused."""
    auth: dict[str, Any] = fields.get("auth") or {}
    for field in sorted(SECRET_AUTH_FIELDS):
        value = auth.get(field)
        if isinstance(value, str) and value.startswith(SEALED_PREFIX):
            raise InvalidValue(
                f"auth.{field} must not start with {SEALED_PREFIX!r} (that marks an encrypted value).",
                param=f"auth.{field}",
            )
    return auth


def merge_auth(current: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A PATCH without `api_key` keeps the stored secret (GET never shows it, so a client that
    sends back what it read must not erase it); `"api_key": null` removes it."""
    merged = dict(current)
    for name, value in patch.items():
        if value is None:
            merged.pop(name, None)
        else:
            merged[name] = value
    return merged


async def _flush_unique_name(session: AsyncSession, name: str) -> None:
    try:
        async with session.begin_nested():
            await session.flush()
    except IntegrityError:
        raise InvalidValue(f"A channel named {name!r} already exists.", param="name", status=409) from None
