"""Admin routes for gateway keys. The key itself appears only in the create response."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.patching import BudgetIn, BudgetOut, PatchBody
from app.admin.types import MAX_CONCURRENCY, MAX_RPM, Amount, Credits, Instant, Text
from app.billing.budget_settings import KEEP, current_budget
from app.db import utcnow
from app.http.admin_roles import changed_fields, check_changes
from app.http.deps import AdminIdentity, AdminSession
from app.keys import service
from app.keys.models import ApiKey
from app.keys.service import KeyChanges

router = APIRouter(prefix="/admin/keys", tags=["admin: keys"])


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    account_id: Text
    name: Text = Field("", max_length=200)
    models: list[Text] | None = Field(None, description="Model ids this key may use; null = all.")
    rpm: int | None = Field(None, ge=1, le=MAX_RPM, description="Requests per minute.")
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY)
    credit_cap: Amount | None = Field(None, description="Most credits this key may spend in its account.")
    expires_at: Instant | None = None


class KeyPatch(PatchBody):
    READ_ONLY = frozenset({"id", "account_id", "prefix", "created_at", "revoked_at"})
    name: Text | None = Field(None, max_length=200)
    models: list[Text] | None = Field(None, description="Model ids this key may use; null = all.")
    rpm: int | None = Field(None, ge=1, le=MAX_RPM, description="Requests per minute; null = no limit.")
    max_concurrency: int | None = Field(None, ge=1, le=MAX_CONCURRENCY, description="null = no limit.")
    credit_cap: Amount | None = Field(None, description="Most credits this key may spend in its account; null = none.")
    expires_at: Instant | None = Field(None, description="null = never expires.")
    budget: BudgetIn | None = Field(None, description="Spending limit per UTC period; null removes it.")

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null (send an empty string for no name)")
        return value

    @field_validator("credit_cap")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value

    def changes(self) -> KeyChanges:
        def given(name: str) -> Any:
            return getattr(self, name) if self.sent(name) else KEEP

        return KeyChanges(
            name=self.name,
            models=given("models"),
            rpm=given("rpm"),
            max_concurrency=given("max_concurrency"),
            credit_cap=given("credit_cap"),
            expires_at=given("expires_at"),
            budget=(self.budget.budget() if self.budget else None) if self.sent("budget") else KEEP,
        )


class KeyOut(BaseModel):
    id: str
    account_id: str
    name: str
    prefix: str
    models: list[str] | None
    rpm: int | None
    max_concurrency: int | None
    credit_cap: Credits | None
    expires_at: datetime | None
    budget: BudgetOut | None = Field(description="The budget and the current period's spend; null without one.")
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    async def of(cls, session: AsyncSession, key: ApiKey) -> KeyOut:
        return cls(
            id=key.id,
            account_id=key.account_id,
            name=key.name,
            prefix=key.prefix,
            models=key.models,
            rpm=key.rpm,
            max_concurrency=key.max_concurrency,
            credit_cap=key.credit_cap,
            expires_at=key.expires_at,
            budget=BudgetOut.of(await current_budget(session, key, key.id, utcnow())),
            created_at=key.created_at,
            revoked_at=key.revoked_at,
        )


class KeyCreated(KeyOut):
    key: str = Field(description="The gateway key. Shown only here; store it now.")


class KeyList(BaseModel):
    data: list[KeyOut]


@router.post("", status_code=201, response_model=KeyCreated)
async def create_key(body: KeyCreate, session: AdminSession) -> KeyCreated:
    key, secret = await service.create_key(
        session,
        account_id=body.account_id,
        name=body.name,
        models=body.models,
        rpm=body.rpm,
        max_concurrency=body.max_concurrency,
        credit_cap=body.credit_cap,
        expires_at=body.expires_at,
    )
    return KeyCreated(**(await KeyOut.of(session, key)).model_dump(), key=secret)


@router.get("", response_model=KeyList)
async def list_keys(session: AdminSession, account_id: Text | None = None) -> KeyList:
    return KeyList(data=[await KeyOut.of(session, k) for k in await service.list_keys(session, account_id)])


@router.get("/{key_id}", response_model=KeyOut)
async def get_key(key_id: Text, session: AdminSession) -> KeyOut:
    return await KeyOut.of(session, await service.get_key(session, key_id))


@router.patch(
    "/{key_id}",
    response_model=KeyOut,
    summary="Change a key's name, models, limits, expiry or budget",
    description=(
        "Only the fields sent change; `null` removes a limit (`models: null` allows every model). "
        "A budget set in the middle of a period counts what the key has spent in it already. "
        "This replica applies the change at once, others within GATEWAY_CACHE_TTL_S. A finance "
        "operator may change `budget` only (403 `forbidden` naming any other field whose value it "
        "would change)."
    ),
)
async def update_key(key_id: Text, body: KeyPatch, session: AdminSession, identity: AdminIdentity) -> KeyOut:
    check_changes(identity, changed_fields(body, await service.get_key(session, key_id)))
    return await KeyOut.of(session, await service.update_key(session, key_id, body.changes()))


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: Text, session: AdminSession) -> KeyOut:
    return await KeyOut.of(session, await service.revoke_key(session, key_id))
