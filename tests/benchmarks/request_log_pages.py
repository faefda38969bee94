"""How long one page of the request log (GET /admin/requests) takes deep into a month, on SQLite.

    .venv/bin/python -m tests.benchmarks.request_log_pages [--requests 200000] [--limit 50]

Seeds a temporary SQLite database with `--requests` usage records spread over November 2026
(executemany straight into the table, a few seconds), then times `request_log.search`, the function
the route and `image-gateway requests list` call, for a page at several depths, with and without an
`end`, each the median of 20 runs. A page's cost must not grow with its depth: each page is one
index range scan starting at the previous page's position. Times are for people to read, not judged.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import cast

from sqlalchemy import Table, create_engine

from app.billing.models import Account, UsageRecord
from app.billing.request_log import Cursor, RequestFilters, search
from app.db import SCALE, Database

MONTH_START = datetime(2026, 11, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)
STORED = "%Y-%m-%d %H:%M:%S.%f"  # UTCDateTime's text on SQLite


def seed(path: Path, requests: int) -> None:
    engine = create_engine(f"sqlite:///{path}")
    for table in (Account.__table__, UsageRecord.__table__):
        cast(Table, table).create(engine)
    engine.dispose()
    step = (MONTH_END - MONTH_START) / requests
    eight = 8 * SCALE
    rows = (
        (f"req_{i:09d}", f"acct_{i % 20}", f"key_{i % 50}", "/v1/images/generations", "imagen4", "succeeded",
         eight, eight, SCALE, 1, 1, eight, 1, "[]", "{}", (MONTH_START + step * i).strftime(STORED))
        for i in range(requests)
    )  # fmt: skip
    with sqlite3.connect(path) as connection:
        connection.executemany(
            "INSERT INTO usage_records (id, account_id, key_id, endpoint, model, status, hold_credits, unit_credits,"
            " model_multiplier, images_requested, images_delivered, credits, attempts, channels_tried, metadata,"
            " created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        connection.execute("ANALYZE")


def cursor_at(path: Path, depth: int) -> Cursor:
    """The cursor a client holds after reading `depth` rows, newest first."""
    with sqlite3.connect(path) as connection:
        created_at, request_id = connection.execute(
            "SELECT created_at, id FROM usage_records ORDER BY created_at DESC, id DESC LIMIT 1 OFFSET ?",
            (depth - 1,),
        ).fetchone()
    return Cursor(datetime.strptime(created_at, STORED).replace(tzinfo=UTC), request_id)


async def measure(path: Path, requests: int, limit: int) -> None:
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        print(f"| depth (rows before the page) | end given | ms per page of {limit} (median of 20) |")
        print("|--:|---|--:|")
        for depth in (limit, requests // 2, requests * 19 // 20):
            after = cursor_at(path, depth)
            for end in (None, MONTH_END - timedelta(seconds=1)):
                filters = RequestFilters(end=end)
                times = []
                for _ in range(20):
                    async with db.sessions() as session:
                        started = time.perf_counter()
                        rows, _ = await search(session, filters, limit, after)
                        times.append(time.perf_counter() - started)
                assert len(rows) == limit, len(rows)
                print(f"| {depth:,} | {'yes' if end else 'no'} | {statistics.median(times) * 1000:.2f} |")
    finally:
        await db.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--limit", type=int, default=50)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="igw-bench-request-log-") as directory:
        path = Path(directory) / "gateway.db"
        started = time.perf_counter()
        seed(path, args.requests)
        print(f"seeded {args.requests:,} usage records in {time.perf_counter() - started:.1f} s\n")
        asyncio.run(measure(path, args.requests, args.limit))


if __name__ == "__main__":
    main()
