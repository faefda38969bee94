"""Usage reports reconcile with the ledger and with the attempts' costs, for every grouping, over
any range."""

from __future__ import annotations

import asyncio
import csv
import io
import itertools
import random
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select, text, update

from app.billing import holds
from app.billing.amounts import charge
from app.billing.attempt_rows import AttemptRecord
from app.billing.models import LedgerEntry, UsageRecord
from app.billing.usage_report import GROUPINGS, usage_report
from app.db import new_id, utcnow
from tests.support.harness import Harness
from tests.support.processes import cli, cli_json, gateway_env

DAY0 = datetime(2026, 11, 1, tzinfo=UTC)
DAYS = 4
# Each day's first and last microsecond, so a day computed in local time or truncated wrongly
# moves requests across midnight and the comparison below fails. The last day runs into December,
# so month groups split too.
INSTANTS = [
    DAY0 + timedelta(days=d) + offset
    for d in (0, 1, 2, 30)
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
CHANNELS = {  # name: (channel multiplier, provider, cost per image returned or None)
    "local": (Decimal(1), "local", None),
    "gemini": (Decimal("1.25"), "gemini-image", Decimal("0.039")),
    "relay": (Decimal("0.8333"), "google-imagen", Decimal("0.0205")),
}
STATUSES = ["succeeded"] * 14 + ["failed", "failed", "filtered", "canceled", "pending"]
USERS = [None, "alice", "=bob"]  # a user that looks like a formula must stay text in the CSV
CREDIT_VALUE = Decimal("0.01")
MONEY = ("credits", "upstream_cost", "revenue", "margin")


@dataclass(frozen=True)
class Called:
    """One upstream attempt as the test planned it."""

    channel: str
    channel_id: str
    upstream_model: str
    images: int

    @property
    def provider(self) -> str:
        return CHANNELS[self.channel][1]

    @property
    def cost(self) -> Decimal | None:
        unit = CHANNELS[self.channel][2]
        return None if unit is None else unit * self.images


@dataclass(frozen=True)
class Made:
    """One generated request as the test planned it."""

    id: str
    account_id: str
    key_id: str
    model: str
    channel: str | None
    channel_id: str | None
    day: str
    created_at: datetime
    status: str
    images: int
    user: str | None
    attempts: list[Called] = field(default_factory=list)

    def values(self, attempt: Called | None = None) -> dict[str, tuple[str | None, ...]]:
        """Group name → the output values it stands for; an attempt's own channel, provider and
        upstream model when given."""
        last = attempt or (self.attempts[-1] if self.attempts else None)
        return {
            "account": (self.account_id,),
            "key": (self.key_id,),
            "model": (self.model,),
            "channel": (last.channel_id, last.channel) if last else (None, None),
            "day": (self.day,),
            "upstream_model": (last.upstream_model if last else None,),
            "provider": (last.provider if last else None,),
            "status": (self.status,),
            "month": (self.day[:7],),
            "user": (self.user,),
        }


def upstream_of(channel: str, model: str) -> str:
    return model if channel == "local" else f"{model}@{channel}"


@dataclass
class History:
    made: list[Made]
    account_names: dict[str, str]
    key_names: dict[str, str]
    channel_names: dict[str, str]  # id → current name, for the channels that still exist


async def _history(gw: Harness, count: int, seed: int = 6) -> History:
    """`count` requests over several accounts, keys, models, channels, users and days, some failed
    over from one channel to another, written through the billing functions (hold, then capture
    or release with the attempts) in a few large transactions."""
    rng = random.Random(seed)
    local_id = (await gw.local_channel())["id"]
    channel_ids = {"local": local_id, "gemini": "ch_gone_gemini", "relay": "ch_gone_relay"}
    accounts = [(await gw.create_account(credits=1_000_000, name=f"team-{i}"))["id"] for i in range(3)]
    key_names: dict[str, str] = {}
    keys: dict[str, list[str]] = {}
    for n, account in enumerate(accounts):
        for k in range(2):
            created = await gw.admin("POST", "/admin/keys", json={"account_id": account, "name": f"t{n}-k{k}"})
            key_names[created.json()["id"]] = f"t{n}-k{k}"
            keys.setdefault(account, []).append(created.json()["id"])
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
        called: list[Called] = []
        if channel is not None:
            if rng.random() < 0.3:  # failed over: a first attempt elsewhere, possibly billed
                other = rng.choice([c for c in CHANNELS if c != channel])
                called.append(Called(other, channel_ids[other], upstream_of(other, model), rng.randint(0, 2)))
            returned = delivered + (requested - delivered if status == "filtered" else rng.randint(0, 1))
            called.append(Called(channel, channel_ids[channel], upstream_of(channel, model), returned))
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
            hold_credits=charge(unit, multiplier, max(c[0] for c in CHANNELS.values()), requested),
            hold_until=utcnow() + timedelta(hours=1),
            user=rng.choice(USERS),
            metadata={"team": "a,b"},  # a comma inside a CSV cell must not add a row
        )
        outcome = holds.Outcome(
            attempts=len(called),
            channels_tried=[],
            latency_ms=100,
            upstream_model=called[-1].upstream_model if called else None,
            channel_id=channel_ids[channel] if channel else None,
            channel_name=channel,
            provider=CHANNELS[channel][1] if channel else None,
            channel_multiplier=CHANNELS[channel][0] if channel else None,
            images_delivered=delivered,
            credits=charge(unit, multiplier, CHANNELS[channel][0], delivered) if channel else Decimal(0),
            attempt_records=tuple(
                AttemptRecord(
                    channel_id=c.channel_id,
                    channel_name=c.channel,
                    provider=c.provider,
                    upstream_model=c.upstream_model,
                    started_at=instant,
                    latency_ms=50,
                    outcome="succeeded" if i == len(called) - 1 else "ambiguous",
                    possibly_billed=True,
                    images=c.images,
                    upstream_cost=c.cost,
                )
                for i, c in enumerate(called)
            ),
        )
        record = Made(
            terms.request_id,
            account,
            terms.key_id,
            model,
            channel,
            channel_ids[channel] if channel else None,
            instant.date().isoformat(),
            instant,
            status,
            delivered,
            terms.user,
            called,
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
    # Renamed after the fact: rows show the name recorded on the request and the current one.
    renamed = await gw.admin("PATCH", f"/admin/channels/{local_id}", json={"name": "placeholder"})
    assert renamed.status_code == 200, renamed.text
    return History(
        made,
        {account: f"team-{i}" for i, account in enumerate(accounts)},
        key_names,
        {local_id: "placeholder"},
    )


async def _ledger_charges(gw: Harness) -> dict[str, Decimal]:
    async with gw.gateway.db.sessions() as session:
        rows = (
            await session.execute(
                select(LedgerEntry.request_id, LedgerEntry.amount).where(LedgerEntry.kind == "charge")
            )
        ).all()
    return {request_id: -amount for request_id, amount in rows if request_id is not None}


def _fields(group_by: Iterable[str]) -> list[str]:
    return [f for name in group_by for f in GROUPINGS[name]]


def _expected(
    history: History, made: Iterable[Made], charges: dict[str, Decimal], group_by: tuple[str, ...]
) -> dict[tuple[str | None, ...], dict[str, Any]]:
    """What the report must say, from the plan and the ledger alone: measures and names by group."""
    sums: dict[tuple[str | None, ...], dict[str, Any]] = {}

    def entry(values: dict[str, tuple[str | None, ...]]) -> dict[str, Any]:
        group = tuple(v for name in group_by for v in values[name])
        return sums.setdefault(group, {"requests": 0, "images": 0, "credits": Decimal(0), "upstream_cost": Decimal(0)})

    for record in made:
        measures = entry(record.values())
        measures["requests"] += 1
        measures["images"] += record.images if record.status == "succeeded" else 0
        measures["credits"] += charges.get(record.id, Decimal(0))
        for attempt in record.attempts:
            if attempt.cost is not None:  # attempts without a cost add no group of their own
                entry(record.values(attempt))["upstream_cost"] += attempt.cost
    expected: dict[tuple[str | None, ...], dict[str, Any]] = {}
    for group, measures in sums.items():
        row = dict(zip(_fields(group_by), group, strict=True)) | measures
        if "account" in group_by:
            row["account_name"] = history.account_names[row["account_id"]]
        if "key" in group_by:
            row["key_name"] = history.key_names[row["key_id"]]
        if "channel" in group_by:
            row["channel_name"] = history.channel_names.get(row["channel_id"], row["channel"])
        row["revenue"] = row["credits"] * CREDIT_VALUE
        row["margin"] = row["revenue"] - row["upstream_cost"]
        expected[group] = row
    return expected


def _read(row: dict[str, Any]) -> dict[str, Any]:
    """A report row with its money as Decimals (revenue has more places than credits)."""
    return {k: Decimal(v) if k in MONEY else v for k, v in row.items()}


async def test_reports_reconcile_with_the_ledger_for_every_grouping(gw: Harness) -> None:
    history = await _history(gw, count=800)
    made = history.made
    charges = await _ledger_charges(gw)
    assert len(charges) > len(made) // 2  # most requests succeeded and were charged
    assert sum(1 for r in made if len(r.attempts) > 1) > 100  # failovers to attribute
    ranges: list[tuple[dict[str, str], Callable[[Made], bool]]] = [
        ({}, lambda r: True),
        # Naive start means UTC; the end is exclusive, so day 3's first microsecond is out.
        (
            {"start": "2026-11-02T00:00:00", "end": "2026-11-03T00:00:00Z"},
            lambda r: DAY0 + timedelta(days=1) <= r.created_at < DAY0 + timedelta(days=2),
        ),
        ({"start": "2026-11-03T23:59:59.999999+00:00"}, lambda r: r.created_at >= INSTANTS[-5]),
        ({"month": "2026-12"}, lambda r: r.created_at >= datetime(2026, 12, 1, tzinfo=UTC)),
    ]
    names = list(GROUPINGS)
    # Each grouping alone, pairs of a request's and an attempt's own values, and all at once.
    every_grouping = [(), *itertools.combinations(names, 1)]
    every_grouping += [(a, b) for a in ("account", "day", "status") for b in ("channel", "provider", "upstream_model")]
    every_grouping += [("key", "month", "user"), tuple(names[:5]), tuple(names[5:]), tuple(names)]
    some_groupings = [(), ("day",), ("account", "model"), ("channel", "provider"), tuple(names)]
    for params, selected in ranges:
        in_range = [r for r in made if selected(r)]
        assert 0 < len(in_range) < len(made) or not params
        total = _expected(history, in_range, charges, ())[()]
        for group_by in every_grouping if not params else some_groupings:
            query = {**params, "group_by": ",".join(group_by)}
            response = await gw.admin("GET", "/admin/usage", params=query)
            assert response.status_code == 200, response.text
            report = response.json()
            # Totals: the ledger's charges for exactly the requests in range, the attempts' costs.
            assert _read(report["totals"]) == total, query
            if not group_by:
                assert report["rows"] == []
                continue
            rows = {tuple(row[f] for f in _fields(group_by)): _read(row) for row in report["rows"]}
            assert len(rows) == len(report["rows"])
            assert rows == _expected(history, in_range, charges, group_by), query
            summed = {m: sum((row[m] for row in rows.values()), Decimal(0)) for m in ("requests", "images", *MONEY)}
            assert summed == {m: total[m] for m in summed}

        totals = (await gw.admin("GET", "/admin/usage", params=params)).json()["totals"]
        if "month" not in params:
            export = await gw.admin("GET", "/admin/usage/export", params=params)
            assert export.status_code == 200
            exported = list(csv.DictReader(io.StringIO(export.text)))
            assert len(exported) == totals["requests"] == len(in_range)
    assert total["upstream_cost"] > 0 and total["margin"] != total["revenue"]

    account = made[0].account_id
    mine = (await gw.admin("GET", "/admin/usage", params={"account_id": account, "group_by": "key"})).json()
    assert {row["key_id"] for row in mine["rows"]} == {r.key_id for r in made if r.account_id == account}
    own = [r for r in made if r.account_id == account]
    assert _read(mine["totals"]) == _expected(history, own, charges, ())[()]


async def test_a_failed_over_attempt_counts_under_its_own_channel(gw: Harness) -> None:
    history = await _history(gw, count=300, seed=3)
    # A request served by one channel after a costed attempt on another: that cost is the other's.
    moved = next(
        r for r in history.made if len(r.attempts) == 2 and r.attempts[0].cost and r.attempts[0].channel != r.channel
    )
    only = await gw.admin("GET", "/admin/usage", params={"group_by": "channel,upstream_model,account,day"})
    rows = only.json()["rows"]
    first = moved.attempts[0]
    assert first.cost is not None
    group = [
        row
        for row in rows
        if (row["channel"], row["upstream_model"], row["account_id"], row["day"])
        == (first.channel, first.upstream_model, moved.account_id, moved.day)
    ]
    assert len(group) == 1 and Decimal(group[0]["upstream_cost"]) >= first.cost
    # Groups where a channel was only failed over from: a cost, no requests, a negative margin.
    cost_only = [row for row in rows if row["requests"] == 0]
    assert any(Decimal(row["upstream_cost"]) > 0 for row in cost_only)
    assert all(Decimal(row["margin"]) == -Decimal(row["upstream_cost"]) for row in cost_only)


async def test_day_and_month_groups_split_at_utc_midnight_whatever_the_session_time_zone(gw: Harness) -> None:
    made = (await _history(gw, count=40, seed=1)).made
    before, after = datetime(2026, 12, 1, tzinfo=UTC) - timedelta(microseconds=1), datetime(2026, 12, 1, tzinfo=UTC)
    async with gw.gateway.db.transaction() as session:
        await session.execute(update(UsageRecord).where(UsageRecord.id == made[0].id).values(created_at=before))
        await session.execute(update(UsageRecord).where(UsageRecord.id != made[0].id).values(created_at=after))
    expected = {
        "day": [("2026-11-30", 1), ("2026-12-01", 39)],
        "month": [("2026-11", 1), ("2026-12", 39)],
    }
    for name, rows in expected.items():
        response = await gw.admin("GET", "/admin/usage", params={"group_by": name})
        assert [(row[name], row["requests"]) for row in response.json()["rows"]] == rows
    if gw.settings.is_sqlite:
        return
    async with gw.gateway.db.sessions() as session:
        # 14 hours ahead of UTC: a day taken in session time would put both requests on 12-01.
        await session.execute(text("SET TIME ZONE 'Pacific/Kiritimati'"))
        for name, rows in expected.items():
            report = await usage_report(session, group_by=(name,))
            assert [(row.groups[name], row.totals.requests) for row in report.rows] == rows


async def test_bad_report_parameters_are_400s_naming_the_parameter(gw: Harness) -> None:
    cases = [
        ({"group_by": "account,region"}, "group_by"),
        ({"start": "yesterday"}, "start"),
        ({"end": "2026-13-01"}, "end"),
        ({"start": "2026-11-02", "end": "2026-11-01"}, "end"),
        ({"groupby": "model"}, "groupby"),  # a typo is refused, not answered as an ungrouped report
        ({"month": "2026-13"}, "month"),
        ({"month": "December"}, "month"),
        ({"month": "2026-12", "start": "2026-12-02"}, "month"),
        ({"format": "xml"}, "format"),
    ]
    for params, param in cases:
        response = await gw.admin("GET", "/admin/usage", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["error"]["param"] == param
    refused = await gw.admin("GET", "/admin/usage", params={"groupby": "model"})
    assert "unknown parameter 'groupby'" in refused.json()["error"]["message"].lower()
    for path in ("/admin/usage/export", "/admin/attempts/export", "/admin/ledger/export"):
        typo = await gw.admin("GET", path, params={"since": "2026-11-01"})
        assert typo.status_code == 400 and typo.json()["error"]["param"] == "since", typo.text
    export = await gw.admin("GET", "/admin/usage/export", params={"start": "2026-11-01T00:00:00"})
    assert export.status_code == 200  # naive means UTC here too, not a 500
    # The token is checked before the query: no parameter names for a caller without one.
    anonymous = await gw.http.get("/admin/usage", params={"groupby": "model"})
    assert anonymous.status_code == 401


async def test_usage_report_command_prints_what_the_api_answers(gw: Harness, database_url: str, tmp_path: Path) -> None:
    made = (await _history(gw, count=60, seed=2)).made
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

    # A month, as --month or as a bare --start/--end, and CSV: what the API gives for the month.
    api_csv = await gw.admin(
        "GET", "/admin/usage", params={"month": "2026-11", "group_by": "upstream_model,provider", "format": "csv"}
    )
    assert api_csv.status_code == 200 and api_csv.headers["content-type"].startswith("text/csv")
    assert sum(int(row["requests"]) for row in csv.DictReader(io.StringIO(api_csv.text))) == sum(
        1 for r in made if r.created_at.month == 11
    )
    grouped = ["--group-by", "upstream_model,provider", "--format", "csv"]
    variants = [["--month", "2026-11", *grouped], ["--start", "2026-11", "--end", "2026-12", *grouped]]
    wrong = [
        (["--group-by", "region"], ("group_by", "region")),
        (["--month", "2026-13"], ("--month", "2026-13", "YYYY-MM")),
        (["--month", "2026-11", "--start", "2026-11-02"], ("--month", "--start")),
    ]
    # Side by side: each command is a process of its own, mostly waiting.
    runs = await asyncio.gather(
        *(asyncio.to_thread(cli, env, "usage", "report", *args, check=False) for args in variants),
        *(asyncio.to_thread(cli, env, "usage", "report", *args, check=False) for args, _ in wrong),
    )
    for run in runs[: len(variants)]:
        assert run.returncode == 0, run.stderr
        assert run.stdout == api_csv.text.replace("\r\n", "\n")  # read back in text mode
    for run, (_, words) in zip(runs[len(variants) :], wrong, strict=True):
        assert run.returncode != 0
        assert all(word in run.stderr for word in words), run.stderr
        assert "Traceback" not in run.stderr


async def test_report_csv_has_the_json_rows_and_neutralises_formulas(gw: Harness) -> None:
    await _history(gw, count=200, seed=4)
    params = {"group_by": "account,channel,user"}
    answer = (await gw.admin("GET", "/admin/usage", params=params)).json()
    response = await gw.admin("GET", "/admin/usage", params={**params, "format": "csv"})
    assert response.status_code == 200
    lines = response.text.splitlines()
    assert lines[0] == (
        "account_id,account_name,channel_id,channel,channel_name,user,"
        "requests,images,credits,upstream_cost,revenue,margin"
    )
    parsed = list(csv.DictReader(io.StringIO(response.text, newline="")))
    expected = [{k: "" if v is None else str(v) for k, v in row.items()} for row in answer["rows"]]
    for row in expected:
        row["user"] = "'=bob" if row["user"] == "=bob" else row["user"]
    assert parsed == expected
    assert any(row["user"] == "'=bob" for row in parsed)
    # Without a grouping the one row is the totals.
    totals = await gw.admin("GET", "/admin/usage", params={"format": "csv"})
    (only,) = list(csv.DictReader(io.StringIO(totals.text, newline="")))
    assert only == {k: str(v) for k, v in answer["totals"].items()}
