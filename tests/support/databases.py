"""Real databases for tests: a migrated template per backend, copied for every test.

SQLite: a migrated file copied per test. PostgreSQL (the machine's server, or TEST_POSTGRES_URL):
a migrated template database cloned with CREATE DATABASE … TEMPLATE, dropped after the test.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import pytest

from app.bootstrap import migrate

POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
ALL_BACKENDS = ("sqlite", "postgres")
# TEST_BACKENDS=sqlite runs the suite without a PostgreSQL server (CI runs both, the default).
BACKENDS = [name.strip() for name in os.environ.get("TEST_BACKENDS", ",".join(ALL_BACKENDS)).split(",") if name.strip()]
if not BACKENDS or set(BACKENDS) - set(ALL_BACKENDS):
    raise RuntimeError(
        f"TEST_BACKENDS must name some of {', '.join(ALL_BACKENDS)}; got {os.environ['TEST_BACKENDS']!r}"
    )


def _pg_url(database: str) -> str:
    base = POSTGRES_URL.rsplit("/", 1)[0]
    return f"{base}/{database}"


def _async_url(url: str) -> str:
    return url.replace("postgresql://", "postgresql+asyncpg://", 1)


async def _pg_admin(*statements: str) -> None:
    conn = await asyncpg.connect(POSTGRES_URL)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


class TemplateDatabases:
    """Migrates each backend once per test session, then hands out fresh copies."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.sqlite_template: Path | None = None
        self.pg_template: str | None = None

    def _sqlite_template(self) -> Path:
        if self.sqlite_template is None:
            path = self.workdir / "template.db"
            asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
            self.sqlite_template = path
        return self.sqlite_template

    def _postgres_template(self) -> str:
        if self.pg_template is None:
            name = f"igw_tmpl_{secrets.token_hex(4)}"
            asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
            asyncio.run(migrate(_async_url(_pg_url(name))))
            self.pg_template = name
        return self.pg_template

    @contextmanager
    def fresh(self, backend: str, tmp_path: Path) -> Iterator[str]:
        """A migrated, seeded database of its own, as an async SQLAlchemy URL."""
        if backend not in BACKENDS:
            pytest.skip(f"TEST_BACKENDS leaves out {backend}")
        if backend == "sqlite":
            path = tmp_path / "gateway.db"
            shutil.copyfile(self._sqlite_template(), path)
            yield f"sqlite+aiosqlite:///{path}"
            return
        template = self._postgres_template()
        name = f"igw_t_{secrets.token_hex(6)}"
        asyncio.run(_pg_admin(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
        try:
            yield _async_url(_pg_url(name))
        finally:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        if self.pg_template is not None:
            asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{self.pg_template}" WITH (FORCE)'))
