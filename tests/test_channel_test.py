"""`POST /admin/channels/{id}/test` (issue 16, item 4): one real one-image call through one
channel, charged to nobody, recorded as a test attempt the provider's invoice can be matched to."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app

STANDARD = "imagen-4.0-generate-001"
SECRET = "AIza-test-canary-never-shown-4242"


@pytest.fixture
async def routed(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[tuple[Harness, Upstreams]]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        yield gw, Upstreams(upstream)


def refuses_the_key(received: Received) -> Reply:
    # Like some relays, the upstream quotes the credential it was sent.
    key = received.headers.get("x-goog-api-key")
    return Reply(401, {"error": {"code": 401, "message": f"API key {key} is invalid", "status": "UNAUTHENTICATED"}})


async def run_test(gw: Harness, channel: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
    response = await gw.admin("POST", f"/admin/channels/{channel}/test", json=body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def attempt_rows(gw: Harness) -> list[dict[str, str]]:
    response = await gw.admin("GET", "/admin/attempts/export")
    assert response.status_code == 200, response.text
    return list(csv.DictReader(io.StringIO(response.text, newline="")))


async def test_a_working_channel_makes_one_image_charged_to_nobody_but_seen_by_reconciliation(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    vendor = await ups.channel(gw, "vendor", ok, costs={STANDARD: "0.04"})
    account_id, _ = await gw.account_with_key(credits=100)

    result = await run_test(gw, vendor["id"])

    assert set(result) == {"ok", "latency_ms", "http_status", "error", "images"}
    assert (result["ok"], result["http_status"], result["error"], result["images"]) == (True, 200, None, 1)
    assert isinstance(result["latency_ms"], int) and result["latency_ms"] >= 0
    # One call upstream, for one image of the channel's first model, under the test's own prompt.
    (sent,) = ups.fake.requests
    assert sent.path == f"/vendor/v1beta/models/{STANDARD}:predict"
    assert sent.json["parameters"]["sampleCount"] == 1
    # Nobody pays: no usage row, no ledger change, the books still balance.
    assert await gw.usage_rows() == []
    assert (await gw.account(account_id))["balance"] == "100"
    assert await gw.ledger_problems() == []
    # The provider bills it, so it is an attempt, and reconciliation counts it.
    (row,) = await attempt_rows(gw)
    assert (row["request_id"], row["account_id"], row["model"], row["channel"]) == ("", "", "", "vendor")
    assert (row["outcome"], row["possibly_billed"], row["images"], row["upstream_cost"]) == (
        "succeeded",
        "true",
        "1",
        "0.04",
    )
    today = datetime.now(UTC).date().isoformat()
    reconciled = await gw.admin(
        "POST",
        "/admin/reconcile",
        params={"channel": "vendor"},
        content=f"date,upstream_model,images,cost\n{today},{STANDARD},1,0.04\n",
        headers={"content-type": "text/csv"},
    )
    assert reconciled.status_code == 200, reconciled.text
    assert reconciled.json()["ok"] is True
    assert [(r["ours"], r["theirs"]) for r in reconciled.json()["rows"]] == [(1, 1)]


async def test_a_disabled_channel_can_be_tested_and_stays_disabled(routed: tuple[Harness, Upstreams]) -> None:
    gw, ups = routed
    await ups.channel(gw, "live", ok)
    spare = await ups.channel(gw, "spare", ok, enabled=False)

    result = await run_test(gw, spare["id"], {"model": "imagen4"})

    assert (result["ok"], result["images"]) == (True, 1)
    assert ups.calls("spare") == 1
    assert (await gw.admin("GET", f"/admin/channels/{spare['id']}")).json()["enabled"] is False
    # It was tested, not put into service: traffic still goes to the enabled channel only.
    _, key = await gw.account_with_key(credits=100)
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    assert (ups.calls("live"), ups.calls("spare")) == (1, 1)


async def test_a_refused_key_is_reported_scrubbed_and_neither_counts_nor_disables(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    broken = await ups.channel(gw, "broken", refuses_the_key)
    await gw.admin("PATCH", f"/admin/channels/{broken['id']}", json={"auth": {"api_key": SECRET}})

    for _ in range(gw.settings.auto_disable_after + 1):
        result = await run_test(gw, broken["id"])
        assert (result["ok"], result["http_status"], result["images"]) == (False, 401, 0)
        assert "credentials" in result["error"] and "[redacted]" in result["error"]
        assert SECRET not in result["error"]

    channel = (await gw.admin("GET", f"/admin/channels/{broken['id']}")).json()
    assert (channel["enabled"], channel["disabled_reason"], channel["credential_failures"]) == (True, None, 0)
    assert channel["health"]["consecutive_failures"] == 0  # the breaker is not the test's business
    rows = await attempt_rows(gw)
    assert {(r["outcome"], r["http_status"], r["possibly_billed"]) for r in rows} == {("rejected", "401", "false")}


async def test_a_model_is_named_by_id_or_alias_and_one_the_channel_does_not_map_is_400(
    routed: tuple[Harness, Upstreams],
) -> None:
    gw, ups = routed
    vendor = await ups.channel(gw, "vendor", ok)

    assert (await run_test(gw, vendor["id"], {"model": STANDARD}))["ok"] is True  # the alias of imagen4
    assert (await run_test(gw, "vendor"))["ok"] is True  # by name, as the CLI names channels

    for model in ("imagen4-ultra", "no-such-model"):
        response = await gw.admin("POST", f"/admin/channels/{vendor['id']}/test", json={"model": model})
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "model" and "does not map" in error["message"], error
    bad_body = await gw.admin("POST", f"/admin/channels/{vendor['id']}/test", json={"modle": "imagen4"})
    assert bad_body.status_code == 400, bad_body.text
    missing = await gw.admin("POST", "/admin/channels/ch_nobody/test", json={})
    assert missing.status_code == 404, missing.text
    assert ups.calls("vendor") == 2  # none of the refused tests reached the upstream
    assert len(await attempt_rows(gw)) == 2
