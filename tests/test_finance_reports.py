"""Finance's view of real traffic: channel costs become each attempt's upstream_cost, and the usage
report's totals equal the ledger's charges and the attempts' costs, with revenue and margin."""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import func, select

from app.billing.models import LedgerEntry
from app.settings import Settings
from tests.support.fakes.channels import ok
from tests.support.fakes.upstream import FakeUpstream, Received, Reply, tiny_png_b64
from tests.support.harness import Harness, running_app

IMAGEN = "imagen-4.0-generate-001"
FAST = "imagen-4.0-fast-generate-001"
CREDIT_VALUE = Decimal("0.0125")  # not the default, so a report using the default is caught
COSTS = {("flaky", IMAGEN): Decimal("0.04"), ("steady", IMAGEN): Decimal("0.03"), ("steady", FAST): Decimal("0.02")}


def _image() -> dict[str, str]:
    return {"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}


def flaky(received: Received) -> Reply:
    """The first choice: how it answers depends on the prompt."""
    prompt = received.json["instances"][0]["prompt"]
    count = received.json["parameters"]["sampleCount"]
    if prompt == "partial":  # one of them filtered: returned (and billed upstream), not delivered
        return Reply(json={"predictions": [_image()] * (count - 1) + [{"raiFilteredReason": "x"}]})
    if prompt == "all-filtered":
        return Reply(json={"predictions": [{"raiFilteredReason": "x"}] * count})
    if prompt in ("fail-over", "down"):
        return Reply(503, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    if prompt == "garbage":  # a 200 the adapter cannot use: possibly billed, then failed over
        return Reply(body=b"<html>oops</html>")
    if prompt == "reject":
        return Reply(400, {"error": {"code": 400, "message": "no", "status": "INVALID_ARGUMENT"}})
    return ok(received)


def steady(received: Received) -> Reply:
    if received.json["instances"][0]["prompt"] == "down":
        return Reply(503, {"error": {"code": 503, "message": "busy", "status": "UNAVAILABLE"}})
    return ok(received)


@pytest.fixture
async def gw(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[Harness]:
    """A gateway with two costed channels behind one fake upstream (`/<channel>/…`), `local` off."""
    behaviours = {"flaky": flaky, "steady": steady}
    upstream.respond = lambda received: behaviours[received.path.split("/")[1]](received)
    async with running_app(settings.model_copy(update={"credit_value": CREDIT_VALUE})) as harness:
        for name, priority, models in [
            ("flaky", 10, {"imagen4": IMAGEN}),
            ("steady", 0, {"imagen4": IMAGEN, "imagen4-fast": FAST}),
        ]:
            await harness.add_channel(
                only=name == "flaky",
                name=name,
                provider="google-imagen",
                base_url=f"{upstream.url}/{name}/v1beta",
                auth={"api_key": f"key-{name}"},
                models=models,
                priority=priority,
                costs={up: str(cost) for (channel, up), cost in COSTS.items() if channel == name},
            )
        yield harness


# prompt, model, n → who served, images delivered, images each channel returned (its upstream_cost)
TRAFFIC: list[tuple[str, str, int, str | None, int, dict[str, int]]] = [
    ("ok", "imagen4", 2, "flaky", 2, {"flaky": 2}),
    ("ok", "imagen4", 1, "flaky", 1, {"flaky": 1}),
    ("partial", "imagen4", 3, "flaky", 2, {"flaky": 3}),
    ("all-filtered", "imagen4", 2, None, 0, {"flaky": 2}),
    ("fail-over", "imagen4", 2, "steady", 2, {"steady": 2}),
    ("garbage", "imagen4", 1, "steady", 1, {"steady": 1}),
    ("reject", "imagen4", 1, None, 0, {}),
    ("down", "imagen4", 1, None, 0, {}),
    ("ok", "imagen4-fast", 4, "steady", 4, {"steady": 4}),
]


async def _play(gw: Harness) -> list[tuple[str, str, dict[str, int]]]:
    """Runs TRAFFIC for two teams; returns (account id, model, returned per channel) per request."""
    played = []
    for team in ("design", "ads"):
        account = await gw.create_account(credits=1000, name=team)
        key = await gw.create_key(account["id"])
        for prompt, model, n, served_by, delivered, returned in TRAFFIC:
            response = await gw.generate(key, {"prompt": prompt, "model": model, "n": n})
            if served_by is None:
                assert response.status_code >= 400, (prompt, response.text)
            else:
                assert response.status_code == 200, (prompt, response.text)
                assert response.json()["billing"]["images"] == delivered
            played.append((account["id"], model, returned))
    return played


def _cost(channel: str, model: str, images: int) -> Decimal:
    upstream = FAST if model == "imagen4-fast" else IMAGEN
    return COSTS[(channel, upstream)] * images


async def _charged(gw: Harness) -> Decimal:
    async with gw.gateway.db.sessions() as session:
        total = await session.scalar(select(func.sum(LedgerEntry.amount)).where(LedgerEntry.kind == "charge"))
    return -Decimal(total or 0)


async def test_report_totals_equal_the_ledger_and_the_attempts_costs(gw: Harness) -> None:
    played = await _play(gw)
    charged = await _charged(gw)
    assert charged > 0
    expected_cost = sum(
        (_cost(channel, model, images) for _, model, returned in played for channel, images in returned.items()),
        Decimal(0),
    )

    report = (await gw.admin("GET", "/admin/usage")).json()
    totals = report["totals"]
    assert totals["requests"] == len(played)
    assert Decimal(totals["credits"]) == charged  # exactly the ledger's charges
    assert Decimal(totals["upstream_cost"]) == expected_cost
    assert Decimal(totals["revenue"]) == charged * CREDIT_VALUE
    assert Decimal(totals["margin"]) == charged * CREDIT_VALUE - expected_cost

    # The attempt export carries the same costs, one per upstream call.
    exported = await gw.admin("GET", "/admin/attempts/export")
    attempts = list(csv.DictReader(io.StringIO(exported.text, newline="")))
    assert sum((Decimal(a["upstream_cost"]) for a in attempts if a["upstream_cost"]), Decimal(0)) == expected_cost
    failed_over = [a for a in attempts if a["channel"] == "flaky" and a["outcome"] == "failed"]
    assert failed_over and all(a["upstream_cost"] == "0" for a in failed_over)  # a costed channel, nothing returned

    # Per channel: each attempt's cost under the channel it called, whoever served in the end.
    by_channel = (await gw.admin("GET", "/admin/usage", params={"group_by": "channel"})).json()["rows"]
    costs = {row["channel"]: Decimal(row["upstream_cost"]) for row in by_channel}
    for channel in ("flaky", "steady"):
        assert costs[channel] == sum(
            (_cost(channel, model, returned[channel]) for _, model, returned in played if channel in returned),
            Decimal(0),
        )
    assert {row["channel"]: row["channel_name"] for row in by_channel} == {"flaky": "flaky", "steady": "steady"}

    # Per account, with names; the rows add up to the totals.
    by_account = (await gw.admin("GET", "/admin/usage", params={"group_by": "account"})).json()["rows"]
    assert sorted(row["account_name"] for row in by_account) == ["ads", "design"]
    for measure in ("credits", "upstream_cost", "revenue", "margin"):
        assert sum((Decimal(row[measure]) for row in by_account), Decimal(0)) == Decimal(totals[measure])

    # Per upstream model and provider: the margin of each upstream model.
    by_upstream = (
        await gw.admin("GET", "/admin/usage", params={"group_by": "upstream_model,provider", "format": "csv"})
    ).text
    rows = {r["upstream_model"]: r for r in csv.DictReader(io.StringIO(by_upstream, newline=""))}
    assert set(rows) == {IMAGEN, FAST} and {r["provider"] for r in rows.values()} == {"google-imagen"}
    assert Decimal(rows[FAST]["upstream_cost"]) == 2 * _cost("steady", "imagen4-fast", 4)
    assert Decimal(rows[FAST]["revenue"]) == 2 * 4 * 4 * CREDIT_VALUE  # 4 credits an image, twice

    # Per status: filtered requests cost upstream and earn nothing.
    by_status = (await gw.admin("GET", "/admin/usage", params={"group_by": "status"})).json()["rows"]
    filtered = next(row for row in by_status if row["status"] == "filtered")
    assert Decimal(filtered["credits"]) == 0
    assert Decimal(filtered["margin"]) == -2 * _cost("flaky", "imagen4", 2)
    assert sum(row["requests"] for row in by_status) == len(played)


async def test_the_request_log_shows_each_attempts_cost(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    response = await gw.generate(key, {"prompt": "fail-over", "n": 2})
    assert response.status_code == 200, response.text
    detail = (await gw.admin("GET", f"/admin/requests/{response.json()['id']}")).json()
    assert [(a["channel"], a["possibly_billed"], a["upstream_cost"]) for a in detail["attempts"]] == [
        ("flaky", False, "0"),
        ("steady", True, "0.06"),
    ]


async def test_a_cost_change_applies_to_new_attempts_only(gw: Harness) -> None:
    _, key = await gw.account_with_key(credits=100)
    assert (await gw.generate(key, {"prompt": "ok"})).status_code == 200
    channels = {c["name"]: c for c in (await gw.admin("GET", "/admin/channels")).json()["data"]}
    changed = await gw.admin("PATCH", f"/admin/channels/{channels['flaky']['id']}", json={"costs": {IMAGEN: 0.05}})
    assert changed.status_code == 200 and changed.json()["costs"] == {IMAGEN: "0.05"}
    assert (await gw.generate(key, {"prompt": "ok"})).status_code == 200
    cleared = await gw.admin("PATCH", f"/admin/channels/{channels['flaky']['id']}", json={"costs": {}})
    assert cleared.json()["costs"] == {}
    assert (await gw.generate(key, {"prompt": "ok"})).status_code == 200

    exported = await gw.admin("GET", "/admin/attempts/export")
    assert [a["upstream_cost"] for a in csv.DictReader(io.StringIO(exported.text, newline=""))] == ["0.04", "0.05", ""]
    totals = (await gw.admin("GET", "/admin/usage")).json()["totals"]
    assert totals["upstream_cost"] == "0.09"  # an attempt without a cost adds nothing


async def test_bad_channel_costs_are_400s_naming_them(gw: Harness) -> None:
    channels = (await gw.admin("GET", "/admin/channels")).json()["data"]
    flaky_id = next(c["id"] for c in channels if c["name"] == "flaky")
    cases: list[tuple[Any, str]] = [
        ({IMAGEN: -1}, f"costs.{IMAGEN}"),
        ({IMAGEN: "0.00001"}, f"costs.{IMAGEN}"),  # more places than upstream_cost keeps
        ({IMAGEN: "cheap"}, f"costs.{IMAGEN}"),
        ({IMAGEN: True}, f"costs.{IMAGEN}"),
        ({IMAGEN: 10_000_000}, f"costs.{IMAGEN}"),
        ({"": "0.04"}, "costs"),
        (["0.04"], "costs"),
    ]
    for costs, param in cases:
        response = await gw.admin("PATCH", f"/admin/channels/{flaky_id}", json={"costs": costs})
        assert response.status_code == 400, (costs, response.text)
        assert response.json()["error"]["param"].startswith(param), (costs, response.text)
        created = await gw.admin(
            "POST", "/admin/channels", json={"name": "new", "provider": "local", "models": {"*": "*"}, "costs": costs}
        )
        assert created.status_code == 400, (costs, created.text)
    unchanged = (await gw.admin("GET", f"/admin/channels/{flaky_id}")).json()
    assert unchanged["costs"] == {IMAGEN: "0.04"}
    # Numbers and decimal strings are both accepted, and shown as decimal strings.
    good = await gw.admin("PATCH", f"/admin/channels/{flaky_id}", json={"costs": {IMAGEN: 0.035, FAST: "1"}})
    assert good.json()["costs"] == {IMAGEN: "0.035", FAST: "1"}
