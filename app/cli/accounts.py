"""`accounts` and `keys`: the teams that call the gateway, their credits and their gateway keys.
Each command does what the matching admin route does, through the same services and schemas."""

from __future__ import annotations

import argparse
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from app.cli import options
from app.cli.output import Output
from app.cli.running import changing, reading

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.admin.accounts import AccountOut
    from app.cli.running import Subcommands

ACCOUNT_COLUMNS = ("id", "name", "balance", "held", "available", "budget", "alert_below", "created_at")
KEY_COLUMNS = (
    "id", "prefix", "name", "account", "models", "rpm", ("concurrency", "max_concurrency"), "credit_cap", "budget",
    "expires_at", "status",
)  # fmt: skip


def add_commands(commands: Subcommands) -> None:
    _add_accounts(
        commands.add_parser("accounts", help="teams, their credits and budgets").add_subparsers(title="accounts")
    )
    _add_keys(commands.add_parser("keys", help="gateway keys").add_subparsers(title="keys"))


def _add_accounts(accounts: Subcommands) -> None:
    p = accounts.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--credits", default="0", help="credits to start with (default 0)")
    p.set_defaults(run=changing(accounts_create))
    accounts.add_parser("list", help="every account (never a webhook secret)").set_defaults(run=reading(accounts_list))
    p = accounts.add_parser("show", help="one account, with its budget")
    p.add_argument("account", help="the account's id or name")
    p.add_argument("--secret", action="store_true", help="also print its webhook secret")
    p.set_defaults(run=reading(accounts_show))
    p = accounts.add_parser("grant", help="add (or with a negative amount, take back) credits")
    p.add_argument("account", help="the account's id or name")
    p.add_argument("amount", help="credits; negative takes back (never below zero available)")
    p.add_argument("--note", default="", help="why, for the ledger")
    p.add_argument("--actor", help="on whose behalf (the ledger names who ran the command, cli:USER, first)")
    p.set_defaults(run=changing(accounts_grant))
    p = accounts.add_parser("update", help="change an account's name, budget or low-balance threshold")
    p.add_argument("account", help="the account's id or name")
    p.add_argument("--name", help="a new name (unique among accounts)")
    budget_options(p)
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument(
        "--alert-below", metavar="CREDITS", help="send account.low_balance when available credits fall below this"
    )
    threshold.add_argument("--no-alert-below", action="store_true", help="no low-balance alert")
    p.set_defaults(run=changing(accounts_update))
    p = accounts.add_parser("ledger", help="an account's ledger entries, newest first")
    p.add_argument("account", help="the account's id or name")
    p.add_argument("--limit", type=_bounded(1, 1000), default=100, help="1 to 1000 (default 100)")
    p.add_argument("--before", type=_bounded(1, 2**63 - 1), metavar="ENTRY_ID", help="entries older than this one")
    p.set_defaults(run=reading(accounts_ledger))


def _add_keys(keys: Subcommands) -> None:
    p = keys.add_parser("create", help="create a key (the key is printed this once)")
    p.add_argument("--account", required=True, help="the account's id or name")
    p.add_argument("--name", default="")
    p.add_argument("--models", type=options.model_list, help="model ids this key may use, a,b (default: all)")
    p.add_argument("--rpm", type=options.whole_number, metavar="N", help="requests per minute")
    p.add_argument("--max-concurrency", type=options.whole_number, metavar="N", help="requests at once")
    p.add_argument("--credit-cap", metavar="CREDITS", help="most credits this key may spend, ever")
    p.add_argument("--expires-at", metavar="ISO", help="when the key stops working (ISO 8601; naive means UTC)")
    p.add_argument("--budget", type=options.budget, metavar="CREDITS/PERIOD", help="e.g. 500/day (day, week, month)")
    p.set_defaults(run=changing(keys_create))
    p = keys.add_parser("list", help="every key (never the key itself)")
    p.add_argument("--account", help="only this account's keys (id or name)")
    p.set_defaults(run=reading(keys_list))
    p = keys.add_parser("show", help="one key")
    p.add_argument("key", help="the key's id, its prefix (igw_abcd1234) or its name if no other key has it")
    p.set_defaults(run=reading(keys_show))
    p = keys.add_parser("update", help="change a key's name, models, limits, expiry or budget")
    p.add_argument("key", help="the key's id, its prefix (igw_abcd1234) or its name if no other key has it")
    p.add_argument("--name")
    models = p.add_mutually_exclusive_group()
    models.add_argument("--models", type=options.model_list, help="model ids this key may use, a,b")
    models.add_argument("--all-models", action="store_true", help="allow every model")
    # Absent (SUPPRESS) is told apart from 'none', which removes the limit.
    unset = argparse.SUPPRESS
    p.add_argument("--rpm", type=options.whole_number_or_none, default=unset, metavar="N", help="'none' removes it")
    p.add_argument(
        "--max-concurrency", type=options.whole_number_or_none, default=unset, metavar="N", help="'none' removes it"
    )
    p.add_argument(
        "--credit-cap", type=options.text_or_none, default=unset, metavar="CREDITS", help="'none' removes it"
    )
    p.add_argument(
        "--expires-at", type=options.text_or_none, default=unset, metavar="ISO", help="'none': never expires"
    )
    budget_options(p)
    p.set_defaults(run=changing(keys_update))
    p = keys.add_parser("revoke", help="revoke a key (at once on this machine, within seconds elsewhere)")
    p.add_argument("key", help="the key's id, its prefix (igw_abcd1234) or its name if no other key has it")
    p.set_defaults(run=changing(keys_revoke))


