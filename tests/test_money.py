"""The money rules, tested directly against the billing functions and a real database."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from sqlalchemy import update

from app.billing import holds
from app.billing.amounts import charge, parse_amount, render
from app.billing.ledger_check import check_ledger
from app.billing.models import UsageRecord
from app.billing.sweeper import expire_stale_holds
from app.db import utcnow
from app.errors import InsufficientCredits
from tests.support.harness import Harness
from tests.support.holds import hold_terms, served


@pytest.mark.parametrize(
    ("unit", "model_mult", "channel_mult", "images", "expected"),
    [
        ("8", "1", "1", 2, "16"),
        ("8", "1.5", "0.3333", 3, "11.9988"),
        ("0.0001", "1", "0.5", 1, "0.0001"),  # 0.00005 rounds half up
        ("0.0001", "1", "0.4999", 1, "0"),
        ("12", "1.1111", "1.0001", 4, "53.3381"),
    ],
)
def test_charge_is_exact_and_rounds_half_up(
    unit: str, model_mult: str, channel_mult: str, images: int, expected: str
) -> None:
    assert render(charge(Decimal(unit), Decimal(model_mult), Decimal(channel_mult), images)) == expected


def test_parse_amount_accepts_numbers_and_strings_exactly() -> None:
    assert parse_amount(0.1, field="a") == Decimal("0.1")
    assert parse_amount("12.3400", field="a") == Decimal("12.34")
    for bad in ("1e400", "0.00001", "x", float("inf"), True, None):
        with pytest.raises(ValueError, match="a"):
            parse_amount(bad, field="a")


async def test_a_hold_ends_exactly_once(gw: Harness) -> None:
    account = await gw.create_account(credits=20)
    db = gw.gateway.db
    terms = hold_terms(account["id"])
    async with db.transaction() as session:
        await holds.place_hold(session, terms)

    async def capture() -> Decimal | None:
        async with db.transaction() as session:
            return await holds.capture(session, terms.request_id, served())

    async def release() -> bool:
        async with db.transaction() as session:
            return await holds.release(session, terms.request_id, "failed", served("0", 0))

    outcomes = await asyncio.gather(capture(), capture(), release(), release())
    winners = [o for o in outcomes if o not in (None, False)]
    assert len(winners) == 1
    after = await gw.account(account["id"])
    assert after["held"] == "0"
    assert after["balance"] in ("12", "20")
    assert await gw.ledger_problems() == []


async def test_hold_cannot_overdraw(gw: Harness) -> None:
    account = await gw.create_account(credits=10)
    async with gw.gateway.db.transaction() as session:
        await holds.place_hold(session, hold_terms(account["id"], "6"))
    with pytest.raises(InsufficientCredits):
        async with gw.gateway.db.transaction() as session:
            await holds.place_hold(session, hold_terms(account["id"], "6"))
    assert (await gw.account(account["id"]))["available"] == "4"


async def test_sweeper_releases_holds_of_crashed_requests(gw: Harness) -> None:
    account = await gw.create_account(credits=10)
    db = gw.gateway.db
    terms = hold_terms(account["id"])
    async with db.transaction() as session:
        await holds.place_hold(session, terms)
        await session.execute(
            update(UsageRecord)
            .where(UsageRecord.id == terms.request_id)
            .values(created_at=utcnow() - timedelta(hours=1), hold_until=utcnow() - timedelta(minutes=1))
        )
    async with db.sessions() as session:
        problems = await check_ledger(session, hold_timeout_s=60)
    assert any("hold open past its deadline" in p for p in problems)

    assert await expire_stale_holds(db, hold_timeout_s=60) == 1
    assert await expire_stale_holds(db, hold_timeout_s=60) == 0
    after = await gw.account(account["id"])
    assert (after["balance"], after["held"]) == ("10", "0")
    async with db.transaction() as session:
        assert await holds.capture(session, terms.request_id, served()) is None  # too late: nothing charged
    assert await gw.ledger_problems() == []


async def test_ledger_check_reports_tampering(gw: Harness) -> None:
    account_id, key = await gw.account_with_key(credits=100)
    assert (await gw.generate(key, {"prompt": "x"})).status_code == 200
    from app.billing.models import Account

    async with gw.gateway.db.transaction() as session:
        await session.execute(update(Account).where(Account.id == account_id).values(balance=Decimal("95")))
        await session.execute(update(UsageRecord).values(credits=Decimal("7")))
    problems = await gw.ledger_problems()
    assert any("sum of ledger entries" in p for p in problems)
    assert any("price × multipliers" in p for p in problems)
    assert any("ledger charge" in p for p in problems)
