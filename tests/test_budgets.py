"""Budgets per account and per key: a hold that would take a UTC period's spend past its budget is
402 `budget_exceeded` (nothing held, nothing charged); what a request does not spend goes back to
the period it was taken from; `budget.threshold` is queued once at 80 % and at 100 %, and
`account.low_balance` once per crossing. Concurrent requests, from several processes too, never
take a period past its budget.

Budgets and thresholds are written straight into the tables here: this file is about what the
hold path does with them (tests/test_budget_admin.py sets them through the admin API).
"""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select, update

from app.alerts.models import Alert
from app.billing import holds
from app.billing.budgets import Budget, window_end, window_of
from app.billing.models import Account, BudgetSpend, LedgerEntry, UsageRecord
from app.db import Database, utcnow
from app.keys.models import ApiKey
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Reply, tiny_png_b64
from tests.support.harness import Harness
from tests.support.holds import hold_terms, served
from tests.support.processes import gateway_env, serving
from tests.support.served import account_with_key, admin

IMAGE = {"prompt": "a lighthouse"}  # imagen4 on the local channel: 8 credits an image


async def set_budget(db: Database, table: type[Account] | type[ApiKey], row_id: str, credits: int, period: str) -> None:
    async with db.transaction() as session:
        await session.execute(
            update(table).where(table.id == row_id).values(budget_credits=Decimal(credits), budget_period=period)
        )


async def key_id_of(db: Database, account_id: str, name: str = "test") -> str:
    async with db.sessions() as session:
        found = await session.scalar(select(ApiKey.id).where(ApiKey.account_id == account_id, ApiKey.name == name))
    assert found is not None
    return found


async def spent(db: Database, scope_id: str, window: str) -> Decimal | None:
    async with db.sessions() as session:
        value: Decimal | None = await session.scalar(
            select(BudgetSpend.spent).where(BudgetSpend.scope == scope_id, BudgetSpend.window == window)
        )
    return value


async def alerts(db: Database, type_: str) -> list[dict[str, Any]]:
    async with db.sessions() as session:
        rows = (await session.scalars(select(Alert).where(Alert.type == type_).order_by(Alert.created_at))).all()
    return [row.data for row in rows]


async def count(db: Database, model: type[UsageRecord] | type[LedgerEntry], account_id: str) -> int:
    async with db.sessions() as session:
        found = await session.scalar(select(func.count()).select_from(model).where(model.account_id == account_id))
    return int(found or 0)


def resets(period: str) -> str:
    return window_end(period, utcnow()).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_budget_stops_a_team_at_its_limit_and_the_refused_request_costs_nothing(gw: Harness) -> None:
    db = gw.gateway.db
    account_id, key = await gw.account_with_key(credits=1000)
    await set_budget(db, Account, account_id, 20, "month")  # two images of 8, not three

    assert [(await gw.generate(key, IMAGE)).status_code for _ in range(2)] == [200, 200]
    refused = await gw.generate(key, IMAGE)

    assert refused.status_code == 402
    error = refused.json()["error"]
    assert error["code"] == "budget_exceeded"
    assert error["message"] == (
        f"This request needs 8 credits; the account's monthly budget has 4 of 20 left until {resets('month')}."
    )
    account = await gw.account(account_id)
    assert (account["balance"], account["held"]) == ("984", "0")
    assert await count(db, UsageRecord, account_id) == 2  # the refused request left no record
    assert await count(db, LedgerEntry, account_id) == 3  # the grant and two charges
    assert await spent(db, account_id, window_of("month", utcnow())) == Decimal(16)
    assert await gw.ledger_problems() == []


async def test_a_key_budget_is_kept_apart_from_the_accounts(gw: Harness) -> None:
    db = gw.gateway.db
    account = await gw.create_account(credits=1000)
    capped = await gw.create_key(account["id"], name="capped")
    free = await gw.create_key(account["id"], name="free")
    await set_budget(db, Account, account["id"], 24, "month")
    await set_budget(db, ApiKey, await key_id_of(db, account["id"], "capped"), 8, "day")

    assert (await gw.generate(capped, IMAGE)).status_code == 200
    refused = (await gw.generate(capped, IMAGE)).json()["error"]
    assert refused["code"] == "budget_exceeded"
    assert refused["message"] == (
        f"This request needs 8 credits; the key's daily budget has 0 of 8 left until {resets('day')}."
    )
    # The other key of the team spends on, up to the account's own budget.
    assert [(await gw.generate(free, IMAGE)).status_code for _ in range(2)] == [200, 200]
    refused = (await gw.generate(free, IMAGE)).json()["error"]
    assert refused["message"] == (
        f"This request needs 8 credits; the account's monthly budget has 0 of 24 left until {resets('month')}."
    )
    assert (await gw.account(account["id"]))["balance"] == "976"
    # The key's one request took it from nothing to 100 %: both thresholds, each once.
    key_alerts = sorted(
        (a for a in await alerts(db, "budget.threshold") if a["scope"] == "key"), key=lambda a: a["threshold"]
    )
    assert [(a["key_name"], a["threshold"], a["spent"], a["budget"]) for a in key_alerts] == [
        ("capped", 80, "8", "8"),
        ("capped", 100, "8", "8"),
    ]


