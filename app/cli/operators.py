"""What an operator manages: accounts and their credits, gateway keys, upstream channels.
Each command prints what the matching admin API route answers.

A command that changes something prints only once its change is committed: a reader that goes
away early (`| head -1`) must not roll the change back.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from app.cli.running import in_transaction, print_json, with_database
from app.cli.secrets import configured_cipher

if TYPE_CHECKING:
    from pydantic import BaseModel
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Run, Subcommands
    from app.db import Database

    Change = Callable[[AsyncSession, argparse.Namespace], Awaitable[BaseModel]]


def committed(command: Change) -> Run:
    """Run a change in one unit of work and print its result after the commit."""

    async def run(db: Database, args: argparse.Namespace) -> int:
        async with db.transaction() as session:
            result = await command(session, args)
        print_json(result)
        return 0

    return with_database(run)


def add_commands(commands: Subcommands) -> None:
    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(title="accounts")
    p = accounts.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--credits", default="0")
    p.set_defaults(run=committed(cmd_accounts_create))
    accounts.add_parser("list").set_defaults(run=in_transaction(cmd_accounts_list))
    p = accounts.add_parser("grant", help="add (or with a negative amount, take back) credits")
    p.add_argument("id", help="the account's id or name")
    p.add_argument("amount")
    p.add_argument("--note", default="")
    p.add_argument("--actor", default="cli")
    p.set_defaults(run=committed(cmd_accounts_grant))
    p = accounts.add_parser("update", help="change an account's name, budget or low-balance threshold")
    p.add_argument("account", help="the account's id or name")
    p.add_argument("--name", help="a new name (unique among accounts)")
    _budget_options(p)
    threshold = p.add_mutually_exclusive_group()
    threshold.add_argument(
        "--alert-below", metavar="CREDITS", help="send account.low_balance when available credits fall below this"
    )
    threshold.add_argument("--no-alert-below", action="store_true", help="no low-balance alert")
    p.set_defaults(run=committed(cmd_accounts_update))

    keys = commands.add_parser("keys", help="manage gateway keys").add_subparsers(title="keys")
    p = keys.add_parser("create", help="create a key (printed once)")
    p.add_argument("--account", required=True, help="the account's id or name")
    p.add_argument("--name", default="")
    p.add_argument("--models", help="comma-separated model ids this key may use (default: all)")
    p.set_defaults(run=committed(cmd_keys_create))
    p = keys.add_parser("list")
    p.add_argument("--account")
    p.set_defaults(run=in_transaction(cmd_keys_list))
    p = keys.add_parser("revoke")
    p.add_argument("id")
    p.set_defaults(run=committed(cmd_keys_revoke))
    p = keys.add_parser("update", help="change a key's name, models, limits, expiry or budget")
    p.add_argument("key", help="the key's id (or its name, if no other key has it)")
    p.add_argument("--name")
    models = p.add_mutually_exclusive_group()
    models.add_argument("--models", help="comma-separated model ids this key may use")
    models.add_argument("--all-models", action="store_true", help="allow every model")
    for option, meta in (("rpm", "N"), ("max-concurrency", "N"), ("credit-cap", "CREDITS"), ("expires-at", "ISO")):
        p.add_argument(f"--{option}", metavar=meta, help="'none' removes it")
    _budget_options(p)
    p.set_defaults(run=committed(cmd_keys_update))

    channels = commands.add_parser("channels", help="manage upstream channels").add_subparsers(title="channels")
    channels.add_parser("list").set_defaults(run=in_transaction(cmd_channels_list))
    p = channels.add_parser("add", help="add a channel")
    _channel_options(p, required=True)
    p.set_defaults(run=committed(cmd_channels_add))
    p = channels.add_parser("update", help="change a channel")
    p.add_argument("id")
    _channel_options(p, required=False)
    p.set_defaults(run=committed(cmd_channels_update))
    p = channels.add_parser("disable", help="stop routing to a channel")
    p.add_argument("id")
    p.set_defaults(run=committed(cmd_channels_disable))


def _channel_options(p: argparse.ArgumentParser, *, required: bool) -> None:
    p.add_argument("--name", required=required)
    p.add_argument("--provider", required=required)
    p.add_argument("--base-url")
    p.add_argument("--api-key", help="secret; prefer --api-key-env")
    p.add_argument("--api-key-env", help="environment variable that holds the upstream key")
    p.add_argument("--service-account-file")
    p.add_argument("--auth-style", choices=["x-goog-api-key", "bearer", "query"])
    p.add_argument("--models", help='JSON object, e.g. \'{"imagen4": "gemini-3.1-flash-image"}\'')
    p.add_argument("--priority", type=int)
    p.add_argument("--weight", type=int)
    p.add_argument("--multiplier")
    p.add_argument("--timeout", type=float, dest="timeout_s")
    p.add_argument("--max-concurrency", type=int)
    p.add_argument("--enabled", choices=["true", "false"])


def _budget_options(p: argparse.ArgumentParser) -> None:
    budget = p.add_mutually_exclusive_group()
    budget.add_argument(
        "--budget", metavar="CREDITS/PERIOD", help="most credits per UTC day, week or month, e.g. 5000/month"
    )
    budget.add_argument("--no-budget", action="store_true", help="remove the budget")


def _budget_field(args: argparse.Namespace, fields: dict[str, Any]) -> None:
    """--budget 500/day as the admin API's `budget` object (validated by its schema)."""
    if args.no_budget:
        fields["budget"] = None
    elif args.budget is not None:
        credits, slash, period = args.budget.partition("/")
        if not slash:
            raise ValueError(f"--budget must be CREDITS/PERIOD, e.g. 5000/month (got {args.budget!r})")
        fields["budget"] = {"credits": credits.strip(), "period": period.strip()}


