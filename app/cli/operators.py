"""`operators` and `audit`: the people with admin tokens and their roles, and the log of every
change made through the admin API or the command line."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from app.cli.output import Output
from app.cli.running import changing, reading, utc_datetime
from app.operators.roles import ROLES

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands

ENTITIES = ("account", "key", "model", "channel", "operator")
CHANGES_WIDTH = 120


def add_commands(commands: Subcommands) -> None:
    operators = commands.add_parser("operators", help="named admin tokens and their roles").add_subparsers(
        title="operators"
    )
    p = operators.add_parser("create", help="create an operator (its token is printed this once)")
    p.add_argument("name", help='unique; the audit log\'s actor (not "root")')
    p.add_argument(
        "--role",
        required=True,
        choices=ROLES,
        help="viewer reads all but secrets; finance also grants credits, sets budgets, exports; admin does all",
    )
    p.set_defaults(run=changing(operators_create))
    p = operators.add_parser("list", help="operators (never their tokens)")
    p.add_argument("--include-revoked", action="store_true")
    p.set_defaults(run=reading(operators_list))
    p = operators.add_parser("revoke", help="revoke an operator's token (the audit log keeps the name)")
    p.add_argument("operator", help="the operator's id or name")
    p.set_defaults(run=changing(operators_revoke))

    audit = commands.add_parser("audit", help="who changed what").add_subparsers(title="audit")
    p = audit.add_parser("list", help="changes, newest first, each field before and after (secrets as ***)")
    p.add_argument("--start", type=utc_datetime, help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", type=utc_datetime, help="ISO 8601, exclusive; naive means UTC")
    p.add_argument("--actor", help='an operator\'s name, "root", or "cli:USER"')
    p.add_argument("--entity", choices=ENTITIES)
    p.add_argument("--entity-id", help="the changed object's id")
    p.add_argument("--limit", type=_limit, default=100, help="1 to 1000 (default 100)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.set_defaults(run=reading(audit_list))


def _limit(text: str) -> int:
    from app.cli.options import whole_number

    value = whole_number(text)
    if not 1 <= value <= 1000:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1000 (got {value})")
    return value


async def operators_create(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.operators import OperatorCreate, OperatorCreated
    from app.operators import service

    body = OperatorCreate.model_validate({"name": args.name, "role": args.role})
    operator, token = await service.create_operator(session, body.name, body.role)
    created = OperatorCreated(
        id=operator.id, name=operator.name, role=operator.role, token=token, created_at=operator.created_at
    )
    return Output(created, once=("token",))


async def operators_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.operators import OperatorOut
    from app.operators import service

    operators = await service.list_operators(session, include_revoked=args.include_revoked)
    documents = [OperatorOut.of(operator).model_dump(mode="json") for operator in operators]
    return Output(documents, columns=("id", "name", "role", "created_at", "revoked_at"), empty="(no operators)")


async def operators_revoke(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.operators import OperatorOut
    from app.operators import service

    return Output(OperatorOut.of(await service.revoke_operator(session, args.operator)))


async def audit_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.audit import AuditEntryOut, AuditPage, page_cursor
    from app.billing.usage_report import check_range
    from app.errors import InvalidValue
    from app.operators.audit import audit_entries

    try:
        before_id = page_cursor(args.cursor)
    except InvalidValue:
        raise ValueError("--cursor must be the next_cursor of a previous page") from None
    start, end = check_range(args.start, args.end)
    entries = await audit_entries(
        session,
        start=start,
        end=end,
        actor=args.actor,
        entity=args.entity,
        entity_id=args.entity_id,
        limit=args.limit,
        before_id=before_id,
    )
    page = AuditPage(
        data=[AuditEntryOut.of(entry) for entry in entries],
        next_cursor=str(entries[-1].id) if len(entries) == args.limit else None,
    ).model_dump(mode="json")
    rows = [{**entry, "changes": _changes_cell(entry["changes"])} for entry in page["data"]]
    columns = ("at", "actor", "action", "entity", "entity_id", "changes")
    return Output(page, columns=columns, rows=rows, empty="(no changes)")


def _changes_cell(changes: dict[str, Any]) -> str:
    """`priority: 10 → 20; enabled: true → false`."""
    from app.cli.output import cell

    text = "; ".join(f"{name}: {cell(before)} → {cell(after)}" for name, (before, after) in changes.items())
    return text if len(text) <= CHANGES_WIDTH else text[: CHANGES_WIDTH - 1] + "…"  # --json has it all
