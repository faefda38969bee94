"""What finance runs: usage grouped or row by row, and the ledger's invariants."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

import orjson

from app.cli.running import in_transaction, print_json, utc_datetime, with_database
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands
    from app.db import Database


def add_commands(commands: Subcommands) -> None:
    usage = commands.add_parser("usage", help="usage for finance").add_subparsers(title="usage")
    p = usage.add_parser("report", help="requests, images and credits, grouped (JSON)")
    _period_options(p)
    p.add_argument("--group-by", default="", help="comma-separated: account,key,model,channel,day")
    p.add_argument("--account")
    p.set_defaults(run=in_transaction(cmd_usage_report))
    p = usage.add_parser("export", help="one CSV row per request")
    _period_options(p)
    p.add_argument("--account")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=with_database(cmd_usage_export))

    ledger = commands.add_parser("ledger", help="money invariants").add_subparsers(title="ledger")
    check = ledger.add_parser("check", help="exit 1 and list problems when an invariant is broken")
    check.set_defaults(run=in_transaction(cmd_ledger_check))


def _period_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=utc_datetime, help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", type=utc_datetime, help="ISO 8601, exclusive; naive means UTC")


async def cmd_usage_report(session: AsyncSession, args: argparse.Namespace) -> int:
    from app.admin.billing import UsageReportOut
    from app.billing.usage_report import parse_group_by, usage_report

    report = await usage_report(
        session, start=args.start, end=args.end, group_by=parse_group_by(args.group_by), account_id=args.account
    )
    # The same document GET /admin/usage answers, grouped fields only.
    print_json(UsageReportOut.of(report).model_dump(mode="json", exclude_unset=True))
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
