"""Names or ids: every command that takes an object accepts what an operator remembers.

- an account: its id or its name (names are unique);
- a channel: its id or its name (unique);
- a model: its id or one of its aliases;
- an operator: its id or its name;
- a key: its id, its prefix as listings show it (`igw_abcd1234`), or its name when no other key
  has it (key names are not unique; otherwise the error lists the keys that have it).
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import Account
from app.catalog.models import CatalogModel, Channel
from app.errors import Conflict, NotFound
from app.keys.models import ApiKey
from app.keys.secrets import KEY_PREFIX, PREFIX_LENGTH, key_hash
from app.operators.models import Operator


async def account(session: AsyncSession, ref: str) -> Account:
    from app.billing.accounts import find_account

    return await find_account(session, ref)


async def channel(session: AsyncSession, ref: str) -> Channel:
    row = await session.get(Channel, ref)
    if row is None:
        row = await session.scalar(select(Channel).where(Channel.name == ref))
    if row is None:
        raise NotFound(f"No channel with id or name {ref!r} (`image-gateway channels list` shows them).")
    return row


async def model(session: AsyncSession, ref: str) -> CatalogModel:
    from app.catalog.service import find_model

    return await find_model(session, ref)


async def operator(session: AsyncSession, ref: str) -> Operator:
    from app.operators.service import find_operator

    return await find_operator(session, ref)


async def key(session: AsyncSession, ref: str) -> ApiKey:
    row = await session.get(ApiKey, ref)
    if row is not None:
        return row
    if ref.startswith(KEY_PREFIX):
        if len(ref) > PREFIX_LENGTH:  # the whole key, pasted: its digest names it
            row = await session.scalar(select(ApiKey).where(ApiKey.key_hash == key_hash(ref)))
            if row is not None:
                return row
        found = (await session.scalars(select(ApiKey).where(ApiKey.prefix == ref).limit(10))).all()
        if found:
            return _one(found, ref, "prefix")
    named = (await session.scalars(select(ApiKey).where(ApiKey.name == ref).order_by(ApiKey.created_at))).all()
    if not named:
        # A whole key that names nothing is still a secret (of another gateway, say): not echoed.
        shown = ref[:PREFIX_LENGTH] + "…" if ref.startswith(KEY_PREFIX) and len(ref) > PREFIX_LENGTH else ref
        raise NotFound(f"No key with id, prefix or name {shown!r} (`image-gateway keys list` shows them).")
    return _one(named, ref, "name")


def _one(keys: Sequence[ApiKey], ref: str, what: str) -> ApiKey:
    if len(keys) == 1:
        return keys[0]
    listed = "; ".join(
        f"{k.id} ({k.prefix}, account {k.account_id}{', revoked' if k.revoked_at else ''})" for k in keys
    )
    raise Conflict(f"{len(keys)} keys have the {what} {ref!r}: {listed}. Use the key's id.")
