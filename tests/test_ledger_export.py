"""`GET /admin/ledger/export` and `image-gateway ledger export` (issue 15, item 4): every movement
of every balance as CSV, equal to the ledger itself, filtered by period and account."""

from __future__ import annotations

import asyncio
import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok
from tests.support.fakes.upstream import FakeUpstream
from tests.support.harness import Harness, running_app
from tests.support.processes import cli, gateway_env

COLUMNS = [
    "id", "created_at", "account_id", "account_name", "kind", "amount", "balance_after", "request_id", "note", "actor",
]  # fmt: skip


@dataclass
class Books:
    gw: Harness
    team: str  # account id of "team-a": grants, an adjustment, charges
    other: str  # account id of "=other" (a name a spreadsheet would run): a grant and a charge
    charged: list[str]  # request ids of team-a's charges, in order


@pytest.fixture
async def books(settings: Settings, upstream: FakeUpstream) -> AsyncIterator[Books]:
    async with running_app(settings) as gw:
        await Upstreams(upstream).channel(gw, "vendor", ok)
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        team = (await gw.create_account(100, name="team-a"))["id"]
        other = (await gw.create_account(50, name="=other"))["id"]
        # The ledger's actor is the authenticated operator's name: a finance operator named like a formula.
        bot = await gw.admin("POST", "/admin/operators", json={"name": "@finance-bot", "role": "finance"})
        assert bot.status_code == 201, bot.text
        for change, token in (
            ({"amount": "25", "note": '=HYPERLINK("http://x")'}, bot.json()["token"]),
            ({"amount": "-5", "note": "-correction of a double grant", "actor": "alice"}, None),
        ):
            headers = {"authorization": f"Bearer {token}"} if token else {}
            response = await gw.admin("POST", f"/admin/accounts/{team}/credits", json=change, headers=headers)
            assert response.status_code == 200, response.text
        team_key, other_key = await gw.create_key(team), await gw.create_key(other)
        charged = []
        for body in ({"prompt": "a", "n": 2}, {"prompt": "b"}):
            response = await gw.generate(team_key, body)
            assert response.status_code == 200, response.text
            charged.append(response.headers["x-request-id"])
        assert (await gw.generate(other_key, {"prompt": "c"})).status_code == 200
        yield Books(gw, team, other, charged)


async def export(gw: Harness, **params: str) -> list[dict[str, str]]:
    response = await gw.admin("GET", "/admin/ledger/export", params=params)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    reader = csv.DictReader(io.StringIO(response.text, newline=""))
    rows = list(reader)
    assert reader.fieldnames == COLUMNS
    return rows


async def ledger_of(gw: Harness, account_id: str) -> list[dict[str, Any]]:
    """The account's ledger as the admin API lists it (newest first), turned oldest first."""
    response = await gw.admin("GET", f"/admin/accounts/{account_id}/ledger")
    assert response.status_code == 200, response.text
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries[::-1]


def unquoted(cell: str) -> str:
    return cell.removeprefix("'")


async def test_the_export_is_the_ledger_with_names_and_formula_safe_text(books: Books) -> None:
    gw = books.gw
    rows = await export(gw)
    team_rows = [r for r in rows if r["account_id"] == books.team]
    other_rows = [r for r in rows if r["account_id"] == books.other]
    assert len(team_rows) + len(other_rows) == len(rows)

    # Row for row what the ledger holds, oldest first.
    for account_id, exported in ((books.team, team_rows), (books.other, other_rows)):
        entries = await ledger_of(gw, account_id)
        assert [int(r["id"]) for r in exported] == [e["id"] for e in entries]
        for row, entry in zip(exported, entries, strict=True):
            assert (row["kind"], row["amount"], row["balance_after"]) == (
                entry["kind"],
                entry["amount"],
                entry["balance_after"],
            )
            assert (row["request_id"] or None, unquoted(row["note"]), unquoted(row["actor"])) == (
                entry["request_id"],
                entry["note"],
                entry["actor"],
            )
            assert row["created_at"].replace("+00:00", "Z") == entry["created_at"].replace("+00:00", "Z")
        # The amounts add up to the balance, as finance would check in a spreadsheet.
        balance = (await gw.account(account_id))["balance"]
        assert sum(Decimal(r["amount"]) for r in exported) == Decimal(balance)
    assert [r["id"] for r in rows] == sorted((r["id"] for r in rows), key=int)  # one clock here: ids follow time

    # Grants and the adjustment carry their note and actor; charges their request ids.
    assert [(r["kind"], r["amount"]) for r in team_rows] == [
        ("grant", "100"),
        ("grant", "25"),
        ("adjustment", "-5"),
        ("charge", "-16"),
        ("charge", "-8"),
    ]
    assert [r["request_id"] for r in team_rows if r["kind"] == "charge"] == books.charged
    assert {r["account_name"] for r in team_rows} == {"team-a"}

    # Text a spreadsheet would run is written as text; negative amounts stay numbers.
    grant = team_rows[1]
    assert (grant["note"], grant["actor"]) == ('\'=HYPERLINK("http://x")', "'@finance-bot")
    assert team_rows[2]["note"] == "'-correction of a double grant"
    assert {r["account_name"] for r in other_rows} == {"'=other"}


async def test_filters_by_period_and_by_account_name_or_id(books: Books, database_url: str, tmp_path: Path) -> None:
    gw = books.gw
    everything = await export(gw)
    middle = everything[len(everything) // 2]
    since = await export(gw, start=middle["created_at"])
    before = await export(gw, end=middle["created_at"])
    assert since[0]["id"] == middle["id"] and before[-1]["id"] != middle["id"]
    assert [r["id"] for r in before + since] == [r["id"] for r in everything]
    assert await export(gw, start="2999-01-01T00:00:00Z") == []

    by_name = await export(gw, account="team-a")
    by_id = await export(gw, account=books.team)
    assert by_name == by_id == [r for r in everything if r["account_id"] == books.team]
    assert [r["account_id"] for r in await export(gw, account="=other")] == [books.other] * 2
    recent_team = await export(gw, account="team-a", start=middle["created_at"])
    assert recent_team == [r for r in since if r["account_id"] == books.team]

    unknown = await gw.admin("GET", "/admin/ledger/export", params={"account": "nobody"})
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "account"
    backwards = await gw.admin("GET", "/admin/ledger/export", params={"start": "2026-12-02", "end": "2026-12-01"})
    assert backwards.status_code == 400 and backwards.json()["error"]["param"] == "end"

    # The command writes the same CSV (in a thread: the gateway's loop keeps running meanwhile).
    out = tmp_path / "ledger.csv"
    env = gateway_env(database_url, tmp_path / "cli-data")
    await asyncio.to_thread(cli, env, "ledger", "export", "--account", "team-a", "-o", str(out))
    api = await gw.admin("GET", "/admin/ledger/export", params={"account": "team-a"})
    assert out.read_bytes() == api.content
    run = await asyncio.to_thread(cli, env, "ledger", "export", "--account", "nobody", check=False)
    assert run.returncode == 1 and "nobody" in run.stderr
