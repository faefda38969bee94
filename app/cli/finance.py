"""What finance runs: usage grouped or row by row, and the ledger's invariants."""

from __future__ import annotations

import argparse
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.cli.output import Output, emit
from app.cli.running import reading, utc_datetime, with_database
from app.settings import Settings

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands
    from app.db import Database


def add_commands(commands: Subcommands) -> None:
    usage = commands.add_parser("usage", help="usage for finance").add_subparsers(title="usage")
    p = usage.add_parser("report", help="requests, images, credits, upstream cost and margin, grouped")
    _period_options(p)
    p.add_argument("--month", type=_month, help="a UTC month, YYYY-MM (instead of --start/--end)")
    p.add_argument(
        "--group-by",
        default="",
        help="comma-separated: account,key,model,channel,day,upstream_model,provider,status,month,user",
    )
    p.add_argument("--account", help="only this account (id or name)")
    p.add_argument("--format", choices=("json", "csv"), help="json or csv (default: a table on a terminal, else JSON)")
    p.set_defaults(run=reading(cmd_usage_report))
    p = usage.add_parser("export", help="one CSV row per request")
    _period_options(p)
    p.add_argument("--account", help="only this account (id or name)")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=with_database(cmd_usage_export, changes=False))
    _add_reconcile_and_attempts(usage)

    ledger = commands.add_parser("ledger", help="money invariants").add_subparsers(title="ledger")
    check = ledger.add_parser("check", help="exit 1 and list problems when an invariant is broken")
    check.set_defaults(run=reading(cmd_ledger_check))
    _add_ledger_export(ledger)


def _period_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--start", type=utc_datetime, help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", type=utc_datetime, help="ISO 8601, exclusive; naive means UTC")


def _month(text: str) -> str:
    """Checked as the command line is read, so a wrong month is refused before any database work."""
    from app.billing.usage_report import month_range
    from app.errors import GatewayError

    try:
        month_range(text)
    except GatewayError as exc:
        raise argparse.ArgumentTypeError(exc.message) from None
    return text


