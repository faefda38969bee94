"""Creating, listing, changing and revoking gateway keys. Never commits: the caller's unit of work does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.budget_settings import KEEP, Keep, set_budget
from app.billing.budgets import Budget
from app.billing.models import Account
from app.db import new_id, utcnow
from app.errors import Conflict, InvalidRequest, NotFound
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


async def get_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await session.get(ApiKey, key_id)
    if key is None:
        raise NotFound(f"No key with id {key_id!r}.")
    return key


async def find_key(session: AsyncSession, ref: str) -> ApiKey:
    """The key with id `ref`, else the one key named `ref` (for the command line)."""
    key = await session.get(ApiKey, ref)
    if key is not None:
        return key
    named = (await session.scalars(select(ApiKey).where(ApiKey.name == ref).limit(2))).all()
    if len(named) > 1:
        raise Conflict(f"Several keys are named {ref!r}; use the key's id.")
    if not named:
        raise NotFound(f"No key with id or name {ref!r}.")
    return named[0]


@dataclass(frozen=True, slots=True)
class KeyChanges:
    """The fields an update sets; `None` removes a limit (`models`: None = every model)."""

    name: str | None = None
    models: list[str] | Keep | None = KEEP
    rpm: int | Keep | None = KEEP
    max_concurrency: int | Keep | None = KEEP
    credit_cap: Decimal | Keep | None = KEEP
    expires_at: datetime | Keep | None = KEEP
    budget: Budget | Keep | None = KEEP

    def is_empty(self) -> bool:
        limits = (self.models, self.rpm, self.max_concurrency, self.credit_cap, self.expires_at, self.budget)
        return self.name is None and all(value is KEEP for value in limits)


async def update_key(session: AsyncSession, key_id: str, changes: KeyChanges) -> ApiKey:
    """Change only the fields given. The caller's unit of work drops this replica's key cache
    after the commit; other replicas see the change within GATEWAY_CACHE_TTL_S."""
    key = await get_key(session, key_id)
    if changes.is_empty():
        raise InvalidRequest(
            "Nothing to change: send at least one of name, models, rpm, max_concurrency, credit_cap, "
            "expires_at, budget."
        )
    if changes.name is not None:
        key.name = changes.name
    if changes.models is not KEEP:
        key.models = changes.models
    if changes.rpm is not KEEP:
        key.rpm = changes.rpm
    if changes.max_concurrency is not KEEP:
        key.max_concurrency = changes.max_concurrency
    if changes.credit_cap is not KEEP:
        key.credit_cap = changes.credit_cap
    if changes.expires_at is not KEEP:
        key.expires_at = changes.expires_at
    if changes.budget is not KEEP:
        await set_budget(session, key, key.id, changes.budget, utcnow())
    await session.flush()
    return key


async def revoke_key(session: AsyncSession, key_id: str) -> ApiKey:
    key = await get_key(session, key_id)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        await session.flush()
    return key
