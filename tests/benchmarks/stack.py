"""The processes under measurement: the fake upstream, a fresh database, and a real gateway
configured only through its own command line, all on 127.0.0.1 and all stopped on exit."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from sqlalchemy import text

from app.db import Database
from tests.support.processes import cli, cli_json, free_port, gateway_command, gateway_env, stop, wait_healthy

REPO_ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")
BENCH_CREDITS = "1000000000"  # far more than any run can spend: a 402 would be a benchmark bug


@dataclass
class Upstream:
    process: subprocess.Popen[bytes]
    base_url: str

    def stats(self) -> dict[str, int]:
        stats: dict[str, int] = httpx.get(f"{self.base_url}/_bench/stats", timeout=5).json()
        return stats

    def reset(self) -> None:
        httpx.post(f"{self.base_url}/_bench/reset", timeout=5).raise_for_status()

    def wait_idle(self, timeout_s: float = 60) -> None:
        """Until no answer is pending: the gateway has finished (or abandoned) every call."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.stats()["in_flight"]:
            time.sleep(0.2)


@contextmanager
def fake_upstream(log_path: Path) -> Iterator[Upstream]:
    port = free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.fake_upstream", "--port", str(port)],
            cwd=REPO_ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        upstream = Upstream(process, f"http://127.0.0.1:{port}")
        try:
            _wait_for(upstream)
            yield upstream
        finally:
            stop(process)


def _wait_for(upstream: Upstream, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if upstream.process.poll() is not None:
            raise RuntimeError(f"the fake upstream exited with {upstream.process.returncode}")
        try:
            upstream.stats()
            return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("the fake upstream did not start")


async def _pg_admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def postgres_reachable() -> bool:
    try:
        asyncio.run(_pg_admin("SELECT 1"))
    except (OSError, asyncpg.PostgresError):
        return False
    return True


@contextmanager
def fresh_database(backend: str, workdir: Path) -> Iterator[str]:
    """An empty database as an async SQLAlchemy URL; a PostgreSQL one is dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'gateway.db'}"
        return
    name = f"igw_bench_{secrets.token_hex(4)}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        base = POSTGRES_URL.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
        yield f"{base}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def configure_gateway(database_url: str, data_dir: Path, upstream: Upstream) -> tuple[dict[str, str], str]:
    """Set the database up the way an operator would: an account with plenty of credits, a key,
    the built-in local channel disabled and a google-imagen channel on the fake upstream.
    Returns the gateway's environment and the key."""
    # The production pool sizes (the test suite's own gateways use small ones); with 2 workers
    # that is 80 connections, within PostgreSQL's default max_connections of 100.
    env = gateway_env(
        database_url, data_dir, GATEWAY_RUN_WORKER="false", GATEWAY_DB_POOL_SIZE="20", GATEWAY_DB_MAX_OVERFLOW="20"
    )
    account: dict[str, Any] = cli_json(env, "accounts", "create", "bench", "--credits", BENCH_CREDITS)
    key: dict[str, Any] = cli_json(env, "keys", "create", "--account", account["id"], "--name", "bench")
    for channel in cli_json(env, "channels", "list"):
        if channel["provider"] == "local":
            cli(env, "channels", "disable", channel["id"])
    cli(
        env,
        "channels",
        "add",
        "--name",
        "bench",
        "--provider",
        "google-imagen",
        "--base-url",
        f"{upstream.base_url}/v1beta",
        "--api-key",
        "x",
        "--auth-style",
        "x-goog-api-key",
        "--models",
        '{"imagen4": "imagen-4.0-generate-001"}',
    )
    return env, str(key["key"])


@dataclass
class Gateway:
    process: subprocess.Popen[bytes]
    base_url: str


@contextmanager
def gateway(env: dict[str, str], workers: int, log_path: Path) -> Iterator[Gateway]:
    port = free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [*gateway_command(), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            base_url = f"http://127.0.0.1:{port}"
            wait_healthy(base_url, process, timeout_s=60)
            yield Gateway(process, base_url)
        finally:
            stop_gracefully(process)


def stop_gracefully(process: subprocess.Popen[bytes], grace_s: float = 90) -> None:
    """SIGTERM, then time for uvicorn to finish what it holds: after the capacity run a slow
    gateway may still be releasing the holds of thousands of abandoned requests, and killing it
    would leave them for the sweeper (correct, but not what a benchmark should measure)."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            print(f"the gateway did not stop within {grace_s:g} s: killed", file=sys.stderr)
    stop(process)


async def _open_holds(database_url: str) -> int:
    db = Database(database_url)
    try:
        async with db.engine.connect() as connection:
            count = await connection.scalar(text("SELECT count(*) FROM usage_records WHERE status = 'pending'"))
    finally:
        await db.dispose()
    return int(count or 0)


def open_holds(database_url: str) -> int:
    """Holds not yet captured or released; after a graceful shutdown there should be none."""
    return asyncio.run(_open_holds(database_url))


def ledger_check(env: dict[str, str]) -> tuple[bool, str]:
    """`image-gateway ledger check`: exit 0 means every money invariant holds."""
    result = cli(env, "ledger", "check", check=False)
    return result.returncode == 0, result.stdout + result.stderr
