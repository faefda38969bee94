"""First start: migrations, the default catalog, and the channels created from the environment."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import select

from app.billing.amounts import render
from app.bootstrap import migrate
from app.catalog.models import CatalogModel, Channel
from app.db import Database


async def _channels(url: str) -> list[Channel]:
    db = Database(url)
    try:
        async with db.sessions() as session:
            return list((await session.scalars(select(Channel).order_by(Channel.priority.desc()))).all())
    finally:
        await db.dispose()


async def test_first_start_creates_catalog_and_local_channel_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GEMINI_API_KEY", raising=False)
    monkeypatch.delenv("XAI_API_KEY", raising=False)
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    await migrate(url)
    await migrate(url)  # a second start changes nothing
    channels = await _channels(url)
    assert [(c.name, c.provider, c.models) for c in channels] == [("local", "local", {"*": "*"})]
    db = Database(url)
    async with db.sessions() as session:
        models = {m.id: m for m in (await session.scalars(select(CatalogModel))).all()}
    await db.dispose()
    assert {m: render(models[m].credits_per_image) for m in models} == {
        "imagen4-fast": "4",
        "imagen4": "8",
        "imagen4-ultra": "12",
        "grok-imagine": "5",
        "kling-image-o1": "6",
        "ideogram-v3": "8",
        "gpt-image-1.5-official": "10",
        "gemini-3.1-flash-image": "8",
        "gemini-3-pro-image": "12",
    }
    assert models["gpt-image-1.5-official"].aliases == ["gpt-image-1.5"]


async def test_gemini_key_at_first_start_adds_a_gemini_channel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", "AIza-test-key")
    url = f"sqlite+aiosqlite:///{tmp_path / 'g.db'}"
    await migrate(url)
    gemini, local = await _channels(url)
    assert (gemini.name, gemini.provider, gemini.priority) == ("gemini", "gemini-image", 10)
    assert gemini.base_url == "https://generativelanguage.googleapis.com/v1beta"
    assert gemini.auth == {"api_key_env": "GEMINI_API_KEY"}  # the key itself is not copied into the database
    assert gemini.models == {
        "imagen4-fast": "gemini-3.1-flash-image",
        "imagen4": "gemini-3.1-flash-image",
        "imagen4-ultra": "gemini-3-pro-image",
        "gemini-3.1-flash-image": "gemini-3.1-flash-image",
        "gemini-3-pro-image": "gemini-3-pro-image",
    }
    assert local.name == "local"
