"""The `image-gateway` command (also `python -m app`).

Only light modules are imported at module level. With `serve --workers N` this process is
uvicorn's supervisor, which never handles a request: importing the services, models, SQLAlchemy
and the app here would cost it ~100 MB RSS for nothing (and the spawned workers re-import this
module too). Each command imports what it needs when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging.config
import math
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import BaseModel, ValidationError

from app.errors import GatewayError
from app.observability.logs import log_config
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.db import Database


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-gateway", description="Image Gateway server and operator tools.")
    sub = parser.add_subparsers(title="commands")

    serve = sub.add_parser("serve", help="run the API (and an in-process task worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API worker processes")
    serve.set_defaults(run=cmd_serve)

    sub.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    sub.add_parser("worker", help="run task workers (no HTTP) until SIGTERM").set_defaults(run=cmd_worker)

    acc = sub.add_parser("accounts", help="manage accounts").add_subparsers(title="accounts")
    p = acc.add_parser("create", help="create an account")
    p.add_argument("name")
    p.add_argument("--credits", default="0")
    p.set_defaults(run=_db(cmd_accounts_create))
    acc.add_parser("list").set_defaults(run=_db(cmd_accounts_list))
    p = acc.add_parser("grant", help="add (or with a negative amount, take back) credits")
    p.add_argument("id")
    p.add_argument("amount")
    p.add_argument("--note", default="")
    p.add_argument("--actor", default="cli")
    p.set_defaults(run=_db(cmd_accounts_grant))

    key = sub.add_parser("keys", help="manage gateway keys").add_subparsers(title="keys")
    p = key.add_parser("create", help="create a key (printed once)")
    p.add_argument("--account", required=True)
    p.add_argument("--name", default="")
    p.add_argument("--models", help="comma-separated model ids this key may use (default: all)")
    p.set_defaults(run=_db(cmd_keys_create))
    p = key.add_parser("list")
    p.add_argument("--account")
    p.set_defaults(run=_db(cmd_keys_list))
    p = key.add_parser("revoke")
    p.add_argument("id")
    p.set_defaults(run=_db(cmd_keys_revoke))

    ch = sub.add_parser("channels", help="manage upstream channels").add_subparsers(title="channels")
    ch.add_parser("list").set_defaults(run=_db(cmd_channels_list))
    p = ch.add_parser("add", help="add a channel")
    _channel_options(p, required=True)
    p.set_defaults(run=_db(cmd_channels_add))
    p = ch.add_parser("update", help="change a channel")
    p.add_argument("id")
    _channel_options(p, required=False)
    p.set_defaults(run=_db(cmd_channels_update))
    p = ch.add_parser("disable", help="stop routing to a channel")
    p.add_argument("id")
    p.set_defaults(run=_db(cmd_channels_disable))

    usage = sub.add_parser("usage", help="usage for finance").add_subparsers(title="usage")
    p = usage.add_parser("report", help="requests, images and credits, grouped (JSON)")
    p.add_argument("--start", type=utc_datetime, help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", type=utc_datetime, help="ISO 8601, exclusive; naive means UTC")
    p.add_argument("--group-by", default="", help="comma-separated: account,key,model,channel,day")
    p.add_argument("--account")
    p.set_defaults(run=_db(cmd_usage_report))
    p = usage.add_parser("export", help="one CSV row per request")
    p.add_argument("--start", type=utc_datetime, help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", type=utc_datetime, help="ISO 8601, exclusive; naive means UTC")
    p.add_argument("--account")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=_database(cmd_usage_export))

    ledger = sub.add_parser("ledger", help="money invariants").add_subparsers(title="ledger")
    ledger.add_parser("check", help="exit 1 and list problems when an invariant is broken").set_defaults(
        run=_db(cmd_ledger_check)
    )
    return parser


def utc_datetime(text: str) -> datetime:
    """`app.billing.usage_report.utc_datetime`, imported only when a date is given. Keeps the
    name: argparse reports a bad value as "invalid utc_datetime value"."""
    from app.billing.usage_report import utc_datetime as parse

    return parse(text)


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


def _channel_fields(args: argparse.Namespace) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name in (
        "name",
        "provider",
        "base_url",
        "priority",
        "weight",
        "multiplier",
        "timeout_s",
        "max_concurrency",
    ):
        value = getattr(args, name)
        if value is not None:
            fields[name] = value
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


if TYPE_CHECKING:
    Command = Callable[[AsyncSession, argparse.Namespace], Awaitable[int]]
    DatabaseCommand = Callable[[Database, argparse.Namespace], Awaitable[int]]


def _db(command: Command) -> Callable[[argparse.Namespace], int]:
    """Run a command in one unit of work (committed when it returns)."""

    async def in_transaction(db: Database, args: argparse.Namespace) -> int:
        async with db.transaction() as session:
            return await command(session, args)

    return _database(in_transaction)


def _database(command: DatabaseCommand) -> Callable[[argparse.Namespace], int]:
    """Run a command against GATEWAY_DATABASE_URL, migrated first."""

    def run(args: argparse.Namespace) -> int:
        from app.bootstrap import migrate
        from app.db import Database

        async def go() -> int:
            settings = Settings()
            settings.data_dir.mkdir(parents=True, exist_ok=True)
            await migrate(settings.database_url)
            db = Database(settings.database_url)
            try:
                return await command(db, args)
            finally:
                await db.dispose()

        return asyncio.run(go())

    return run


def _print(value: BaseModel | dict[str, Any] | list[Any]) -> None:
    data = value.model_dump(mode="json") if isinstance(value, BaseModel) else value
    print(json.dumps(data, indent=2, default=str))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if settings.auto_migrate:
        if args.workers > 1:
            # The supervisor only supervises: migrating in it would keep alembic and every model
            # in its memory (~36 MB) for its whole life, so a short-lived child does it.
            migrated = subprocess.run([sys.executable, "-m", "app", "migrate"], check=False)
            if migrated.returncode != 0:
                return migrated.returncode
        else:
            from app.bootstrap import migrate

            asyncio.run(migrate(settings.database_url))
    # The app is named by import string, so with workers > 1 only the workers import it.
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_config=log_config(),
        # SIGTERM: stop accepting, give in-flight requests this long, then run the lifespan's
        # shutdown (which puts running tasks back on the queue).
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) or None,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from app.bootstrap import migrate
    from app.memory import tune_malloc
    from app.tasks.standalone import run_worker

    tune_malloc()
    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    logging.config.dictConfig(log_config())
    if settings.auto_migrate:
        asyncio.run(migrate(settings.database_url))
    asyncio.run(run_worker(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    from app.bootstrap import migrate

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    asyncio.run(migrate(settings.database_url))
    print("database is up to date")
    return 0


async def cmd_accounts_create(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.accounts import service as accounts
    from app.accounts.admin_api import AccountOut
    from app.billing.amounts import parse_amount

    credits = parse_amount(args.credits, field="credits")
    if credits < 0:
        raise ValueError("credits must not be negative")
    _print(AccountOut.of(await accounts.create_account(session, args.name, credits, actor="cli")))
    return 0


async def cmd_accounts_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.accounts import service as accounts
    from app.accounts.admin_api import AccountOut

    _print([AccountOut.of(a).model_dump(mode="json") for a in await accounts.list_accounts(session)])
    return 0


async def cmd_accounts_grant(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.accounts import service as accounts
    from app.accounts.admin_api import AccountOut
    from app.billing.amounts import parse_amount

    amount: Decimal = parse_amount(args.amount, field="amount")
    _print(AccountOut.of(await accounts.adjust_credits(session, args.id, amount, note=args.note, actor=args.actor)))
    return 0


async def cmd_keys_create(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.keys import service as keys
    from app.keys.admin_api import KeyCreated, KeyOut

    models = [m.strip() for m in args.models.split(",") if m.strip()] if args.models else None
    key, secret = await keys.create_key(session, account_id=args.account, name=args.name, models=models)
    _print(KeyCreated(**KeyOut.of(key).model_dump(), key=secret))
    return 0


async def cmd_keys_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.keys import service as keys
    from app.keys.admin_api import KeyOut

    _print([KeyOut.of(k).model_dump(mode="json") for k in await keys.list_keys(session, args.account)])
    return 0


async def cmd_keys_revoke(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.keys import service as keys
    from app.keys.admin_api import KeyOut

    _print(KeyOut.of(await keys.revoke_key(session, args.id)))
    return 0


async def cmd_channels_list(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.catalog import service as catalog
    from app.catalog.schemas import ChannelOut

    _print([ChannelOut.of(c).model_dump(mode="json") for c in await catalog.list_channels(session)])
    return 0


async def cmd_channels_add(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.catalog import service as catalog
    from app.catalog.schemas import ChannelCreate, ChannelOut

    fields = ChannelCreate.model_validate(_channel_fields(args)).changes()
    fields.setdefault("auth", {})
    _print(ChannelOut.of(await catalog.create_channel(session, fields)))
    return 0


async def cmd_channels_update(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.catalog import service as catalog
    from app.catalog.schemas import ChannelFields, ChannelOut

    fields = ChannelFields.model_validate(_channel_fields(args)).changes()
    _print(ChannelOut.of(await catalog.update_channel(session, args.id, fields)))
    return 0


async def cmd_channels_disable(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.catalog import service as catalog
    from app.catalog.schemas import ChannelOut

    _print(ChannelOut.of(await catalog.update_channel(session, args.id, {"enabled": False})))
    return 0


async def cmd_usage_report(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.billing.admin_api import UsageReportOut
    from app.billing.usage_report import parse_group_by, usage_report

    report = await usage_report(
        session, start=args.start, end=args.end, group_by=parse_group_by(args.group_by), account_id=args.account
    )
    # The same document GET /admin/usage answers, grouped fields only.
    _print(UsageReportOut.of(report).model_dump(mode="json", exclude_unset=True))
    return 0


async def cmd_usage_export(db: Database, args: argparse.Namespace) -> int:
    from app.billing.usage_export import export_csv

    # Pages are read in short transactions of their own: no unit of work is held open meanwhile.
    out = open(args.output, "w", newline="") if args.output else sys.stdout  # noqa: SIM115, ASYNC230
    try:
        async for chunk in export_csv(db, args.start, args.end, args.account):
            out.write(chunk)
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


async def cmd_ledger_check(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.billing.ledger_check import check_ledger

    problems = await check_ledger(session, Settings().hold_timeout_s)
    print(orjson.dumps({"ok": not problems, "problems": problems}, option=orjson.OPT_INDENT_2).decode())
    return 1 if problems else 0
