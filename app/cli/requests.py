"""`requests list|show`: the request log, as `GET /admin/requests` answers it, each request with
its upstream attempts."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from app.cli.output import Output
from app.cli.running import reading

if TYPE_CHECKING:
    from sqlalchemy.ext.asyncio import AsyncSession

    from app.cli.running import Subcommands

STATUSES = ("pending", "succeeded", "failed", "filtered", "canceled", "expired")
REQUEST_COLUMNS = (
    "id", "created_at", "status", ("account", "account_name"), ("key", "key_name"), "model", "channel",
    ("images", "images_delivered"), "credits", ("ms", "latency_ms"), ("error", "error_code"),
)  # fmt: skip
FILTERS = (
    "account", "key", "model", "channel", "status", "error_code", "user", "client_request_id", "start", "end", "limit",
    "cursor",
)  # fmt: skip
ATTEMPT_COLUMNS = (
    "n",
    "channel",
    "upstream_model",
    "outcome",
    "http_status",
    "latency_ms",
    "images",
    "possibly_billed",
)


def add_commands(commands: Subcommands) -> None:
    requests = commands.add_parser("requests", help="the request log").add_subparsers(title="requests")
    p = requests.add_parser("list", help="requests, newest first, filtered; each with its attempts")
    p.add_argument("--account", help="id or name")
    p.add_argument("--key", help="id, prefix (igw_abcd1234) or name")
    p.add_argument("--model", help="id or alias")
    p.add_argument("--channel", help="id or name: the channel that served (or was called last)")
    p.add_argument("--status", choices=STATUSES)
    p.add_argument("--error-code", help="e.g. upstream_timeout")
    p.add_argument("--user", help="the caller's `user` field")
    p.add_argument("--client-request-id")
    p.add_argument("--start", help="ISO 8601, inclusive; naive means UTC")
    p.add_argument("--end", help="ISO 8601, exclusive; naive means UTC")
    p.add_argument("--limit", default="50", help="1 to 500 (default 50)")
    p.add_argument("--cursor", help="next_cursor of the previous page")
    p.set_defaults(run=reading(requests_list))
    p = requests.add_parser("show", help="one request with its billing facts and every upstream attempt")
    p.add_argument("id", help="the request's id (req_…)")
    p.set_defaults(run=reading(requests_show))


async def requests_list(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.requests import RequestPage, RequestSearch, _described
    from app.billing import request_log
    from app.billing.request_log import Cursor, RequestFilters
    from app.billing.usage_report import check_range
    from app.cli import lookup

    given = {name: getattr(args, name) for name in FILTERS if getattr(args, name) is not None}
    search = RequestSearch.model_validate(given)
    start, end = check_range(search.start, search.end)
    filters = RequestFilters(
        account_id=(await lookup.account(session, search.account)).id if search.account else None,
        key_id=(await lookup.key(session, search.key)).id if search.key else None,
        model=(await lookup.model(session, search.model)).id if search.model else None,
        channel_id=(await lookup.channel(session, search.channel)).id if search.channel else None,
        status=search.status,
        error_code=search.error_code,
        user=search.user,
        client_request_id=search.client_request_id,
        start=start,
        end=end,
    )
    after = Cursor.decode(search.cursor) if search.cursor is not None else None
    rows, following = await request_log.search(session, filters, search.limit, after)
    # The route's own rendering (names, tasks and attempts in a few queries per page).
    page = RequestPage(data=await _described(session, rows), next_cursor=following.encode() if following else None)
    document = page.model_dump(mode="json")
    return Output(document, columns=REQUEST_COLUMNS, rows=document["data"], empty="(no requests)")


async def requests_show(session: AsyncSession, args: argparse.Namespace) -> Output:
    from app.admin.requests import _described
    from app.billing.models import UsageRecord
    from app.errors import NotFound

    record = await session.get(UsageRecord, args.id)
    if record is None:
        raise NotFound(f"No request {args.id!r}.")
    (described,) = await _described(session, [record])
    document = described.model_dump(mode="json")
    return Output(document, table=lambda: _request_table(document))


def _request_table(document: dict[str, Any]) -> str:
    from app.cli.output import record_table, rows_table

    attempts = document["attempts"]
    head = record_table({k: v for k, v in document.items() if k != "attempts"})
    return f"{head}\n\nattempts:\n{rows_table(attempts, ATTEMPT_COLUMNS) if attempts else '(none)'}"
