"""One finance report or export, run the way the admin API runs it, measured in a process of its
own so that its peak RSS is that operation's and nothing else's.

    .venv/bin/python -m tests.benchmarks.finance_ops OPERATION --url URL --start ISO --end ISO [--explain]

OPERATION is `report:<group_by>` (e.g. `report:account,model,channel`), `export:usage`,
`export:attempts` or `export:ledger`. Prints one JSON object: wall and CPU seconds, rows, bytes
written (exports are counted and dropped), peak and baseline RSS, and, for reports, the totals. With
`--explain` it also captures every SELECT the operation sent and prints the database's plan of
each, executed with the parameters of its middle run (for keyset pages: a page halfway through).

Called by tests/benchmarks/finance.py; it imports only the application, so the baseline is the
application's own.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import importlib.util
import inspect
import resource
import sys
import time
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import event

from app.db import Database
from app.errors import GatewayError

Result = dict[str, Any]


def _status_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def rss_mb() -> float:
    return _status_mb("VmRSS")


def peak_rss_mb() -> float:
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child would
    # report its parent's peak (the loader's) whenever that was higher.
    return _status_mb("VmHWM")


def utc_datetime(text: str) -> datetime:
    """Naive means UTC, as everywhere in the admin API."""
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


def cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def report(db: Database, group_by: str, start: datetime, end: datetime) -> Result:
    """The usage report as GET /admin/usage computes it (app/admin/billing.py)."""
    from app.billing import usage_report as module

    try:
        groups = module.parse_group_by(group_by)
    except GatewayError as exc:  # a group-by this checkout does not know yet
        return {"skipped": str(exc)}
    # Only the keywords this version of usage_report takes (other helpers are extending it).
    accepted = inspect.signature(module.usage_report).parameters
    offered: dict[str, Any] = {"start": start, "end": end, "group_by": groups, "credit_value": Decimal("0.01")}
    kwargs = {name: value for name, value in offered.items() if name in accepted}
    async with db.sessions() as session:
        result = await module.usage_report(session, **kwargs)
    document = orjson.dumps(dataclasses.asdict(result), default=str) if dataclasses.is_dataclass(result) else b""
    totals = getattr(result, "totals", None)
    return {
        "rows": len(getattr(result, "rows", [])),
        "bytes": len(document),
        "requests": getattr(totals, "requests", None),
        "credits": str(getattr(totals, "credits", "")),
    }


def _export_function(name: str) -> Callable[..., AsyncIterator[str]] | str:
    """The CSV export function of `name`, or why there is none in this checkout."""
    modules = {
        "usage": ("app.billing.usage_export", "export_csv"),
        "attempts": ("app.billing.attempt_export", "export_attempts_csv"),
        "ledger": ("app.billing.ledger_export", "export_ledger_csv"),
    }
    module_name, function_name = modules[name]
    if importlib.util.find_spec(module_name) is None:
        return f"{module_name} does not exist yet"
    module = importlib.import_module(module_name)
    found = getattr(module, function_name, None)
    if found is None:  # named otherwise: the module's one public async generator
        candidates = [
            f
            for n, f in vars(module).items()
            if not n.startswith("_") and inspect.isasyncgenfunction(f) and f.__module__ == module_name
        ]
        found = candidates[0] if len(candidates) == 1 else None
    if found is None:
        return f"no export function found in {module_name}"
    function: Callable[..., AsyncIterator[str]] = found
    return function


async def export(db: Database, name: str, start: datetime, end: datetime) -> Result:
    """An export streamed as the admin route streams it to the client: each chunk encoded, counted
    and dropped (as if written to /dev/null)."""
    function = _export_function(name)
    if isinstance(function, str):
        return {"skipped": function}
    written = 0
    lines = 0
    async for chunk in function(db, start, end):
        data = chunk.encode()
        written += len(data)
        lines += data.count(b"\r\n")  # csv.writer ends rows with \r\n; values hold no \r\n
    return {"rows": max(lines - 1, 0), "bytes": written}


class Statements:
    """Every distinct SELECT sent, with the parameters of each execution."""

    def __init__(self, db: Database) -> None:
        self.seen: dict[str, list[Any]] = {}
        event.listen(db.engine.sync_engine, "before_cursor_execute", self._record)

    def _record(self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool) -> None:
        if statement.lstrip().upper().startswith("SELECT"):
            self.seen.setdefault(statement, []).append(parameters)

    async def plans(self, db: Database) -> list[dict[str, Any]]:
        """Each statement's plan with the parameters of its middle execution: for keyset pages, a
        page halfway through the range, where a plan that rescans from the start shows."""
        captured = [(statement, runs[len(runs) // 2], len(runs)) for statement, runs in self.seen.items()]
        self.seen = {}
        postgres = db.engine.dialect.name == "postgresql"
        plans = []
        for statement, parameters, runs in captured:
            prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgres else "EXPLAIN QUERY PLAN "
            async with db.engine.connect() as connection:
                started = time.perf_counter()
                rows = (await connection.exec_driver_sql(prefix + statement, parameters)).all()
                if not postgres:  # EXPLAIN QUERY PLAN does not run it: time the statement itself
                    started = time.perf_counter()
                    await connection.exec_driver_sql(statement, parameters)
                elapsed = time.perf_counter() - started
            cells = [tuple(r) for r in rows]
            plan = [str(c[0]) for c in cells] if postgres else [f"{c[1]}:{c[2]} {c[3]}" for c in cells]
            sql = " ".join(statement.split())
            plans.append({"sql": sql, "runs": runs, "plan": plan, "seconds": round(elapsed, 4)})
        return plans


async def run(operation: str, url: str, start: datetime, end: datetime, explain: bool) -> Result:
    db = Database(url)
    try:
        # Connect and warm the pool first: the baseline is the application, imported and connected.
        async with db.sessions() as session:
            await session.connection()
        statements = Statements(db) if explain else None
        baseline = rss_mb()
        cpu_before = cpu_s()
        started = time.perf_counter()
        kind, _, argument = operation.partition(":")
        if kind == "report":
            result = await report(db, argument, start, end)
        elif kind == "export":
            result = await export(db, argument, start, end)
        else:
            raise SystemExit(f"unknown operation {operation!r}")
        result.update(
            seconds=time.perf_counter() - started,
            cpu_s=cpu_s() - cpu_before,
            peak_rss_mb=peak_rss_mb(),
            baseline_rss_mb=baseline,
        )
        if statements is not None:
            result["plans"] = await statements.plans(db)
        return result
    finally:
        await db.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("operation")
    parser.add_argument("--url", required=True, help="async SQLAlchemy URL of the database")
    parser.add_argument("--start", required=True, type=utc_datetime)
    parser.add_argument("--end", required=True, type=utc_datetime)
    parser.add_argument("--explain", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args.operation, args.url, args.start, args.end, args.explain))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