def budget_options(p: argparse.ArgumentParser) -> None:
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget",
        type=options.budget,
        metavar="CREDITS/PERIOD",
        help="most credits per UTC day, week or month, e.g. 5000/month",
    )
    budget.add_argument("--no-budget", action="store_true", help="remove the budget")


def _bounded(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        value = options.whole_number(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high} (got {value})")
        return value

    parse.__name__ = "number"
    return parse


def _budget_field(args: argparse.Namespace, fields: dict[str, Any]) -> None:
    if args.no_budget:
        fields["budget"] = None
    elif args.budget is not None:
        fields["budget"] = args.budget


def budget_cell(budget: dict[str, Any] | None) -> str:
    """`120/1000 month`: spent of the budget, per period."""
    return "-" if not budget else f"{budget['spent']}/{budget['credits']} {budget['period']}"


def without_secret(account: AccountOut) -> dict[str, Any]:
    """The account as JSON without its webhook secret: what every command but `create` and
    `show --secret` prints, so that no secret ends up in a pasted output by accident."""
    return account.model_dump(mode="json", exclude={"webhook_secret"})


def _account_rows(documents: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**d, "budget": budget_cell(d["budget"])} for d in documents]


async def accounts_create(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import AccountCreate, AccountOut
    from app.billing import accounts
    from app.operators.audit import actor_of

    body = AccountCreate.model_validate({"name": args.name, "credits": args.credits})
    if body.credits is not None and body.credits < 0:
        raise ValueError("--credits must not be negative")
    credits = body.credits or Decimal(0)
    account = await accounts.create_account(session, body.name, credits, actor=actor_of(session))
    return Output(await AccountOut.of(session, account))


async def accounts_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import AccountOut
    from app.billing import accounts

    # No webhook secrets: a listing is pasted into tickets and shared terminals, and it would hand
    # out every team's. `accounts show --secret` prints one, on purpose.
    documents = [without_secret(await AccountOut.of(session, a)) for a in await accounts.list_accounts(session)]
    return Output(documents, columns=ACCOUNT_COLUMNS, rows=_account_rows(documents), empty="(no accounts)")


async def accounts_show(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import AccountOut
    from app.cli import lookup
    from app.cli.output import record_table

    shown = await AccountOut.of(session, await lookup.account(session, args.account))
    if not args.secret:
        return Output(without_secret(shown))
    document = shown.model_dump(mode="json")
    # Asked for by name, so on a terminal too (tables leave secrets out otherwise).
    return Output(
        document, table=lambda: f"{record_table(without_secret(shown))}\nwebhook_secret  {shown.webhook_secret}"
    )


async def accounts_grant(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import AccountOut, CreditsChange
    from app.billing import accounts
    from app.billing.amounts import MAX_AMOUNT, render
    from app.cli import lookup
    from app.operators.audit import actor_of

    change = CreditsChange.model_validate({"amount": args.amount, "note": args.note, "actor": args.actor})
    account = await lookup.account(session, args.account)
    if change.amount > 0 and account.balance + change.amount > MAX_AMOUNT:
        raise ValueError(f"that would take the balance past {render(MAX_AMOUNT)} credits, the most an account holds")
    # The ledger names who ran the command (as the audit log does), as the admin API names its
    # caller; --actor only adds on whose behalf.
    caller = actor_of(session)
    actor = f"{caller} (on behalf of {change.actor})"[:200] if change.actor and change.actor != caller else caller
    changed = await accounts.adjust_credits(session, account.id, change.amount, note=change.note, actor=actor)
    return Output(without_secret(await AccountOut.of(session, changed)))


async def accounts_update(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import AccountOut, AccountPatch
    from app.billing import accounts
    from app.cli import lookup

    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    _budget_field(args, fields)
    if args.no_alert_below:
        fields["alert_below"] = None
    elif args.alert_below is not None:
        fields["alert_below"] = args.alert_below
    if not fields:
        raise ValueError("nothing to change: give --name, --budget/--no-budget or --alert-below/--no-alert-below")
    changes = AccountPatch.model_validate(fields).changes()
    account = await lookup.account(session, args.account)
    changed = await accounts.update_account(session, account.id, changes)
    return Output(without_secret(await AccountOut.of(session, changed)))


async def accounts_ledger(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.accounts import LedgerEntryOut, LedgerPage
    from app.billing import accounts
    from app.cli import lookup

    account = await lookup.account(session, args.account)
    entries = await accounts.ledger_entries(session, account.id, limit=args.limit, before_id=args.before)
    data = [LedgerEntryOut.model_validate(entry, from_attributes=True) for entry in entries]
    page = LedgerPage(data=data, next_before=data[-1].id if len(data) == args.limit else None).model_dump(mode="json")
    columns = ("id", "created_at", "kind", "amount", "balance_after", "request_id", "note", "actor")
    return Output(page, columns=columns, rows=page["data"], empty="(no ledger entries)")


async def keys_create(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.keys import KeyCreate, KeyCreated, KeyOut, KeyPatch
    from app.cli import lookup
    from app.keys import service as keys

    account = await lookup.account(session, args.account)
    models = await catalog_ids(session, args.models) if args.models is not None else None
    given = {
        "rpm": args.rpm,
        "max_concurrency": args.max_concurrency,
        "credit_cap": args.credit_cap,
        "expires_at": args.expires_at,
    }
    body = KeyCreate.model_validate(
        {"account_id": account.id, "name": args.name, "models": models}
        | {name: value for name, value in given.items() if value is not None}
    )
    budget = KeyPatch.model_validate({"budget": args.budget}).changes() if args.budget is not None else None
    key, secret = await keys.create_key(
        session,
        account_id=body.account_id,
        name=body.name,
        models=body.models,
        rpm=body.rpm,
        max_concurrency=body.max_concurrency,
        credit_cap=body.credit_cap,
        expires_at=body.expires_at,
    )
    if budget is not None:
        key = await keys.update_key(session, key.id, budget)
    created = KeyCreated(**(await KeyOut.of(session, key)).model_dump(), key=secret)
    return Output(created, once=("key",))


async def catalog_ids(session: AsyncSession, models: list[str]) -> list[str]:
    """Models named by id or alias, as the catalog ids a key's allow-list holds: an alias stored
    there would never match, and an unknown name is a typo (both refused, naming it)."""
    from app.cli import lookup

    return list(dict.fromkeys([(await lookup.model(session, name)).id for name in models]))


async def keys_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.keys import KeyOut
    from app.billing.accounts import list_accounts
    from app.cli import lookup
    from app.keys import service as keys

    account_id = (await lookup.account(session, args.account)).id if args.account else None
    documents = [
        (await KeyOut.of(session, k)).model_dump(mode="json") for k in await keys.list_keys(session, account_id)
    ]
    names = {a.id: a.name for a in await list_accounts(session)}
    rows = [
        {
            **d,
            "account": names.get(d["account_id"], d["account_id"]),
            "budget": budget_cell(d["budget"]),
            "status": _status(d),
        }
        for d in documents
    ]
    return Output(documents, columns=KEY_COLUMNS, rows=rows, empty="(no keys)")


def _status(key: dict[str, Any]) -> str:
    from datetime import UTC, datetime

    if key["revoked_at"]:
        return "revoked"
    if key["expires_at"] and datetime.fromisoformat(key["expires_at"]) <= datetime.now(UTC):
        return "expired"
    return "active"


async def keys_show(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.keys import KeyOut
    from app.cli import lookup

    return Output(await KeyOut.of(session, await lookup.key(session, args.key)))


async def keys_update(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.keys import KeyOut, KeyPatch
    from app.cli import lookup
    from app.keys import service as keys

    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.all_models:
        fields["models"] = None
    elif args.models is not None:
        fields["models"] = args.models
    for name in ("rpm", "max_concurrency", "credit_cap", "expires_at"):
        if hasattr(args, name):
            fields[name] = getattr(args, name)
    _budget_field(args, fields)
    if not fields:
        raise ValueError("nothing to change: give at least one option (see `image-gateway keys update --help`)")
    if fields.get("models") is not None:
        fields["models"] = await catalog_ids(session, fields["models"])
    changes = KeyPatch.model_validate(fields).changes()
    key = await lookup.key(session, args.key)
    return Output(await KeyOut.of(session, await keys.update_key(session, key.id, changes)))


async def keys_revoke(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.keys import KeyOut
    from app.cli import lookup
    from app.keys import service as keys

    key = await lookup.key(session, args.key)
    return Output(await KeyOut.of(session, await keys.revoke_key(session, key.id)))
