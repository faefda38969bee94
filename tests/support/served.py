"""Driving a served gateway (a real process) over HTTP as an operator would."""

from __future__ import annotations

import uuid
from typing import Any

import httpx

from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import ADMIN_TOKEN


def admin(base_url: str) -> httpx.Client:
    return httpx.Client(base_url=base_url, headers={"authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=10)


def add_channel(base_url: str, upstream: FakeUpstream, name: str, priority: int) -> dict[str, Any]:
    with admin(base_url) as client:
        local = next(c for c in client.get("/admin/channels").json()["data"] if c["provider"] == "local")
        client.patch(f"/admin/channels/{local['id']}", json={"enabled": False})
        created = client.post(
            "/admin/channels",
            json={
                "name": name,
                "provider": "google-imagen",
                "base_url": f"{upstream.url}/{name}/v1beta",
                "auth": {"api_key": "k", "style": "x-goog-api-key"},
                "models": {"imagen4": "imagen-4.0-generate-001"},
                "priority": priority,
            },
        )
        assert created.status_code == 201, created.text
        channel: dict[str, Any] = created.json()
        return channel


def account_with_key(base_url: str, credits: int, **key_fields: Any) -> tuple[str, str]:
    with admin(base_url) as client:
        name = f"team-{uuid.uuid4().hex[:8]}"  # account names are unique
        account = client.post("/admin/accounts", json={"name": name, "credits": credits}).json()
        key = client.post("/admin/keys", json={"account_id": account["id"], **key_fields}).json()["key"]
    return account["id"], key
