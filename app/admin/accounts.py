"""Admin routes for accounts and credits."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field

from app.admin.types import Amount, Credits, RowId, Text
from app.billing import accounts as service
from app.billing.amounts import MAX_AMOUNT, render
from app.billing.models import Account
from app.errors import InvalidValue
from app.http.deps import AdminSession

router = APIRouter(prefix="/admin/accounts", tags=["admin: accounts"])


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    credits: Amount | None = None


class CreditsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount = Field(description="Positive grants, negative takes back (never below zero available).")
    note: Text = Field("", max_length=500)
    actor: Text = Field("admin-api", max_length=200, description="Who made the change, for the ledger.")


class AccountOut(BaseModel):
    id: str
    name: str
    balance: Credits
    held: Credits
    available: Credits
    webhook_secret: str
    created_at: datetime

    @classmethod
    def of(cls, account: Account) -> AccountOut:
        return cls(
            id=account.id,
            name=account.name,
            balance=account.balance,
            held=account.held,
            available=account.balance - account.held,
            webhook_secret=account.webhook_secret,
            created_at=account.created_at,
        )


class AccountList(BaseModel):
    data: list[AccountOut]


@router.post("", status_code=201, response_model=AccountOut)
async def create_account(body: AccountCreate, session: AdminSession) -> AccountOut:
    if body.credits is not None and body.credits < 0:
        raise InvalidValue("credits must not be negative", param="credits")
    account = await service.create_account(session, body.name, body.credits or Decimal(0), actor="admin-api")
    return AccountOut.of(account)


@router.get("", response_model=AccountList)
async def list_accounts(session: AdminSession) -> AccountList:
    return AccountList(data=[AccountOut.of(a) for a in await service.list_accounts(session)])


@router.get("/{account_id}", response_model=AccountOut)
async def get_account(account_id: Text, session: AdminSession) -> AccountOut:
    return AccountOut.of(await service.get_account(session, account_id))


@router.post("/{account_id}/credits", response_model=AccountOut)
async def change_credits(account_id: Text, body: CreditsChange, session: AdminSession) -> AccountOut:
    current = await service.get_account(session, account_id)
    # Balances are 64-bit counts of 1/10,000 credit (at most ~9.2e14 credits): repeated grants
    # must not overflow the column. The cap is the largest single amount, far below that limit.
    if body.amount > 0 and current.balance + body.amount > MAX_AMOUNT:
        raise InvalidValue(
            f"amount would take the balance past {render(MAX_AMOUNT)} credits, the most an account can hold.",
            param="amount",
        )
    account = await service.adjust_credits(session, account_id, body.amount, note=body.note, actor=body.actor)
    return AccountOut.of(account)


class LedgerEntryOut(BaseModel):
    id: int
    kind: str = Field(description="grant | adjustment | charge")
    amount: Credits
    balance_after: Credits
    request_id: str | None
    note: str
    actor: str
    created_at: datetime


class LedgerPage(BaseModel):
    data: list[LedgerEntryOut]
    next_before: int | None = Field(description="Pass as `before` for the next (older) page.")


@router.get("/{account_id}/ledger", response_model=LedgerPage)
async def account_ledger(
    account_id: Text, session: AdminSession, limit: int = Query(100, ge=1, le=1000), before: RowId | None = None
) -> LedgerPage:
    entries = await service.ledger_entries(session, account_id, limit=limit, before_id=before)
    data = [LedgerEntryOut.model_validate(entry, from_attributes=True) for entry in entries]
    return LedgerPage(data=data, next_before=data[-1].id if len(data) == limit else None)
