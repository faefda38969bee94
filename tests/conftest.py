from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from app.settings import Settings
from tests.support.databases import BACKENDS, TemplateDatabases
from tests.support.fakes.upstream import FakeUpstream, fake_upstream
from tests.support.harness import ADMIN_TOKEN, Harness, running_app


@pytest.fixture(scope="session")
def templates(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TemplateDatabases]:
    databases = TemplateDatabases(tmp_path_factory.mktemp("templates"))
    yield databases
    databases.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def database_url(templates: TemplateDatabases, backend: str, tmp_path: Path) -> Iterator[str]:
    with templates.fresh(backend, tmp_path) as url:
        yield url


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        admin_token=ADMIN_TOKEN,
        data_dir=tmp_path / "data",
        db_pool_size=3,
        db_max_overflow=7,
        _env_file=None,
    )


@pytest.fixture
async def gw(settings: Settings) -> AsyncIterator[Harness]:
    async with running_app(settings) as harness:
        yield harness


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    """A fake upstream HTTP server on 127.0.0.1; script it with `upstream.respond = …`."""
    with fake_upstream() as fake:
        yield fake
