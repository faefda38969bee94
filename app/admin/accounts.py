"""Admin routes for accounts and credits."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.patching import BudgetIn, BudgetOut, PatchBody
from app.admin.types import Amount, Credits, RowId, Text
from app.billing import accounts as service
from app.billing.accounts import AccountChanges
from app.billing.amounts import MAX_AMOUNT, render
from app.billing.budget_settings import KEEP, current_budget
from app.billing.models import Account
from app.db import utcnow
from app.errors import InvalidValue
from app.http.admin_roles import changed_fields, check_changes, shows_secrets
from app.http.deps import AdminIdentity, AdminSession
from app.operators.service import Identity

router = APIRouter(prefix="/admin/accounts", tags=["admin: accounts"])


class AccountCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Text = Field(min_length=1, max_length=200)
    credits: Amount | None = None


class CreditsChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: Amount = Field(description="Positive grants, negative takes back (never below zero available).")
    note: Text = Field("", max_length=500)
    actor: Text | None = Field(
        None,
        max_length=200,
        description=(
            "On whose behalf the change is made. The ledger's actor is always the caller's own name "
            '(the operator\'s, or "root"); with `actor` it reads "<caller> (on behalf of <actor>)".'
        ),
    )


class AccountPatch(PatchBody):
    READ_ONLY = frozenset({"id", "balance", "held", "available", "webhook_secret", "created_at"})
    name: Text | None = Field(None, min_length=1, max_length=200, description="Unique among accounts.")
    budget: BudgetIn | None = Field(None, description="Spending limit per UTC period; null removes it.")
    alert_below: Amount | None = Field(
        None, description="An account.low_balance alert fires when available credits fall below this; null: none."
    )

    @field_validator("name")
    @classmethod
    def _name_not_null(cls, value: Any) -> Any:
        if value is None:
            raise ValueError("must not be null")
        return value

    @field_validator("alert_below")
    @classmethod
    def _not_negative(cls, value: Any) -> Any:
        if value is not None and value < 0:
            raise ValueError("must not be negative")
        return value

    def changes(self) -> AccountChanges:
        return AccountChanges(
            name=self.name,
            budget=(self.budget.budget() if self.budget else None) if self.sent("budget") else KEEP,
            alert_below=self.alert_below if self.sent("alert_below") else KEEP,
        )


class AccountOut(BaseModel):
    id: str
    name: str
    balance: Credits
    held: Credits
    available: Credits
    webhook_secret: str | None = Field(description="Shown to admins only: null for viewer and finance operators.")
    budget: BudgetOut | None = Field(description="The budget and the current period's spend; null without one.")
    alert_below: Credits | None
    created_at: datetime

    @classmethod
    async def of(cls, session: AsyncSession, account: Account, *, secrets: bool = True) -> AccountOut:
        return cls(
            id=account.id,
            name=account.name,
            balance=account.balance,
            held=account.held,
            available=account.balance - account.held,
            webhook_secret=account.webhook_secret if secrets else None,
            budget=BudgetOut.of(await current_budget(session, account, account.id, utcnow())),
            alert_below=account.alert_below,
            created_at=account.created_at,
        )


class AccountList(BaseModel):
    data: list[AccountOut]


@router.post("", status_code=201, response_model=AccountOut)
async def create_account(body: AccountCreate, session: AdminSession, identity: AdminIdentity) -> AccountOut:
    if body.credits is not None and body.credits < 0:
        raise InvalidValue("credits must not be negative", param="credits")
    account = await service.create_account(session, body.name, body.credits or Decimal(0), actor=identity.name)
    return await AccountOut.of(session, account, secrets=shows_secrets(identity))


@router.get("", response_model=AccountList)
async def list_accounts(session: AdminSession, identity: AdminIdentity) -> AccountList:
    secrets = shows_secrets(identity)
    accounts = await service.list_accounts(session)
    return AccountList(data=[await AccountOut.of(session, a, secrets=secrets) for a in accounts])


@router.get("/{account_id}", response_model=AccountOut)
async def get_account(account_id: Text, session: AdminSession, identity: AdminIdentity) -> AccountOut:
    account = await service.get_account(session, account_id)
    return await AccountOut.of(session, account, secrets=shows_secrets(identity))


@router.patch(
    "/{account_id}",
    response_model=AccountOut,
    summary="Change an account's name, budget or low-balance threshold",
    description=(
        "Only the fields sent change; `null` removes a budget or a threshold. A budget set in the "
        "middle of a period counts what the period has spent already. 409 `conflict` when another "
        "account has the name. A finance operator may change `budget` and `alert_below` only (403 "
        "`forbidden` naming any other field whose value it would change)."
    ),
)
async def update_account(
    account_id: Text, body: AccountPatch, session: AdminSession, identity: AdminIdentity
) -> AccountOut:
    check_changes(identity, changed_fields(body, await service.get_account(session, account_id)))
    account = await service.update_account(session, account_id, body.changes())
    return await AccountOut.of(session, account, secrets=shows_secrets(identity))


@router.post(
    "/{account_id}/credits",
    response_model=AccountOut,
    summary="Grant or take back credits",
    description=(
        "A positive `amount` grants, a negative one takes back (never below zero available). The "
        "ledger entry's actor is the caller's name; the change is in the audit log as a `grant` or "
        "an `adjustment`. Finance and admin roles."
    ),
)
async def change_credits(
    account_id: Text, body: CreditsChange, session: AdminSession, identity: AdminIdentity
) -> AccountOut:
    current = await service.get_account(session, account_id)
    # Balances are 64-bit counts of 1/10,000 credit (at most ~9.2e14 credits): repeated grants
    # must not overflow the column. The cap is the largest single amount, far below that limit.
    if body.amount > 0 and current.balance + body.amount > MAX_AMOUNT:
        raise InvalidValue(
            f"amount would take the balance past {render(MAX_AMOUNT)} credits, the most an account can hold.",
            param="amount",
        )
    actor = _ledger_actor(identity, body)
    account = await service.adjust_credits(session, account_id, body.amount, note=body.note, actor=actor)
    return await AccountOut.of(session, account, secrets=shows_secrets(identity))


def _ledger_actor(identity: Identity, body: CreditsChange) -> str:
    # The authenticated name always comes first: a body cannot put words in another's mouth.
    if body.actor and body.actor != identity.name:
        return f"{identity.name} (on behalf of {body.actor})"[:200]
    return identity.name


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