async def test_a_failed_request_gives_its_hold_back_and_a_partial_one_what_it_did_not_spend(
    gw: Harness, upstream: FakeUpstream
) -> None:
    db = gw.gateway.db
    upstreams = Upstreams(upstream)
    await upstreams.channel(gw, "flaky", status(400))
    local = await gw.local_channel()
    await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
    account_id, key = await gw.account_with_key(credits=1000)
    await set_budget(db, Account, account_id, 16, "week")
    window = window_of("week", utcnow())

    for _ in range(3):  # three failures would be 48 credits of holds
        assert (await gw.generate(key, {**IMAGE, "n": 2})).status_code != 200
    assert await spent(db, account_id, window) == Decimal(0)

    # Two images held (16), one delivered (8): the other 8 go back to the week.
    one_image = Reply(json={"predictions": [{"bytesBase64Encoded": tiny_png_b64(), "mimeType": "image/png"}]})
    upstreams.behaviour["flaky"] = lambda _received: one_image
    assert (await gw.generate(key, {**IMAGE, "n": 2})).status_code == 200
    assert await spent(db, account_id, window) == Decimal(8)
    upstreams.behaviour["flaky"] = ok
    assert (await gw.generate(key, IMAGE)).status_code == 200
    assert await spent(db, account_id, window) == Decimal(16)
    assert (await gw.generate(key, IMAGE)).status_code == 402


async def test_a_hold_from_just_before_midnight_settles_into_its_own_day(gw: Harness) -> None:
    db = gw.gateway.db
    account_id = (await gw.create_account(credits=1000))["id"]
    daily = Budget(Decimal(100), "day")
    now = utcnow()
    yesterday = now.replace(hour=23, minute=59, second=59, microsecond=0) - timedelta(days=1)
    today, before = window_of("day", now), window_of("day", yesterday)
    late = dataclasses.replace(hold_terms(account_id, "16", images=2), account_budget=daily)
    async with db.transaction() as session:
        await holds.place_hold(session, late)
        # As if it had been placed at 23:59:59 yesterday: its record and its spend are that day's.
        await session.execute(
            update(UsageRecord)
            .where(UsageRecord.id == late.request_id)
            .values(created_at=yesterday, account_budget_window=before)
        )
        await session.execute(
            update(BudgetSpend).where(BudgetSpend.scope == account_id).values(spent=BudgetSpend.spent - 16)
        )
        session.add(BudgetSpend(scope=account_id, window=before, spent=Decimal(16), alerted=0))
    ontime = dataclasses.replace(hold_terms(account_id, "8"), account_budget=daily)
    async with db.transaction() as session:
        await holds.place_hold(session, ontime)

    async with db.transaction() as session:
        assert await holds.capture(session, late.request_id, served("8", images=1)) is not None
    assert (await spent(db, account_id, before), await spent(db, account_id, today)) == (Decimal(8), Decimal(8))
    async with db.transaction() as session:
        assert await holds.release(session, ontime.request_id, "failed", served("0", images=0))
    assert (await spent(db, account_id, before), await spent(db, account_id, today)) == (Decimal(8), Decimal(0))


async def test_thresholds_are_queued_once_each_at_80_and_100_percent(gw: Harness) -> None:
    db = gw.gateway.db
    account_id, key = await gw.account_with_key(credits=1000)
    await set_budget(db, Account, account_id, 40, "day")

    for _ in range(3):  # 24 of 40: 60 %
        assert (await gw.generate(key, IMAGE)).status_code == 200
    assert await alerts(db, "budget.threshold") == []
    assert (await gw.generate(key, IMAGE)).status_code == 200  # 32: 80 %
    assert (await gw.generate(key, IMAGE)).status_code == 200  # 40: 100 %, exactly
    for _ in range(2):
        assert (await gw.generate(key, IMAGE)).status_code == 402

    queued = await alerts(db, "budget.threshold")
    assert [(a["threshold"], a["spent"]) for a in queued] == [(80, "32"), (100, "40")]
    assert queued[0] == {
        "scope": "account",
        "account_id": account_id,
        "account_name": (await gw.account(account_id))["name"],
        "key_id": None,
        "key_name": None,
        "period": "day",
        "window_start": utcnow().date().isoformat(),
        "budget": "40",
        "spent": "32",
        "threshold": 80,
    }


async def test_a_refusal_short_of_100_percent_queues_the_100_percent_alert_once(gw: Harness) -> None:
    db = gw.gateway.db
    account_id, key = await gw.account_with_key(credits=1000)
    await set_budget(db, Account, account_id, 20, "month")

    assert [(await gw.generate(key, IMAGE)).status_code for _ in range(2)] == [200, 200]  # 16: 80 %
    assert [(await gw.generate(key, IMAGE)).status_code for _ in range(3)] == [402, 402, 402]

    queued = await alerts(db, "budget.threshold")
    assert [(a["threshold"], a["spent"]) for a in queued] == [(80, "16"), (100, "16")]


