"""`image-gateway alerts list`: what the gateway announced at GATEWAY_ALERT_URL, or still has to."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.cli.output import Output
from app.cli.running import reading

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands


def add_commands(commands: Subcommands) -> None:
    alerts = commands.add_parser("alerts", help="alerts sent to GATEWAY_ALERT_URL").add_subparsers(title="alerts")
    p = alerts.add_parser("list", help="recent alerts, newest first, with their delivery state")
    p.add_argument("--status", choices=["pending", "delivered", "failed"])
    p.add_argument("--limit", type=_limit, default=50, help="1 to 500 (default 50)")
    p.set_defaults(run=reading(cmd_alerts_list))


def _limit(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 500:
        raise argparse.ArgumentTypeError("must be between 1 and 500")
    return value


async def cmd_alerts_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.alerts import AlertOut, AlertPage
    from app.alerts.recent import recent_alerts

    alerts = await recent_alerts(session, args.status, args.limit)
    # The same document GET /admin/alerts answers.
    page = AlertPage(data=[AlertOut.of(alert) for alert in alerts]).model_dump(mode="json")
    columns = ("created_at", "type", "status", "attempts", "data", "last_error")
    return Output(page, columns=columns, rows=page["data"], empty="(no alerts)")
