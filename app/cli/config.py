"""`image-gateway config apply FILE [--prune] [--dry-run]` and `config export [-o FILE]`: the
models, channels and operators as a YAML file under review (docs/config.md).

`apply` reads and validates the whole file before it opens the database, applies it in one
transaction, and prints what it did only after the commit, with each new operator's token (shown
this once). Applying the same file again reports `0 changed`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.output import Output, emit, rows_table
from app.cli.running import with_database

if TYPE_CHECKING:
    from app.admin.config_apply import ApplyReport
    from app.cli.running import Subcommands
    from app.db import Database


def add_commands(commands: Subcommands) -> None:
    config = commands.add_parser(
        "config", help="apply or export the models, channels and operators as a YAML file"
    ).add_subparsers(title="config")
    p = config.add_parser(
        "apply",
        help="create or update what the file lists (fields it leaves out keep their values)",
        description="Apply a config file (docs/config.md) in one transaction; nothing is changed if any entry is bad.",
    )
    p.add_argument("file", help="the YAML file")
    p.add_argument(
        "--prune",
        action="store_true",
        help="disable the models and channels, and revoke the operators, that a section of the file no longer lists",
    )
    p.add_argument("--dry-run", action="store_true", help="show what would change, and change nothing")
    p.set_defaults(run=cmd_config_apply)
    p = config.add_parser("export", help="print the current models, channels and operators as a config file")
    p.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    p.set_defaults(run=cmd_config_export)


def cmd_config_apply(args: argparse.Namespace) -> int:
    from app.admin.config_file import load_config

    # Read and validated whole before any database is opened: a bad file changes nothing.
    config = load_config(Path(args.file))

    async def run(db: Database, args: argparse.Namespace) -> int:
        from app.admin.config_apply import apply_to_database
        from app.cli.secrets import configured_cipher

        report = await apply_to_database(
            db, configured_cipher(), config, args.file, prune=args.prune, dry_run=args.dry_run, actor=_actor()
        )
        # Printed after the commit (apply_to_database returns only then).
        emit(
            Output(document=report.document(), table=lambda: _table(report)), as_json=bool(getattr(args, "json", False))
        )
        return 0

    return with_database(run)(args)


def cmd_config_export(args: argparse.Namespace) -> int:
    exported: list[str] = []

    async def run(db: Database, args: argparse.Namespace) -> int:
        from app.admin.config_export import export_config

        async with db.sessions() as session:
            exported.append(await export_config(session))
        return 0

    status = with_database(run, changes=False)(args)
    if args.output:
        Path(args.output).write_text(exported[0], encoding="utf-8")
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(exported[0])
    return status


def _actor() -> str:
    """Who the audit log says made the changes: the system user, as for every command."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container's bare uid)
        return "cli:unknown"


def _table(report: ApplyReport) -> str:
    rows = [outcome.document() for outcome in report.outcomes]
    lines = [rows_table(rows, ["kind", "name", "action", "fields", "note"]) if rows else "(the file lists nothing)"]
    verb = "would change" if report.dry_run else "changed"
    lines.append(f"\n{report.changed} {verb}" + (" (dry run: nothing was written)" if report.dry_run else ""))
    for outcome in report.outcomes:
        if outcome.token is not None:
            lines.append(f"\ntoken of operator {outcome.name}: {outcome.token}")
            lines.append("  ^ shown once: store it now, it cannot be shown again")
    return "\n".join(lines)
