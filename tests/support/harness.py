"""Driving the real ASGI app the way a caller and an operator would."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
from fastapi import FastAPI

from app.main import create_app
from app.runtime import Gateway
from app.settings import Settings

ADMIN_TOKEN = "test-admin-token"


@dataclass
class Harness:
    app: FastAPI
    settings: Settings
    http: httpx.AsyncClient  # no credentials: add headers per call

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    async def admin(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        headers = {"authorization": f"Bearer {ADMIN_TOKEN}", **kwargs.pop("headers", {})}
        return await self.http.request(method, path, headers=headers, **kwargs)

    async def create_account(self, credits: str | int | Decimal = 1000, name: str | None = None) -> dict[str, Any]:
        # Account names are unique: without a name, each account gets its own.
        name = name or f"team-{uuid.uuid4().hex[:8]}"
        response = await self.admin("POST", "/admin/accounts", json={"name": name, "credits": str(credits)})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    async def create_key(self, account_id: str, **fields: Any) -> str:
        response = await self.admin("POST", "/admin/keys", json={"account_id": account_id, "name": "test", **fields})
        assert response.status_code == 201, response.text
        key: str = response.json()["key"]
        return key

    async def account_with_key(self, credits: str | int | Decimal = 1000, **key_fields: Any) -> tuple[str, str]:
        account = await self.create_account(credits)
        return account["id"], await self.create_key(account["id"], **key_fields)

    async def generate(self, key: str, body: dict[str, Any], path: str = "/v1/images/generations") -> httpx.Response:
        return await self.http.post(path, json=body, headers={"authorization": f"Bearer {key}"})

    async def account(self, account_id: str) -> dict[str, Any]:
        response = await self.admin("GET", f"/admin/accounts/{account_id}")
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def usage_rows(self) -> list[dict[str, str]]:
        """The usage export (one row per request) as dicts, as finance would open the CSV."""
        response = await self.admin("GET", "/admin/usage/export")
        assert response.status_code == 200, response.text
        return list(csv.DictReader(io.StringIO(response.text, newline="")))

    async def ledger_problems(self) -> list[str]:
        response = await self.admin("GET", "/admin/ledger/check")
        assert response.status_code == 200, response.text
        problems: list[str] = response.json()["problems"]
        return problems

    async def add_channel(self, *, only: bool = False, **fields: Any) -> dict[str, Any]:
        """Create a channel through the admin API; with only=True the local channel is disabled
        first, so every request goes to this one."""
        if only:
            local = await self.local_channel()
            await self.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        fields.setdefault("name", f"ch-{len(fields)}-{id(fields)}")
        response = await self.admin("POST", "/admin/channels", json=fields)
        assert response.status_code == 201, response.text
        channel: dict[str, Any] = response.json()
        return channel

    async def local_channel(self) -> dict[str, Any]:
        channels = (await self.admin("GET", "/admin/channels")).json()["data"]
        local: dict[str, Any] = next(c for c in channels if c["provider"] == "local")
        return local


@asynccontextmanager
async def running_app(settings: Settings) -> AsyncIterator[Harness]:
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as http:
            yield Harness(app=app, settings=settings, http=http)
