"""`make bench-finance`: how long finance's usage report and CSV exports take over a month of
traffic, and how much memory they use (issue 15), on SQLite and PostgreSQL.

    .venv/bin/python -m tests.benchmarks.finance [--backends sqlite,postgres] [--requests 1000000]
        [--history 0.25] [--month 2026-11] [--operations report:day,export:usage] [--explain]
        [--json out.json] [--keep]

Per backend: a fresh database migrated by the application (a SQLite file in a temporary
directory; a new PostgreSQL database on BENCH_POSTGRES_URL, dropped afterwards), bulk-loaded with
a month of `--requests` requests (plus `--history` times as many the month before) by
tests/benchmarks/finance_month.py, then every report and export of that month, each in a fresh
process (tests/benchmarks/finance_ops.py) so that its peak RSS is its own. The reports' totals
and the exports' row counts are checked against what was loaded: the exit status is 1 when one
differs. Times are for people to read, not judged: the machine may be shared.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import resource
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from app.bootstrap import migrate
from app.db import SCALE, Database
from tests.benchmarks.finance_month import (
    POSTGRES,
    SQLITE,
    Month,
    check_encoding,
    check_schema,
    create_entities,
    load_postgres,
    load_sqlite,
)
from tests.benchmarks.procs import machine_busy_seconds
from tests.benchmarks.report import python_speed_ms
from tests.benchmarks.stack import POSTGRES_URL, REPO_ROOT, fresh_database, postgres_reachable

OPERATIONS = (
    "report:account,model,channel",
    "report:day",
    "report:upstream_model,provider",
    "export:usage",
    "export:attempts",
    "export:ledger",
)
BATCH = 50_000  # requests per load transaction


@dataclass
class Measured:
    backend: str
    operation: str
    rows: int | None = None
    bytes: int | None = None
    seconds: float | None = None
    cpu_s: float | None = None
    peak_rss_mb: float | None = None
    baseline_rss_mb: float | None = None
    other_cores: float | None = None  # CPU the rest of the machine used meanwhile, in cores
    note: str = ""
    ok: bool = True
    plans: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Loaded:
    backend: str
    rows: int
    seconds: float
    database_mb: float


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backends", default="sqlite,postgres", help="sqlite and/or postgres")
    parser.add_argument("--requests", type=int, default=1_000_000, help="requests in the month reported on")
    parser.add_argument("--history", type=float, default=0.25, help="requests the month before, as a share")
    parser.add_argument("--month", default="2026-11", help="the month reported on, YYYY-MM")
    parser.add_argument("--operations", default=",".join(OPERATIONS), help="subset of " + " ".join(OPERATIONS))
    parser.add_argument("--explain", action="store_true", help="also print each query's plan (runs each again)")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file (PostgreSQL is always dropped)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_schema()
    month = Month(datetime.fromisoformat(f"{args.month}-01"), args.requests, args.history)
    operations = _operations(args.operations)
    machine = machine_lines()
    print("\n".join(machine), file=sys.stderr)
    workdir = Path(tempfile.mkdtemp(prefix="igw-bench-finance-"))
    loads: list[Loaded] = []
    measured: list[Measured] = []
    try:
        for backend in [b for b in args.backends.split(",") if b]:
            if backend == "postgres" and not postgres_reachable():
                print("PostgreSQL is not reachable: skipping it (set BENCH_POSTGRES_URL)", file=sys.stderr)
                continue
            with fresh_database(backend, workdir) as url:
                loads.append(load(backend, url, month))
                for operation in operations:
                    measured.append(measure(backend, url, month, operation, explain=False))
                    print(row(measured[-1]), file=sys.stderr)
                    if args.explain:
                        plans = measure(backend, url, month, operation, explain=True).plans
                        measured[-1].plans = plans
                        print(render_plans(plans), file=sys.stderr)
    finally:
        if args.keep:
            print(f"databases kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    command = shlex.join([".venv/bin/python", "-m", "tests.benchmarks.finance", *(argv or sys.argv[1:])])
    print("\n" + render(command, machine, month, loads, measured))
    if args.json:
        document = {
            "command": command,
            "machine": machine,
            "loads": [asdict(x) for x in loads],
            "operations": [asdict(m) for m in measured],
        }
        args.json.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2))
    return 0 if all(m.ok for m in measured) else 1


def _operations(text: str) -> list[str]:
    """`report:account,model,channel` holds commas itself: split on the operation names."""
    found: list[str] = []
    for part in text.split(","):
        if part.startswith(("report:", "export:")) or not found:
            found.append(part)
        else:
            found[-1] += "," + part
    return [op for op in found if op]


def load(backend: str, url: str, month: Month) -> Loaded:
    print(
        f"… {backend}: migrating and loading {month.requests:,} requests (+{month.history_requests:,})", file=sys.stderr
    )
    asyncio.run(migrate(url))
    asyncio.run(_create_entities(url, month))
    check_encoding(SQLITE if backend == "sqlite" else POSTGRES)
    started = time.perf_counter()
    if backend == "sqlite":
        path = Path(url.split("///", 1)[1])
        load_sqlite(path, month, BATCH)
        size_mb = path.stat().st_size / 2**20
    else:
        dsn = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        asyncio.run(load_postgres(dsn, month, BATCH))
        size_mb = asyncio.run(_postgres_size(dsn)) / 2**20
    seconds = time.perf_counter() - started
    loaded = Loaded(backend, month.expected.rows_loaded, seconds, size_mb)
    print(
        f"  loaded {loaded.rows:,} rows in {seconds:.1f} s ({loaded.rows / seconds:,.0f} rows/s), "
        f"database {size_mb:,.0f} MB",
        file=sys.stderr,
    )
    return loaded


async def _create_entities(url: str, month: Month) -> None:
    db = Database(url)
    try:
        await create_entities(db, month)
    finally:
        await db.dispose()


async def _postgres_size(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        size: int = await connection.fetchval("SELECT pg_database_size(current_database())")
        return size
    finally:
        await connection.close()


def measure(backend: str, url: str, month: Month, operation: str, *, explain: bool) -> Measured:
    command = [sys.executable, "-m", "tests.benchmarks.finance_ops", operation, "--url", url]
    command += ["--start", month.start.isoformat(), "--end", month.end.isoformat()]
    if explain:
        command.append("--explain")
    busy, children = machine_busy_seconds(), _children_cpu_s()
    started = time.perf_counter()
    done = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    # Whatever else ran meanwhile (on PostgreSQL that includes the database server's own work).
    other = machine_busy_seconds() - busy - (_children_cpu_s() - children)
    if done.returncode != 0:
        print(done.stderr, file=sys.stderr)
        return Measured(backend, operation, note=f"failed (exit {done.returncode})", ok=False)
    result: dict[str, Any] = orjson.loads(done.stdout.splitlines()[-1])
    if "skipped" in result:
        return Measured(backend, operation, note=f"not measured: {result['skipped']}")
    measured = Measured(
        backend,
        operation,
        rows=result["rows"],
        bytes=result["bytes"],
        seconds=result["seconds"],
        cpu_s=result["cpu_s"],
        peak_rss_mb=result["peak_rss_mb"],
        baseline_rss_mb=result["baseline_rss_mb"],
        other_cores=max(0.0, other) / wall,
        plans=result.get("plans", []),
    )
    measured.ok, measured.note = check(month, operation, result)
    return measured


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def check(month: Month, operation: str, result: dict[str, Any]) -> tuple[bool, str]:
    """The figures are only worth reading if the operation returned the month it was asked for."""
    expected = month.expected
    if operation.startswith("report:"):
        credits = Decimal(expected.credits) / SCALE
        if result["requests"] != expected.requests or Decimal(result["credits"] or 0) != credits:
            return False, f"WRONG totals: {result['requests']} requests, {result['credits']} credits; loaded {credits}"
        return True, f"{result['requests']:,} requests, {credits:,} credits"
    wanted = {"export:usage": expected.requests, "export:attempts": expected.attempts, "export:ledger": expected.ledger}
    rows = result["rows"]
    if rows != wanted[operation]:
        return False, f"WRONG: {rows:,} rows, {wanted[operation]:,} loaded"
    return True, ""


def machine_lines() -> list[str]:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    mem_kb = next(
        int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")
    )
    return [
        f"- CPU: {os.cpu_count()} × {cpu} (nproc {len(os.sched_getaffinity(0))})",
        f"- RAM: {mem_kb / 2**20:.1f} GiB; kernel {platform.release()}",
        f"- Python {platform.python_version()}; SQLite {sqlite3.sqlite_version}; {_postgres_version()}",
        f"- Python speed, to scale the figures by: `sum(range(10**6))` takes {python_speed_ms():.1f} ms",
        f"- load average before the run: {Path('/proc/loadavg').read_text().split()[:3]}",
    ]


def _postgres_version() -> str:
    async def ask() -> str:
        connection = await asyncpg.connect(POSTGRES_URL)
        try:
            version: str = await connection.fetchval("SHOW server_version")
            work_mem: str = await connection.fetchval("SHOW work_mem")
            buffers: str = await connection.fetchval("SHOW shared_buffers")
            return f"PostgreSQL {version} (shared_buffers {buffers}, work_mem {work_mem}, same machine)"
        finally:
            await connection.close()

    try:
        return asyncio.run(ask())
    except (OSError, asyncpg.PostgresError):
        return "PostgreSQL not reachable"


HEADER = "| db | operation | rows | MB written | wall s | client CPU s | peak RSS MB (baseline) | other load (cores) | check |"


def row(m: Measured) -> str:
    def number(value: float | None, fmt: str) -> str:
        return "—" if value is None else format(value, fmt)

    rss = "—" if m.peak_rss_mb is None else f"{m.peak_rss_mb:.0f} ({m.baseline_rss_mb:.0f})"
    return (
        f"| {m.backend} | {m.operation} | {number(m.rows, ',')} | {number(m.bytes and m.bytes / 2**20, '.1f')} "
        f"| {number(m.seconds, '.2f')} | {number(m.cpu_s, '.2f')} | {rss} | {number(m.other_cores, '.2f')} "
        f"| {m.note or 'ok'} |"
    )


def render_plans(plans: list[dict[str, Any]]) -> str:
    lines = []
    for plan in plans:
        lines += ["", f"    -- run {plan['runs']}×; the middle run again: {plan['seconds']:.3f} s; {plan['sql'][:400]}"]
        lines += [f"    {line}" for line in plan["plan"]]
    return "\n".join(lines)


def render(command: str, machine: list[str], month: Month, loads: list[Loaded], measured: list[Measured]) -> str:
    lines = ["## Machine", "", *machine, "", "## Command", "", f"    {command}", ""]
    lines += [
        f"Month {month.start:%Y-%m}: {month.expected.requests:,} requests, {month.expected.attempts:,} upstream "
        f"attempts, {month.expected.ledger:,} ledger entries (the tables also hold "
        f"{month.history_requests:,} requests of the month before).",
        "",
        "| db | rows loaded | load s | rows/s | database MB |",
        "|---|--:|--:|--:|--:|",
    ]
    lines += [
        f"| {x.backend} | {x.rows:,} | {x.seconds:.0f} | {x.rows / x.seconds:,.0f} | {x.database_mb:,.0f} |"
        for x in loads
    ]
    lines += ["", HEADER, "|---|---|--:|--:|--:|--:|--:|--:|---|", *(row(m) for m in measured)]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