async def test_the_low_balance_alert_is_queued_once_per_crossing(gw: Harness) -> None:
    db = gw.gateway.db
    account_id, key = await gw.account_with_key(credits=40)
    async with db.transaction() as session:
        await session.execute(update(Account).where(Account.id == account_id).values(alert_below=Decimal(20)))

    for _ in range(2):  # 24 left, above 20
        assert (await gw.generate(key, IMAGE)).status_code == 200
    assert await alerts(db, "account.low_balance") == []
    for _ in range(2):  # 16, then 8: one crossing
        assert (await gw.generate(key, IMAGE)).status_code == 200
    queued = await alerts(db, "account.low_balance")
    assert [(a["available"], a["alert_below"]) for a in queued] == [("16", "20")]

    # Topped up above the threshold, the next fall below it is a new crossing.
    grant = await gw.admin("POST", f"/admin/accounts/{account_id}/credits", json={"amount": "16", "note": "top-up"})
    assert grant.status_code == 200, grant.text
    assert (await gw.generate(key, IMAGE)).status_code == 200  # 24 → 16
    assert [a["available"] for a in await alerts(db, "account.low_balance")] == ["16", "16"]


async def burst(urls: list[str], keys: list[str], count: int) -> list[tuple[int, str | None]]:
    async with httpx.AsyncClient(timeout=120) as http:
        responses = await asyncio.gather(
            *(
                http.post(
                    f"{urls[i % len(urls)]}/v1/images/generations",
                    json={"prompt": f"p{i}"},
                    headers={"authorization": f"Bearer {keys[i % len(keys)]}"},
                )
                for i in range(count)
            )
        )
    return [(r.status_code, r.json()["error"]["code"] if r.status_code != 200 else None) for r in responses]


async def check_budgets_held(
    db: Database, account_id: str, capped_key_id: str, outcomes: list[tuple[int, str | None]]
) -> None:
    """100 requests over a 200-credit monthly account budget (25 images) and a 96-credit daily
    budget on one of its two keys (12 images): exactly 25 served, none past either budget."""
    served_ = [o for o in outcomes if o[0] == 200]
    assert len(served_) == 25, outcomes
    assert {o for o in outcomes if o[0] != 200} == {(402, "budget_exceeded")}
    now = utcnow()
    assert await spent(db, account_id, window_of("month", now)) == Decimal(200)
    key_spent = await spent(db, capped_key_id, window_of("day", now))
    assert key_spent is not None and key_spent <= 96
    async with db.sessions() as session:
        account = await session.get(Account, account_id)
        by_key = await session.scalar(
            select(func.coalesce(func.sum(UsageRecord.images_delivered), 0)).where(
                UsageRecord.key_id == capped_key_id, UsageRecord.status == "succeeded"
            )
        )
    assert account is not None and (account.balance, account.held) == (Decimal(10_000 - 200), Decimal(0))
    assert key_spent == 8 * int(by_key or 0)


async def prepare_burst(db: Database, account_id: str) -> str:
    await set_budget(db, Account, account_id, 200, "month")
    capped = await key_id_of(db, account_id, "capped")
    await set_budget(db, ApiKey, capped, 96, "day")
    return capped


async def test_100_concurrent_requests_never_pass_a_budget(gw: Harness) -> None:
    db = gw.gateway.db
    account = await gw.create_account(credits=10_000)
    keys = [await gw.create_key(account["id"], name=name) for name in ("capped", "free")]
    capped = await prepare_burst(db, account["id"])

    outcomes = await asyncio.gather(*(gw.generate(keys[i % 2], {"prompt": f"p{i}"}) for i in range(100)))

    codes = [(r.status_code, r.json()["error"]["code"] if r.status_code != 200 else None) for r in outcomes]
    await check_budgets_held(db, account["id"], capped, codes)
    assert await gw.ledger_problems() == []


@pytest.mark.slow
def test_100_concurrent_requests_through_two_worker_processes_never_pass_a_budget(
    database_url: str, tmp_path: Path
) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    with serving(env, "--workers", "2", log_path=tmp_path / "serve.log") as base_url:
        account_id, capped_key = account_with_key(base_url, credits=10_000, name="capped")
        with admin(base_url) as client:
            free_key = client.post("/admin/keys", json={"account_id": account_id, "name": "free"}).json()["key"]

        async def run() -> None:
            db = Database(database_url, pool_size=2, max_overflow=0)
            try:
                capped = await prepare_burst(db, account_id)
                outcomes = await burst([base_url], [capped_key, free_key], 100)
                await check_budgets_held(db, account_id, capped, outcomes)
            finally:
                await db.dispose()

        asyncio.run(run())
        with admin(base_url) as client:
            assert client.get("/admin/ledger/check").json()["ok"] is True