async def cmd_usage_report(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.usage_schemas import usage_csv, usage_report_out
    from app.billing.usage_report import month_range, parse_group_by, usage_report
    from app.cli import lookup

    groups = parse_group_by(args.group_by)
    start, end = args.start, args.end
    if args.month is not None:
        if start is not None or end is not None:
            raise ValueError("give either --month or --start/--end, not both")
        start, end = month_range(args.month)
    report = await usage_report(
        session,
        start=start,
        end=end,
        group_by=groups,
        account_id=(await lookup.account(session, args.account)).id if args.account else None,
        credit_value=Settings().credit_value,
    )
    # The same document GET /admin/usage answers, grouped fields only.
    out = await usage_report_out(session, report)
    document = out.model_dump(mode="json", exclude_unset=True)
    if args.format == "csv":
        return Output(document, raw=usage_csv(out, groups))
    # On a terminal: the rows, then the totals under the first grouped column.
    first = next(iter(document["rows"][0]), None) if document["rows"] else None
    totals = {first: "TOTAL", **document["totals"]} if first else document["totals"]
    return Output(document, rows=[*document["rows"], totals], force_json=args.format == "json")


async def cmd_usage_export(db: Database, args: argparse.Namespace) -> int:
    from app.billing.usage_export import export_csv
    from app.cli import lookup

    account_id = None
    if args.account is not None:
        async with db.sessions() as session:
            account_id = (await lookup.account(session, args.account)).id
    await _write_csv(export_csv(db, args.start, args.end, account_id), args.output)
    return 0


async def cmd_ledger_check(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.billing.ledger_check import check_ledger

    problems = await check_ledger(session, Settings().hold_timeout_s)
    verdict = "the ledger is consistent" if not problems else f"{len(problems)} problem(s):"
    return Output(
        {"ok": not problems, "problems": problems},
        table=lambda: "\n".join([verdict, *(f"- {problem}" for problem in problems)]),
        status=1 if problems else 0,
    )


def _add_reconcile_and_attempts(usage: Subcommands) -> None:
    p = usage.add_parser(
        "reconcile",
        help="match a provider's usage file (date,upstream_model,images[,cost]) against a channel's billable calls",
        description="Exit status: 0 when every row matches, 1 when a row differs, 2 when the file or channel is wrong.",
    )
    p.add_argument("--channel", required=True, help="the channel's name or id")
    p.add_argument("file", help="the provider's usage as CSV ('-' reads stdin)")
    p.set_defaults(run=with_database(cmd_usage_reconcile, changes=False))
    p = usage.add_parser("attempts", help="one CSV row per upstream call, with possibly_billed")
    _period_options(p)
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=with_database(cmd_usage_attempts, changes=False))


def _add_ledger_export(ledger: Subcommands) -> None:
    p = ledger.add_parser("export", help="one CSV row per ledger entry (grants, adjustments, charges)")
    _period_options(p)
    p.add_argument("--account", help="an account id or name")
    p.add_argument("--output", "-o", help="file to write (default: stdout)")
    p.set_defaults(run=with_database(cmd_ledger_export, changes=False))


async def cmd_usage_reconcile(db: Database, args: argparse.Namespace) -> int:
    from app.admin.reconcile import reconcile_channel
    from app.errors import GatewayError

    try:
        raw = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()  # noqa: ASYNC240
        async with db.sessions() as session:
            result = await reconcile_channel(session, args.channel, raw)
    except (OSError, GatewayError) as exc:
        # 2, not 1: a script must tell "the bill differs" from "nothing was compared".
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    document = result.model_dump(mode="json")
    output = Output(document, table=lambda: _reconciliation_table(document), status=0 if result.ok else 1)
    emit(output, as_json=args.json)
    return output.status


def _reconciliation_table(document: dict[str, Any]) -> str:
    """The rows as an aligned table, each row that differs marked, then a one-line verdict."""
    names = (
        "date", "upstream_model", "ours", "theirs", "difference", "ambiguous", "ambiguous_images", "cost_ours",
        "cost_theirs",
    )  # fmt: skip
    lines = [["", *names]]
    for row in document["rows"]:
        cells = ["" if row[name] is None else str(row[name]) for name in names]
        lines.append(["ok" if row["ok"] else "DIFFERS", *cells])
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    # Text left, numbers right (the first three columns are the mark, the day and the model).
    table = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w) for i, (cell, w) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for line in lines
    ]
    differing = sum(1 for row in document["rows"] if not row["ok"])
    verdict = "every row matches" if not differing else f"{differing} of {len(document['rows'])} rows differ"
    heading = f"channel {document['channel']} ({document['channel_id']}), {document['first_day']} .. {document['last_day']} (UTC)"
    notes = [f"ignored columns: {', '.join(document['ignored_columns'])}"] if document["ignored_columns"] else []
    return "\n".join([heading, *table, *notes, verdict])


async def cmd_usage_attempts(db: Database, args: argparse.Namespace) -> int:
    from app.billing.attempt_export import export_attempts_csv

    await _write_csv(export_attempts_csv(db, args.start, args.end), args.output)
    return 0


async def cmd_ledger_export(db: Database, args: argparse.Namespace) -> int:
    from app.billing.ledger_export import export_ledger_csv, ledger_account

    account_id = None
    if args.account is not None:
        async with db.sessions() as session:
            account_id = await ledger_account(session, args.account)
    await _write_csv(export_ledger_csv(db, args.start, args.end, account_id), args.output)
    return 0


async def _write_csv(chunks: AsyncIterator[str], output: str | None) -> None:
    # Pages are read in short transactions of their own: no unit of work is held open meanwhile.
    out = open(output, "w", newline="") if output else sys.stdout  # noqa: SIM115, ASYNC230
    try:
        async for chunk in chunks:
            out.write(chunk)
    finally:
        if out is not sys.stdout:
            out.close()
