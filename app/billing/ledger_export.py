"""The ledger as CSV: every movement of every balance (or one account's), oldest first, in pages."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.billing.amounts import render
from app.billing.models import Account, LedgerEntry
from app.billing.request_log import account_id_of
from app.billing.usage_export import Keyset, paged_csv, spreadsheet_safe
from app.db import Database
from app.errors import NotFound

COLUMNS = (
    "id", "created_at", "account_id", "account_name", "kind", "amount", "balance_after", "request_id", "note", "actor",
)  # fmt: skip


# The columns written, in the CSV's order, as plain rows (whole ORM entities took ~40 % of an
# export's CPU).
_SELECTED = (
    LedgerEntry.id, LedgerEntry.created_at, LedgerEntry.account_id, Account.name, LedgerEntry.kind,
    LedgerEntry.amount, LedgerEntry.balance_after, LedgerEntry.request_id, LedgerEntry.note, LedgerEntry.actor,
)  # fmt: skip


def _row(selected: Sequence[Any]) -> list[object]:
    entry_id, created_at, account_id, account_name, kind, amount, balance_after, request_id, note, actor = selected
    # The account's name, the note and the actor are typed by people: neutralised like every text
    # cell of the other exports. Amounts stay plain numbers (a charge is negative and must add up).
    return [
        entry_id, created_at.isoformat(), account_id, spreadsheet_safe(account_name), kind, render(amount),
        render(balance_after), request_id or "", spreadsheet_safe(note), spreadsheet_safe(actor),
    ]  # fmt: skip


async def ledger_account(session: AsyncSession, name_or_id: str) -> str:
    """The id of the account a filter names (by id or name); 404 naming `account` when none does."""
    account_id = await account_id_of(session, name_or_id)
    if await session.get(Account, account_id) is None:
        raise NotFound(f"No account with the id or name {name_or_id!r}.", param="account")
    return account_id


async def export_ledger_csv(
    db: Database, start: datetime | None, end: datetime | None, account_id: str | None = None
) -> AsyncIterator[str]:
    """Ledger entries created in [start, end), ordered by (created_at, id): on the created_at
    index for every account, or on the (account_id, created_at) index for one."""
    pages = Keyset(
        _SELECTED,
        LedgerEntry.created_at,
        LedgerEntry.id,
        start,
        end,
        join=(Account, Account.id == LedgerEntry.account_id),
    )
    where = [LedgerEntry.account_id == account_id] if account_id is not None else []
    async for chunk in paged_csv(db, COLUMNS, pages, _row, where):
        yield chunk
