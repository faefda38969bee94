"""What an operator manages: accounts and their credits, gateway keys, upstream channels.
Each command prints what the matching admin API route answers."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from app.cli.running import in_transaction, print_json
from app.cli.secrets import configured_cipher

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands


def add_commands(commands: Subcommands) -> None:
    accounts = commands.add_parser("accounts", help="manage accounts").add_subparsers(title="accounts")
    p = accounts.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--credits", default="0")
    p.set_defaults(run=in_transaction(cmd_accounts_create))
    accounts.add_parser("list").set_defaults(run=in_transaction(cmd_accounts_list))
    p = accounts.add_parser("grant", help="add (or with a negative amount, take back) credits")
    p.add_argument("id")
    p.add_argument("amount")
    p.add_argument("--note", default="")
    p.add_argument("--actor", default="cli")
    p.set_defaults(run=in_transaction(cmd_accounts_grant))

    keys = commands.add_parser("keys", help="manage gateway keys").add_subparsers(title="keys")
    p = keys.add_parser("create", help="create a key (printed once)")
    p.add_argument("--account", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--models", help="comma-separated model ids this key may use (default: all)")
    p.set_defaults(run=in_transaction(cmd_keys_create))
    p = keys.add_parser("list")
    p.add_argument("--account")
    p.set_defaults(run=in_transaction(cmd_keys_list))
    p = keys.add_parser("revoke")
    p.add_argument("id")
    p.set_defaults(run=in_transaction(cmd_keys_revoke))

    channels = commands.add_parser("channels", help="manage upstream channels").add_subparsers(title="channels")
    channels.add_parser("list").set_defaults(run=in_transaction(cmd_channels_list))
    p = channels.add_parser("add", help="add a channel")
    _channel_options(p, required=True)
    p.set_defaults(run=in_transaction(cmd_channels_add))
    p = channels.add_parser("update", help="change a channel")
    p.add_argument("id")
    _channel_options(p, required=False)
    p.set_defaults(run=in_transaction(cmd_channels_update))
    p = channels.add_parser("disable", help="stop routing to a channel")
    p.add_argument("id")
    p.set_defaults(run=in_transaction(cmd_channels_disable))


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


async def cmd_accounts_create(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.accounts import AccountOut
    from app.billing import accounts
    from app.billing.amounts import parse_amount

    credits = parse_amount(args.credits, field="credits")
    if credits < 0:
        raise ValueError("credits must not be negative")
    print_json(AccountOut.of(await accounts.create_account(session, args.name, credits, actor="cli")))
    return 0


async def cmd_accounts_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.accounts import AccountOut
    from app.billing import accounts

    print_json([AccountOut.of(a).model_dump(mode="json") for a in await accounts.list_accounts(session)])
    return 0


async def cmd_accounts_grant(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.accounts import AccountOut
    from app.billing import accounts
    from app.billing.amounts import parse_amount

    amount = parse_amount(args.amount, field="amount")
    account = await accounts.adjust_credits(session, args.id, amount, note=args.note, actor=args.actor)
    print_json(AccountOut.of(account))
    return 0


async def cmd_keys_create(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.keys import KeyCreated, KeyOut
    from app.keys import service as keys

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    key, secret = await keys.create_key(session, account_id=args.account, name=args.name, models=models)
    print_json(KeyCreated(**KeyOut.of(key).model_dump(), key=secret))
    return 0


async def cmd_keys_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.keys import KeyOut
    from app.keys import service as keys

    print_json([KeyOut.of(k).model_dump(mode="json") for k in await keys.list_keys(session, args.account)])
    return 0


async def cmd_keys_revoke(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.keys import KeyOut
    from app.keys import service as keys

    print_json(KeyOut.of(await keys.revoke_key(session, args.id)))
    return 0


async def cmd_channels_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service as catalog

    print_json([ChannelOut.of(c).model_dump(mode="json") for c in await catalog.list_channels(session)])
    return 0


async def cmd_channels_add(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.catalog_schemas import ChannelCreate, ChannelOut
    from app.catalog import service as catalog

    fields = ChannelCreate.model_validate(_channel_fields(args)).changes()
    fields.setdefault("auth", {})
    print_json(ChannelOut.of(await catalog.create_channel(session, configured_cipher(), fields)))
    return 0


async def cmd_channels_update(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.catalog_schemas import ChannelFields, ChannelOut
    from app.catalog import service as catalog

    fields = ChannelFields.model_validate(_channel_fields(args)).changes()
    print_json(ChannelOut.of(await catalog.update_channel(session, configured_cipher(), args.id, fields)))
    return 0


async def cmd_channels_disable(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.catalog_schemas import ChannelOut
    from app.catalog import service as catalog

    channel = await catalog.update_channel(session, configured_cipher(), args.id, {"enabled": False})
    print_json(ChannelOut.of(channel))
    return 0
