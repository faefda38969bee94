"""Admin routes for gateway keys. The key itself appears only in the create response."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from app.admin.types import MAX_CONCURRENCY, MAX_RPM, Amount, Credits, Instant, Text
from app.http.deps import AdminSession
from app.keys import service
from app.keys.models import ApiKey

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
    created_at: datetime
    revoked_at: datetime | None

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
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
    return KeyCreated(**KeyOut.of(key).model_dump(), key=secret)


@router.get("", response_model=KeyList)
async def list_keys(session: AdminSession, account_id: Text | None = None) -> KeyList:
    return KeyList(data=[KeyOut.of(k) for k in await service.list_keys(session, account_id)])


@router.delete("/{key_id}", response_model=KeyOut)
async def revoke_key(key_id: Text, session: AdminSession) -> KeyOut:
    return KeyOut.of(await service.revoke_key(session, key_id))
