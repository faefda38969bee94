"""Usage reports reconcile with the ledger, for every grouping, over any range."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from app.billing import holds
from app.billing.amounts import charge, render
from app.billing.models import LedgerEntry, UsageRecord
from app.billing.usage_report import GROUPINGS, usage_report
from app.db import new_id, utcnow
from tests.support.harness import Harness
from tests.support.processes import cli, cli_json, gateway_env

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 4
# Each day's first and last microsecond, so a day computed in local time or truncated wrongly
# moves requests across midnight and the comparison below fails.
INSTANTS = [
    DAY0 + timedelta(days=d) + offset
    for d in range(DAYS)
    for offset in (
        timedelta(0),
        timedelta(hours=6, seconds=0.5),
        timedelta(hours=14),
        timedelta(days=1, microseconds=-1),
    )
]
MODELS = {  # id: (credits per image, model multiplier)
    "imagen4": (Decimal(8), Decimal(1)),
    "imagen4-fast": (Decimal(4), Decimal("1.5")),
    "gpt-image-1.5-official": (Decimal(10), Decimal("0.9")),
}
CHANNELS = {"local": Decimal(1), "gemini": Decimal("1.25"), "relay": Decimal("0.8333")}
STATUSES = ["succeeded"] * 14 + ["failed", "failed", "filtered", "canceled", "pending"]


@dataclass(frozen=True)
class Made:
    """One generated request as the test planned it."""

    id: str
    account_id: str
    key_id: str
    model: str
    channel: str | None
    day: str
    created_at: datetime
    status: str
    images: int


async def _history(gw: Harness, count: int, seed: int = 6) -> list[Made]:
    """`count` requests over several accounts, keys, models, channels and days, written through
    the billing functions (hold, then capture or release) in a few large transactions."""
    rng = random.Random(seed)
    accounts = [(await gw.create_account(credits=1_000_000, name=f"team-{i}"))["id"] for i in range(3)]
    keys = {account: [f"key_{account[-8:]}_{k}" for k in range(2)] for account in accounts}
    made: list[Made] = []
    plans: list[tuple[holds.HoldTerms, Made, holds.Outcome]] = []
    for _ in range(count):
        account = rng.choice(accounts)
        model = rng.choice(list(MODELS))
        unit, multiplier = MODELS[model]
        requested = rng.randint(1, 4)
        status = rng.choice(STATUSES)
        reached = status in ("succeeded", "filtered") or (status != "pending" and rng.random() < 0.5)
        channel = rng.choice(list(CHANNELS)) if reached else None
        delivered = rng.randint(1, requested) if status == "succeeded" else 0
        instant = rng.choice(INSTANTS)
        terms = holds.HoldTerms(
            request_id=new_id("req"),
            account_id=account,
            key_id=rng.choice(keys[account]),
            endpoint="/v1/images/generations",
            model=model,
            unit_credits=unit,
            model_multiplier=multiplier,
            images_requested=requested,
            hold_credits=charge(unit, multiplier, max(CHANNELS.values()), requested),
            hold_until=utcnow() + timedelta(hours=1),
            metadata={"team": "a,b"},  # a comma inside a CSV cell must not add a row
        )
        outcome = holds.Outcome(
            attempts=1,
            channels_tried=[],
            latency_ms=100,
            channel_name=channel,
            provider="local" if channel else None,
            channel_multiplier=CHANNELS[channel] if channel else None,
            images_delivered=delivered,
            credits=charge(unit, multiplier, CHANNELS[channel], delivered) if channel else Decimal(0),
        )
        record = Made(
            terms.request_id,
            account,
            terms.key_id,
            model,
            channel,
            instant.date().isoformat(),
            instant,
            status,
            delivered,
        )
        made.append(record)
        plans.append((terms, record, outcome))

    db = gw.gateway.db
    for start in range(0, count, 500):
        async with db.transaction() as session:
            for terms, record, outcome in plans[start : start + 500]:
                await holds.place_hold(session, terms)
                if record.status == "succeeded":
                    assert await holds.capture(session, terms.request_id, outcome) is not None
                elif record.status != "pending":
                    assert await holds.release(session, terms.request_id, record.status, outcome)
    by_instant: dict[datetime, list[str]] = defaultdict(list)
    for record in made:
        by_instant[record.created_at].append(record.id)
    async with db.transaction() as session:
        for instant, ids in by_instant.items():
            await session.execute(update(UsageRecord).where(UsageRecord.id.in_(ids)).values(created_at=instant))
    return made


async def _ledger_charges(gw: Harness) -> dict[str, Decimal]:
    async with gw.gateway.db.sessions() as session:
        rows = (
            await session.execute(
                select(LedgerEntry.request_id, LedgerEntry.amount).where(LedgerEntry.kind == "charge")
            )
        ).all()
    return {request_id: -amount for request_id, amount in rows if request_id is not None}


def _expected(
    made: Iterable[Made], charges: dict[str, Decimal], group_by: tuple[str, ...]
) -> dict[tuple[str | None, ...], tuple[int, int, str]]:
    """What the report must say, from the plan and the ledger alone."""
    sums: dict[tuple[str | None, ...], list[Any]] = defaultdict(lambda: [0, 0, Decimal(0)])
    for record in made:
        values = {
            "account": record.account_id,
            "key": record.key_id,
            "model": record.model,
            "channel": record.channel,
            "day": record.day,
        }
        group = tuple(values[name] for name in group_by)
        entry = sums[group]
        entry[0] += 1
        entry[1] += record.images if record.status == "succeeded" else 0
        entry[2] += charges.get(record.id, Decimal(0))
    return {group: (s[0], s[1], render(s[2])) for group, s in sums.items()}


def _measures(row: dict[str, Any]) -> tuple[int, int, str]:
    return row["requests"], row["images"], row["credits"]


async def test_reports_reconcile_with_the_ledger_for_every_grouping(gw: Harness) -> None:
    made = await _history(gw, count=1500)
    charges = await _ledger_charges(gw)
    assert len(charges) > len(made) // 2  # most requests succeeded and were charged
    ranges: list[tuple[dict[str, str], Callable[[Made], bool]]] = [
        ({}, lambda r: True),
        # Naive start means UTC; the end is exclusive, so day 3's first microsecond is out.
        (
            {"start": "2026-11-02T00:00:00", "end": "2026-11-04T00:00:00Z"},
            lambda r: DAY0 + timedelta(days=1) <= r.created_at < DAY0 + timedelta(days=3),
        ),
        ({"start": "2026-11-03T23:59:59.999999+00:00"}, lambda r: r.created_at >= INSTANTS[-5]),
    ]
    every_grouping = [g for size in range(len(GROUPINGS) + 1) for g in itertools.combinations(GROUPINGS, size)]
    some_groupings = [(), ("day",), ("account", "model"), tuple(GROUPINGS)]
    for params, selected in ranges:
        in_range = [r for r in made if selected(r)]
        assert 0 < len(in_range) <= len(made)
        for group_by in every_grouping if not params else some_groupings:
            query = {**params, "group_by": ",".join(group_by)}
            response = await gw.admin("GET", "/admin/usage", params=query)
            assert response.status_code == 200, response.text
            report = response.json()
            # Totals: the ledger's charges for exactly the requests in range.
            assert _measures(report["totals"]) == _expected(in_range, charges, ())[()], query
            if not group_by:
                assert report["rows"] == []
                continue
            fields = [GROUPINGS[name] for name in group_by]
            assert all(set(row) == {*fields, "requests", "images", "credits"} for row in report["rows"])
            rows = {tuple(row[f] for f in fields): _measures(row) for row in report["rows"]}
            assert rows == _expected(in_range, charges, group_by), query
            summed = [sum(row[m] for row in report["rows"]) for m in ("requests", "images")]
            credits = sum((Decimal(row["credits"]) for row in report["rows"]), Decimal(0))
            assert (*summed, render(credits)) == _measures(report["totals"])

        totals = (await gw.admin("GET", "/admin/usage", params=params)).json()["totals"]
        export = await gw.admin("GET", "/admin/usage/export", params=params)
        assert export.status_code == 200
        exported = list(csv.DictReader(io.StringIO(export.text)))
        assert len(exported) == totals["requests"] == len(in_range)

    account = made[0].account_id
    mine = (await gw.admin("GET", "/admin/usage", params={"account_id": account, "group_by": "key"})).json()
    assert {row["key_id"] for row in mine["rows"]} == {r.key_id for r in made if r.account_id == account}
    assert _measures(mine["totals"]) == _expected([r for r in made if r.account_id == account], charges, ())[()]


async def test_day_groups_split_at_utc_midnight_whatever_the_session_time_zone(gw: Harness) -> None:
    made = await _history(gw, count=40, seed=1)
    before, after = DAY0 + timedelta(days=1, microseconds=-1), DAY0 + timedelta(days=1)
    async with gw.gateway.db.transaction() as session:
        await session.execute(update(UsageRecord).where(UsageRecord.id == made[0].id).values(created_at=before))
        await session.execute(update(UsageRecord).where(UsageRecord.id != made[0].id).values(created_at=after))
    response = await gw.admin("GET", "/admin/usage", params={"group_by": "day"})
    assert [(row["day"], row["requests"]) for row in response.json()["rows"]] == [
        ("2026-11-01", 1),
        ("2026-11-02", 39),
    ]
    if gw.settings.is_sqlite:
        return
    async with gw.gateway.db.sessions() as session:
        # 14 hours ahead of UTC: a day taken in session time would put both requests on 11-02.
        await session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        report = await usage_report(session, group_by=("day",))
    assert [(row.groups["day"], row.totals.requests) for row in report.rows] == [("2026-11-01", 1), ("2026-11-02", 39)]


async def test_bad_report_parameters_are_400s_naming_the_parameter(gw: Harness) -> None:
    cases = [
        ({"group_by": "account,region"}, "group_by"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"start": "2026-11-02", "end": "2026-11-01"}, "end"),
    ]
    for params, param in cases:
        response = await gw.admin("GET", "/admin/usage", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] == param
    export = await gw.admin("GET", "/admin/usage/export", params={"start": "2026-11-01T00:00:00"})
    assert export.status_code == 200  # naive means UTC here too, not a 500


async def test_usage_report_command_prints_what_the_api_answers(gw: Harness, database_url: str, tmp_path: Path) -> None:
    made = await _history(gw, count=60, seed=2)
    env = gateway_env(database_url, tmp_path / "cli-data")
    args = ["--start", "2026-11-02", "--end", "2026-11-04T00:00:00+00:00", "--group-by", "account,day"]
    # In a thread: the app's background worker keeps running (and committing) meanwhile.
    printed = await asyncio.to_thread(cli_json, env, "usage", "report", *args)
    answered = await gw.admin(
        "GET", "/admin/usage", params={"start": "2026-11-02", "end": "2026-11-04T00:00:00Z", "group_by": "account,day"}
    )
    assert printed == answered.json()
    assert printed["totals"]["requests"] == sum(
        1 for r in made if DAY0 + timedelta(days=1) <= r.created_at < DAY0 + timedelta(days=3)
    )

    refused = await asyncio.to_thread(cli, env, "usage", "report", "--group-by", "region", check=False)
    assert refused.returncode != 0
    assert "group_by" in refused.stderr and "region" in refused.stderr
