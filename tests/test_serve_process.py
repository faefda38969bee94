"""End to end through a real `image-gateway serve` process and the CLI, on both databases."""

from __future__ import annotations

import asyncio
import base64
import io
from pathlib import Path

import httpx
import pytest
from openai import OpenAI
from PIL import Image

from tests.support.processes import cli, cli_json, gateway_env, serving

pytestmark = pytest.mark.slow


def test_cli_account_key_and_openai_sdk_against_served_gateway(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    account = cli_json(env, "accounts", "create", "growth", "--credits", "40")
    key = cli_json(env, "keys", "create", "--account", account["id"], "--name", "svc")["key"]
    with serving(env, log_path=tmp_path / "serve.log") as base_url:
        client = OpenAI(api_key=key, base_url=f"{base_url}/v1", max_retries=0)
        result = client.images.generate(model="imagen4-fast", prompt="a teapot", n=2, response_format="b64_json")
        assert result.data is not None
        for item in result.data:
            assert item.b64_json is not None
            image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
            assert image.format == "PNG" and image.size == (1024, 1024)
        balance = httpx.get(f"{base_url}/v1/account", headers={"authorization": f"Bearer {key}"}).json()
        assert balance["balance"] == "32"  # 40 - 2 × 4

    granted = cli_json(env, "accounts", "grant", account["id"], "8", "--note", "refill")
    assert granted["balance"] == "40"
    export = cli(env, "usage", "export").stdout.strip().splitlines()
    assert len(export) == 2 and ",succeeded," in export[1]
    assert cli(env, "ledger", "check").returncode == 0


def test_24_concurrent_requests_across_two_worker_processes(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    account = cli_json(env, "accounts", "create", "batch", "--credits", "40")
    key = cli_json(env, "keys", "create", "--account", account["id"])["key"]
    with serving(env, "--workers", "2", log_path=tmp_path / "serve.log") as base_url:

        async def burst() -> list[int]:
            async with httpx.AsyncClient(base_url=base_url, timeout=60) as http:
                responses = await asyncio.gather(
                    *(
                        http.post(
                            "/v1/images/generations",
                            json={"prompt": f"p{i}", "model": "imagen4"},
                            headers={"authorization": f"Bearer {key}"},
                        )
                        for i in range(24)
                    )
                )
            return [r.status_code for r in responses]

        statuses = asyncio.run(burst())
    assert statuses.count(200) == 5, statuses
    assert statuses.count(402) == 19, statuses
    accounts = cli_json(env, "accounts", "list")
    assert (accounts[0]["balance"], accounts[0]["held"]) == ("0", "0")
    check = cli(env, "ledger", "check", check=False)
    assert check.returncode == 0, check.stdout


def test_ledger_check_exits_nonzero_on_a_broken_invariant(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    account = cli_json(env, "accounts", "create", "x", "--credits", "5")

    async def tamper() -> None:
        from sqlalchemy import text

        from app.db import Database

        db = Database(database_url)
        async with db.transaction() as session:
            await session.execute(
                text("UPDATE accounts SET balance = balance + 10000 WHERE id = :id"), {"id": account["id"]}
            )
        await db.dispose()

    asyncio.run(tamper())
    result = cli(env, "ledger", "check", check=False)
    assert result.returncode == 1
    assert account["id"] in result.stdout