def _or_none(value: str | None) -> str | None:
    return None if value is not None and value.strip().lower() == "none" else value


_CHANNEL_FIELDS = ("name", "provider", "base_url", "priority", "weight", "multiplier", "timeout_s", "max_concurrency")


def _channel_fields(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as the admin API's channel body (validated by its schemas)."""
    fields: dict[str, Any] = {name: getattr(args, name) for name in _CHANNEL_FIELDS if getattr(args, name) is not None}
    if args.models is not None:
        fields["models"] = json.loads(args.models)
    if args.enabled is not None:
        fields["enabled"] = args.enabled == "true"
    auth = {
        "api_key": args.api_key,
        "api_key_env": args.api_key_env,
        "service_account_file": args.service_account_file,
        "style": args.auth_style,
    }
    auth = {k: v for k, v in auth.items() if v is not None}
    if auth:
        fields["auth"] = auth
    return fields


async def cmd_accounts_create(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.accounts import AccountOut
    from app.billing import accounts
    from app.billing.amounts import parse_amount

    credits = parse_amount(args.credits, field="credits")
    if credits < 0:
        raise ValueError("credits must not be negative")
    return await AccountOut.of(session, await accounts.create_account(session, args.name, credits, actor="cli"))


async def cmd_accounts_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.accounts import AccountOut
    from app.billing import accounts

    print_json(
        [(await AccountOut.of(session, a)).model_dump(mode="json") for a in await accounts.list_accounts(session)]
    )
    return 0


async def cmd_accounts_grant(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.accounts import AccountOut
    from app.billing import accounts
    from app.billing.amounts import parse_amount

    amount = parse_amount(args.amount, field="amount")
    account_id = (await accounts.find_account(session, args.id)).id
    account = await accounts.adjust_credits(session, account_id, amount, note=args.note, actor=args.actor)
    return await AccountOut.of(session, account)


async def cmd_accounts_update(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.accounts import AccountOut, AccountPatch
    from app.billing import accounts

    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    _budget_field(args, fields)
    if args.no_alert_below:
        fields["alert_below"] = None
    elif args.alert_below is not None:
        fields["alert_below"] = args.alert_below
    changes = AccountPatch.model_validate(fields).changes()
    account = await accounts.find_account(session, args.account)
    return await AccountOut.of(session, await accounts.update_account(session, account.id, changes))


async def cmd_keys_create(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.keys import KeyCreated, KeyOut
    from app.billing.accounts import find_account
    from app.keys import service as keys

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    account = await find_account(session, args.account)
    key, secret = await keys.create_key(session, account_id=account.id, name=args.name, models=models)
    return KeyCreated(**(await KeyOut.of(session, key)).model_dump(), key=secret)


async def cmd_keys_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.keys import KeyOut
    from app.keys import service as keys

    print_json(
        [(await KeyOut.of(session, k)).model_dump(mode="json") for k in await keys.list_keys(session, args.account)]
    )
    return 0


async def cmd_keys_revoke(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.keys import KeyOut
    from app.keys import service as keys

    return await KeyOut.of(session, await keys.revoke_key(session, args.id))


async def cmd_keys_update(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.keys import KeyOut, KeyPatch
    from app.keys import service as keys

    fields: dict[str, Any] = {}
    if args.name is not None:
        fields["name"] = args.name
    if args.all_models:
        fields["models"] = None
    elif args.models is not None:
        fields["models"] = [m.strip() for m in args.models.split(",") if m.strip()]
    for name in ("rpm", "max_concurrency", "credit_cap", "expires_at"):
        value = getattr(args, name)
        if value is not None:
            fields[name] = _or_none(value)
    _budget_field(args, fields)
    changes = KeyPatch.model_validate(fields).changes()
    key = await keys.find_key(session, args.key)
    return await KeyOut.of(session, await keys.update_key(session, key.id, changes))


async def cmd_channels_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service as catalog

    print_json([ChannelOut.of(c).model_dump(mode="json") for c in await catalog.list_channels(session)])
    return 0


async def cmd_channels_add(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.catalog_schemas import ChannelCreate, ChannelOut
    from app.catalog import service as catalog

    fields = ChannelCreate.model_validate(_channel_fields(args)).changes()
    fields.setdefault("auth", {})
    return ChannelOut.of(await catalog.create_channel(session, configured_cipher(), fields))


async def cmd_channels_update(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.catalog_schemas import ChannelFields, ChannelOut
    from app.catalog import service as catalog

    fields = ChannelFields.model_validate(_channel_fields(args)).changes()
    return ChannelOut.of(await catalog.update_channel(session, configured_cipher(), args.id, fields))


async def cmd_channels_disable(session: AsyncSession, args: argparse.Namespace) -> BaseModel:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service as catalog

    channel = await catalog.update_channel(session, configured_cipher(), args.id, {"enabled": False})
    return ChannelOut.of(channel)
