"""`GET /admin/attempts/export`: one CSV row per upstream call, so finance can set the calls a
provider may bill beside its invoice (issue 15, item 1)."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator

import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


async def attempts(gw: Harness, **params: str) -> list[dict[str, str]]:
    response = await gw.admin("GET", "/admin/attempts/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


async def test_every_upstream_call_is_a_row_with_what_the_provider_may_bill(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    await ups.channel(gw, "=flaky", status(503), priority=10)
    await ups.channel(gw, "steady", ok, priority=0)
    account_id, key = await gw.account_with_key(credits=100)

    response = await gw.generate(key, {"prompt": "x", "n": 2, "model": "imagen4"})
    assert response.status_code == 200, response.text
    request_id = response.json()["id"]

    rows = await attempts(gw)
    assert [(r["n"], r["outcome"], r["http_status"], r["possibly_billed"], r["images"]) for r in rows] == [
        ("1", "failed", "503", "false", "0"),
        ("2", "succeeded", "", "true", "2"),
    ]
    assert {r["request_id"] for r in rows} == {request_id}
    assert {r["account_id"] for r in rows} == {account_id}
    assert {r["model"] for r in rows} == {"imagen4"}
    # An operator's channel name that looks like a formula is written as text.
    assert [r["channel"] for r in rows] == ["'=flaky", "steady"]
    assert rows[1]["upstream_model"] == "imagen-4.0-generate-001"
    assert rows[1]["provider"] == "google-imagen"


async def test_the_range_selects_by_start_and_bad_ranges_are_400(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "steady", ok)
    _, key = await gw.account_with_key(credits=100)
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200

    assert len(await attempts(gw, start="2000-01-01T00:00:00Z")) == 1
    assert await attempts(gw, start="2999-01-01T00:00:00Z") == []
    assert await attempts(gw, end="2000-01-01T00:00:00Z") == []
    bad = await gw.admin("GET", "/admin/attempts/export", params={"start": "2026-12-02", "end": "2026-12-01"})
    assert bad.status_code == 400, bad.text
