"""Creating, listing and revoking gateway keys. Never commits: the caller's unit of work does."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.models import Account
from app.db import new_id, utcnow
from app.errors import NotFound
from app.keys.models import ApiKey
from app.keys.secrets import display_prefix, key_hash, new_key


async def create_key(
    session: AsyncSession,
    *,
    account_id: str,
    name: str = "",
    models: list[str] | None = None,
    rpm: int | None = None,
    max_concurrency: int | None = None,
    credit_cap: Decimal | None = None,
    expires_at: datetime | None = None,
) -> tuple[ApiKey, str]:
    """Returns the stored key and the secret, which exists nowhere else after this call."""
    if await session.get(Account, account_id) is None:
        raise NotFound(f"No account with id {account_id!r}.", param="account_id")
    secret = new_key()
    key = ApiKey(
        id=new_id("key"),
        account_id=account_id,
        name=name,
        prefix=display_prefix(secret),
        key_hash=key_hash(secret),
        models=models,
        rpm=rpm,
        max_concurrency=max_concurrency,
        credit_cap=credit_cap,
        expires_at=expires_at,
        created_at=utcnow(),
    )
    session.add(key)
    await session.flush()
    return key, secret


async def list_keys(session: AsyncSession, account_id: str | None = None) -> Sequence[ApiKey]:
    query = select(ApiKey).order_by(ApiKey.created_at, ApiKey.id)
    if account_id:
        query = query.where(ApiKey.account_id == account_id)
    return (await session.scalars(query)).all()


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.")
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key
